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
public final class ManagedProcess {
    public let name: String
    public let stdoutURL: URL
    public let stderrURL: URL
    /// The child's process ID.
    public let pid: pid_t
    /// Write end of the child's stdin; closed when the process is stopped.
    private var stdinWriter: Int32
    /// Set once the child has been reaped (exit code, or 128 + signal number).
    private var exitStatus: Int32?
    private var stopped = false

    /// Starts `executable arguments...` with `environment` added to this process's environment and
    /// `directory` as working directory.
    ///
    /// Spawned with posix_spawn rather than Foundation's `Process` because the child must start with an
    /// empty signal mask and default dispositions: threads of the test runner block SIGTERM (libdispatch
    /// signal sources use signalfd), and `Process` passes that mask on, so SIGTERM would never arrive.
    public init(name: String, executable: URL, arguments: [String], environment: [String: String] = [:],
         directory: TestDirectory) throws {
        self.name = name
        stdoutURL = directory.path("\(name).stdout")
        stderrURL = directory.path("\(name).stderr")

        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { throw InteropHarnessError("pipe failed: errno \(errno)") }
        // Not inherited by other children (the child gets its end as fd 0 through dup2 below).
        _ = fcntl(pipeFDs[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeFDs[1], F_SETFD, FD_CLOEXEC)
        defer { close(pipeFDs[0]) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutURL.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrURL.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGCHLD] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let fullEnvironment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // posix_spawn_file_actions_addchdir_np is not visible from Swift here: `sh` changes directory.
        let command = ["/bin/sh", "-c", #"cd "$0" && exec "$@""#, directory.url.path, executable.path] + arguments
        let argv = command.map { strdup($0) } + [nil]
        let envp = fullEnvironment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, "/bin/sh", &actions, &attributes, argv, envp)
        guard result == 0 else {
            close(pipeFDs[1])
            throw InteropHarnessError("cannot start \(name) (\(executable.path)): \(String(cString: strerror(result)))")
        }
        pid = child
        stdinWriter = pipeFDs[1]
    }

    deinit {
        terminate()
    }

    /// False once the process has exited.
    public var isRunning: Bool { !reap() }

    /// Collects the exit status if the child has exited (never blocks). True once it has.
    private func reap() -> Bool {
        if exitStatus != nil { return true }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        guard result == pid else { return result == -1 && errno == ECHILD }
        // <sys/wait.h>: low 7 bits = terminating signal (0 = normal exit), bits 8-15 = exit code.
        let signal = status & 0x7F
        exitStatus = signal == 0 ? (status >> 8) & 0xFF : 128 + signal
        return true
    }

    /// Everything the process wrote to stdout so far.
    public func stdout() -> String {
        (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
    }

    /// Everything the process wrote to stderr so far.
    public func stderr() -> String {
        (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
    }

    /// Complete stdout lines (a trailing partial line is not returned until its newline arrives).
    public func stdoutLines() -> [String] {
        let text = stdout()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the part after the last newline: empty or still being written
        return lines
    }

    /// Waits until `count` stdout lines satisfy `predicate` and returns them; fails if the process exits
    /// first or `timeout` passes.
    public func waitForLines(count: Int = 1, timeout: Duration, where predicate: (String) -> Bool) async throws -> [String] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let matching = stdoutLines().filter(predicate)
            if matching.count >= count {
                return Array(matching.prefix(count))
            }
            if reap() {
                // The last output may have landed between the check above and the exit.
                let final = stdoutLines().filter(predicate)
                if final.count >= count { return Array(final.prefix(count)) }
                throw failure("exited with status \(exitStatus ?? -1) before printing the expected line")
            }
            if clock.now >= deadline {
                throw failure("printed no matching line within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits for one stdout line that contains a match of the regular expression `pattern`.
    public func waitForLine(matching pattern: String, timeout: Duration) async throws -> String {
        let regex = try Regex(pattern)
        return try await waitForLines(count: 1, timeout: timeout) { $0.contains(regex) }[0]
    }

    /// Waits for the process to exit on its own within `timeout` (else stops it and fails); returns the
    /// exit status.
    @discardableResult
    public func waitForExit(timeout: Duration) async throws -> Int32 {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !reap() {
            if clock.now >= deadline {
                terminate()
                throw failure("did not exit within \(timeout); stopped it")
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        return exitStatus ?? -1
    }

    /// Stops the process by PID: SIGTERM, then SIGKILL if it is still alive after `grace`, and reaps it.
    /// Idempotent and synchronous (so it works from `defer` and `deinit`); never waits more than
    /// `grace` + 5 s.
    public func terminate(grace: Duration = .seconds(5)) {
        guard beginStop() else { return }
        signalProcess(pid, SIGTERM)
        if !waitUntilReaped(within: grace) {
            signalProcess(pid, SIGKILL)
            _ = waitUntilReaped(within: .seconds(5))
        }
    }

    /// Kills the process at once by PID (SIGKILL: no shutdown of its own, as in a crash or a lost host) and
    /// reaps it (within 5 s). Idempotent.
    public func kill() {
        guard beginStop() else { return }
        signalProcess(pid, SIGKILL)
        _ = waitUntilReaped(within: .seconds(5))
    }

    /// Marks the process stopped and closes its stdin; true if it still has to be signalled (not stopped
    /// before, not exited on its own).
    private func beginStop() -> Bool {
        if stopped { return false }
        stopped = true
        close(stdinWriter)
        stdinWriter = -1
        return !reap()
    }

    private func waitUntilReaped(within limit: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        while !reap() {
            if clock.now >= deadline { return false }
            usleep(10_000)
        }
        return true
    }

    /// An error naming the process, its files and the tail of its output.
    public func failure(_ what: String) -> InteropHarnessError {
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

/// `kill(2)`, under a name `ManagedProcess.kill()` does not shadow.
private func signalProcess(_ pid: pid_t, _ signal: Int32) {
    kill(pid, signal)
}

/// Runs `body` with a started process and stops the process afterwards, whether `body` returns or throws.
public func withManagedProcess<Result>(
    _ process: ManagedProcess, _ body: (ManagedProcess) async throws -> Result
) async throws -> Result {
    defer { process.terminate() }
    return try await body(process)
}
