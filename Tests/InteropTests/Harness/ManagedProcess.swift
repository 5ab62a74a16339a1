import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process owned by one test: stdout and stderr go to files in the test's directory, waits are
/// bounded, and it is stopped by PID (SIGTERM, then SIGKILL after a grace period) on every exit path:
/// explicitly, through `withManagedProcess`, or at the latest in `deinit`.
///
/// The child's stdin is a pipe whose write end this object holds: scripts that watch stdin
/// (`kubo_peer.py serve`) exit on their own if the test process dies without cleaning up.
final class ManagedProcess {
    let name: String
    let stdoutURL: URL
    let stderrURL: URL
    private let process = Process()
    private let stdinPipe = Pipe()
    private var stopped = false

    /// Starts `executable arguments...` with `environment` added to this process's environment.
    init(name: String, executable: URL, arguments: [String], environment: [String: String] = [:],
         directory: TestDirectory) throws {
        self.name = name
        stdoutURL = directory.path("\(name).stdout")
        stderrURL = directory.path("\(name).stderr")
        for url in [stdoutURL, stderrURL] {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw InteropHarnessError("cannot create \(url.path)")
            }
        }
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory.url
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = stdinPipe
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        do {
            try process.run()
        } catch {
            throw InteropHarnessError("cannot start \(name) (\(executable.path)): \(error)")
        }
    }

    deinit {
        terminate()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Everything the process wrote to stdout so far.
    func stdout() -> String {
        (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
    }

    /// Everything the process wrote to stderr so far.
    func stderr() -> String {
        (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
    }

    /// Complete stdout lines (a trailing partial line is not returned until its newline arrives).
    func stdoutLines() -> [String] {
        let text = stdout()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the part after the last newline: empty or still being written
        return lines
    }

    /// Waits until `count` stdout lines satisfy `predicate` and returns them; fails if the process exits
    /// first or `timeout` passes.
    func waitForLines(count: Int = 1, timeout: Duration, where predicate: (String) -> Bool) async throws -> [String] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let matching = stdoutLines().filter(predicate)
            if matching.count >= count {
                return Array(matching.prefix(count))
            }
            if !process.isRunning {
                // The last output may have landed between the check above and the exit.
                let final = stdoutLines().filter(predicate)
                if final.count >= count { return Array(final.prefix(count)) }
                throw failure("exited with status \(process.terminationStatus) before printing the expected line")
            }
            if clock.now >= deadline {
                throw failure("printed no matching line within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits for one stdout line that contains a match of the regular expression `pattern`.
    func waitForLine(matching pattern: String, timeout: Duration) async throws -> String {
        let regex = try Regex(pattern)
        return try await waitForLines(count: 1, timeout: timeout) { $0.contains(regex) }[0]
    }

    /// Waits for the process to exit on its own within `timeout` (else stops it and fails); returns the
    /// exit status.
    @discardableResult
    func waitForExit(timeout: Duration) async throws -> Int32 {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while process.isRunning {
            if clock.now >= deadline {
                terminate()
                throw failure("did not exit within \(timeout); stopped it")
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        return process.terminationStatus
    }

    /// Stops the process by PID: SIGTERM, then SIGKILL if it is still alive after `grace`. Idempotent.
    func terminate(grace: Duration = .seconds(5)) {
        if stopped { return }
        stopped = true
        try? stdinPipe.fileHandleForWriting.close()
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while process.isRunning && clock.now < deadline {
            usleep(20_000)
        }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// An error naming the process, its files and the tail of its output.
    func failure(_ what: String) -> InteropHarnessError {
        func tail(_ text: String) -> String {
            text.split(separator: "\n").suffix(15).joined(separator: "\n")
        }
        return InteropHarnessError("""
            \(name) (pid \(pid)) \(what)
            --- stdout (\(stdoutURL.path)):
            \(tail(stdout()))
            --- stderr (\(stderrURL.path)):
            \(tail(stderr()))
            """)
    }
}

/// Runs `body` with a started process and stops the process afterwards, whether `body` returns or throws.
func withManagedProcess<Result>(
    _ process: ManagedProcess, _ body: (ManagedProcess) async throws -> Result
) async throws -> Result {
    defer { process.terminate() }
    return try await body(process)
}
