import ArgumentParser
import Quota

/// Per-peer quotas as `serve` options. Off unless a cap is given.
struct QuotaOptions: ParsableArguments {
    @Option(name: .customLong("quota-subrequests"),
            help: "Storage subrequests (LISTs, index GETs, block GETs) one peer may cause per window; off unless given.")
    var quotaSubrequests: Int?

    @Option(name: .customLong("quota-bytes"), help: "Block bytes one peer may be sent per window; off unless given.")
    var quotaBytes: Int?

    @Option(name: .customLong("quota-window"),
            help: "Seconds of one quota window (windows are aligned to the clock, so every instance agrees).")
    var quotaWindow: Double = 60

    @Option(name: .customLong("quota-action"), help: ArgumentHelp(
        "What a peer over its quota gets: dont-have (every further want is a miss until the window ends) or close (the connection is closed).",
        discussion: "With --redis the counters (es:q:{peer}:<window>) are shared by every instance; without it they are per process."))
    var quotaAction: String = QuotaPolicy.Action.dontHave.rawValue

    func validateQuota() throws {
        if let quotaSubrequests, quotaSubrequests <= 0 { throw ValidationError("--quota-subrequests must be positive") }
        if let quotaBytes, quotaBytes <= 0 { throw ValidationError("--quota-bytes must be positive") }
        guard quotaWindow >= 1 else { throw ValidationError("--quota-window must be at least 1 second") }
        guard QuotaPolicy.Action(rawValue: quotaAction) != nil else {
            throw ValidationError("--quota-action \(quotaAction): use dont-have or close")
        }
    }

    /// The policy, or nil when no cap is set.
    var policy: QuotaPolicy? {
        let policy = QuotaPolicy(window: .milliseconds(Int64(quotaWindow * 1000)), maxSubrequests: quotaSubrequests,
                                 maxBytes: quotaBytes, action: QuotaPolicy.Action(rawValue: quotaAction) ?? .dontHave)
        return policy.isEnabled ? policy : nil
    }
}
