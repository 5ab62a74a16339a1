import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A throwaway `redis-server` (Debian's `/usr/bin/redis-server`, installed by `make deps`) on a free
/// loopback port, for tests of the Redis client and the Redis-backed shared state.
///
/// Nothing is persisted (`--save "" --appendonly no`); it listens on 127.0.0.1 only. `stop()` and `start()`
/// may be called repeatedly: the port stays the same, so a client can be shown to reconnect after a
/// restart. The process is stopped by PID in `stop()` and at the latest in `deinit`.
public final class RedisServer {
    public static let executable = URL(fileURLWithPath: "/usr/bin/redis-server")

    public let port: UInt16
    /// The password the server requires (`--requirepass`), or nil.
    public let password: String?
    public let directory: TestDirectory
    private let extraArguments: [String]
    private var process: ManagedProcess?
    private var starts = 0

    /// Starts a server; `extraArguments` are appended to the command line (e.g. `["--maxmemory", "1mb"]`).
    public init(password: String? = nil, extraArguments: [String] = []) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable.path) else {
            throw InteropHarnessError(
                "\(Self.executable.path) is missing: run `make deps` (or `bash .ci/deps`) to install redis-server")
        }
        port = try LoopbackPorts.allocate()
        self.password = password
        self.extraArguments = extraArguments
        directory = try TestDirectory(name: "redis-\(port)")
        try await start()
    }

    deinit {
        process?.terminate()
        directory.remove()
    }

    /// `redis://[:password@]127.0.0.1:port`.
    public var url: String {
        let credentials = password.map { ":\($0)@" } ?? ""
        return "redis://\(credentials)127.0.0.1:\(port)"
    }

    /// True while the process runs.
    public var isRunning: Bool { process?.isRunning ?? false }

    /// Starts the server (again) on `port` and waits until it answers PING (at most `timeout`).
    public func start(timeout: Duration = .seconds(10)) async throws {
        guard process == nil else { return }
        starts += 1
        var arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", "--dir", directory.url.path, "--daemonize", "no",
        ]
        if let password { arguments += ["--requirepass", password] }
        arguments += extraArguments
        let started = try ManagedProcess(
            name: "redis-server-\(starts)", executable: Self.executable, arguments: arguments, directory: directory)
        process = started
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !Self.answersPing(port: port) {
            if !started.isRunning {
                process = nil
                throw started.failure("exited before answering PING")
            }
            if clock.now >= deadline {
                started.terminate()
                process = nil
                throw started.failure("did not answer PING on 127.0.0.1:\(port) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops the server by PID (SIGTERM, then SIGKILL) and waits until it has exited.
    public func stop() {
        process?.terminate()
        process = nil
    }

    /// Stops and starts the server on the same port.
    public func restart() async throws {
        stop()
        try await start()
    }

    /// The server's log (stdout) so far, for failure messages.
    public func log() -> String { process?.stdout() ?? "" }

    /// One blocking PING over a fresh socket with a 1 s receive timeout. `-NOAUTH` counts as an answer:
    /// a password-protected server is up, it just wants AUTH first.
    private static func answersPing(port: UInt16) -> Bool {
        guard let reply = LoopbackPorts.exchange(port: port, request: Array("*1\r\n$4\r\nPING\r\n".utf8)) else {
            return false
        }
        let text = String(decoding: reply, as: UTF8.self)
        return text.hasPrefix("+PONG") || text.hasPrefix("-NOAUTH")
    }
}
