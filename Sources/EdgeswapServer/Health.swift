import NIOConcurrencyHelpers

/// One dependency the readiness probe checks.
public struct HealthCheck: Sendable {
    /// Shown in the `/readyz` body, e.g. `s3 carpark`, `redis`.
    public var name: String
    /// A failing critical check makes the instance not ready (a block lookup cannot work without it). A
    /// failing non-critical one (the Redis cache: lookups go on without it) is reported but keeps it ready.
    public var critical: Bool
    /// Returns when the dependency answered; throws why not.
    public var check: @Sendable () async throws -> Void

    public init(name: String, critical: Bool, check: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.critical = critical
        self.check = check
    }
}

/// The outcome of one round of checks.
public struct HealthReport: Sendable {
    public struct Line: Sendable {
        public var name: String
        public var critical: Bool
        /// nil when the check passed; otherwise why it failed.
        public var failure: String?
    }

    public var lines: [Line]

    /// Every critical check passed.
    public var ready: Bool { lines.allSatisfy { !$0.critical || $0.failure == nil } }

    /// `ok s3 carpark` / `FAIL redis (not critical): unreachable ...`, one line each, then the verdict.
    public var text: String {
        var out = ""
        for line in lines {
            let tag = line.critical ? "" : " (not critical)"
            if let failure = line.failure {
                out += "FAIL \(line.name)\(tag): \(failure)\n"
            } else {
                out += "ok \(line.name)\(tag)\n"
            }
        }
        out += ready ? "ready\n" : "not ready\n"
        return out
    }
}

/// Runs the readiness checks on demand (each `/readyz` request), all at once, each bounded by `timeout`, and
/// reuses a report for `reuseFor` so that a burst of probes costs one round of checks.
public actor HealthMonitor {
    private let checks: [HealthCheck]
    private let timeout: Duration
    private let reuseFor: Duration
    private var last: (report: HealthReport, at: ContinuousClock.Instant)?
    private var running: Task<HealthReport, Never>?

    public init(checks: [HealthCheck], timeout: Duration = .seconds(2), reuseFor: Duration = .seconds(1)) {
        self.checks = checks
        self.timeout = timeout
        self.reuseFor = reuseFor
    }

    /// The current report (fresh, or at most `reuseFor` old).
    public func report() async -> HealthReport {
        let now = ContinuousClock.now
        if let last, now - last.at < reuseFor { return last.report }
        if let running { return await running.value }
        let checks = self.checks
        let timeout = self.timeout
        let task = Task { await Self.run(checks, timeout: timeout) }
        running = task
        let report = await task.value
        running = nil
        last = (report, ContinuousClock.now)
        return report
    }

    private static func run(_ checks: [HealthCheck], timeout: Duration) async -> HealthReport {
        let failures = await withTaskGroup(of: (Int, String?).self) { group in
            for (index, check) in checks.enumerated() {
                group.addTask { (index, await Self.outcome(of: check, timeout: timeout)) }
            }
            var failures = [String?](repeating: nil, count: checks.count)
            for await (index, failure) in group { failures[index] = failure }
            return failures
        }
        return HealthReport(lines: zip(checks, failures).map {
            HealthReport.Line(name: $0.name, critical: $0.critical, failure: $1)
        })
    }

    /// nil when `check` passed within `timeout`, else the reason. The check runs in its own task so a check
    /// that ignores cancellation (a connect stuck in the kernel) cannot hold the probe past its timeout.
    private static func outcome(of check: HealthCheck, timeout: Duration) async -> String? {
        let answer = NIOLockedValueBox<CheckedContinuation<String?, Never>?>(nil)
        return await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            answer.withLockedValue { $0 = continuation }
            @Sendable func finish(_ result: String?) {
                answer.withLockedValue { pending in
                    pending?.resume(returning: result)
                    pending = nil
                }
            }
            let work = Task {
                do {
                    try await check.check()
                    finish(nil)
                } catch {
                    finish("\(error)")
                }
            }
            Task {
                try? await Task.sleep(for: timeout)
                finish("no answer within \(timeout)")
                work.cancel()
            }
        }
    }
}
