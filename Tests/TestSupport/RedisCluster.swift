import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A throwaway Redis Cluster of `masters` masters (Debian's `/usr/bin/redis-server`, no replicas) on free
/// loopback ports, created with `redis-cli --cluster create`, for tests of the client's cluster mode.
///
/// Every node binds 127.0.0.1 and announces 127.0.0.1 (`cluster-announce-ip`), persists nothing
/// (`--save "" --appendonly no`) and keeps its `nodes.conf` in its own scratch directory. Each node's port
/// `p` comes with its cluster bus port `p + 10000` (the default), both reserved through
/// `LoopbackPorts.allocatePair`. `cluster-require-full-coverage no`: when a master dies, the others keep
/// serving their slots (the specification: "If the option is set to no, the cluster will still serve
/// queries even if only requests about a subset of keys can be processed"). Nodes are stopped by PID in `stop()` / `kill`
/// and at the latest in `deinit`.
public final class RedisCluster {
    public static let cli = URL(fileURLWithPath: "/usr/bin/redis-cli")

    /// The client port of each master, in creation order.
    public let ports: [UInt16]
    public let directory: TestDirectory
    private var processes: [ManagedProcess?]

    /// Starts the nodes, creates the cluster (slots split evenly) and waits for `cluster_state:ok` on
    /// every node (at most `timeout`).
    public init(masters: Int = 3, nodeTimeout: Duration = .seconds(2), timeout: Duration = .seconds(60)) async throws {
        for tool in [RedisServer.executable, Self.cli] where !FileManager.default.isExecutableFile(atPath: tool.path) {
            throw InteropHarnessError("\(tool.path) is missing: run `make deps` (or `bash .ci/deps`) to install redis-server and redis-tools")
        }
        directory = try TestDirectory(name: "redis-cluster")
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var ports: [UInt16] = []
        var processes: [ManagedProcess?] = []
        for index in 0..<masters {
            let (port, process) = try await Self.startNode(index, nodeTimeout: nodeTimeout, in: directory, until: deadline)
            ports.append(port)
            processes.append(process)
        }
        self.ports = ports
        self.processes = processes
        let create = try ManagedProcess(
            name: "redis-cli-cluster-create", executable: Self.cli,
            arguments: ["--cluster", "create"] + ports.map { "127.0.0.1:\($0)" }
                + ["--cluster-replicas", "0", "--cluster-yes"],
            directory: directory)
        let status = try await create.waitForExit(timeout: deadline - clock.now)
        guard status == 0 else { throw create.failure("exited with \(status)") }
        for index in ports.indices {
            try await waitUntil(deadline, "node \(index) reports cluster_state:ok", node: index) {
                Self.reply(port: self.ports[index], to: ["CLUSTER", "INFO"]).contains("cluster_state:ok")
            }
        }
    }

    deinit {
        stop()
        directory.remove()
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`: every master as a seed.
    public var url: String { "redis+cluster://" + ports.map { "127.0.0.1:\($0)" }.joined(separator: ",") }

    /// True while node `index` runs.
    public func isRunning(_ index: Int) -> Bool { processes[index]?.isRunning ?? false }

    /// Kills node `index` by PID with SIGKILL (a crash: no goodbye to clients or the other nodes).
    public func kill(_ index: Int) {
        processes[index]?.kill()
        processes[index] = nil
    }

    /// Stops every node by PID (SIGTERM, then SIGKILL).
    public func stop() {
        for index in processes.indices {
            processes[index]?.terminate()
            processes[index] = nil
        }
    }

    /// Node `index`'s log (stdout) so far, for failure messages.
    public func log(_ index: Int) -> String { processes[index]?.stdout() ?? "" }

    /// Starts node `index` on a fresh port pair and waits until it answers PING. A port that was free when
    /// it was drawn can be taken before the node binds it (the bus port in particular, which the node binds
    /// second); the node then exits with "Address already in use" and is started again on other ports.
    private static func startNode(_ index: Int, nodeTimeout: Duration, in directory: TestDirectory,
                                  until deadline: ContinuousClock.Instant) async throws -> (UInt16, ManagedProcess) {
        let nodeTimeoutMs = nodeTimeout.components.seconds * 1000 + nodeTimeout.components.attoseconds / 1_000_000_000_000_000
        for attempt in 1...3 {
            let port = try LoopbackPorts.allocatePair(offset: 10_000)
            let nodeDirectory = directory.path("node-\(index)-\(port)")
            try FileManager.default.createDirectory(at: nodeDirectory, withIntermediateDirectories: true)
            let process = try ManagedProcess(
                name: "redis-cluster-node-\(index)-\(port)", executable: RedisServer.executable,
                arguments: [
                    "--port", String(port), "--bind", "127.0.0.1", "--protected-mode", "no",
                    "--save", "", "--appendonly", "no", "--dir", nodeDirectory.path, "--daemonize", "no",
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", String(nodeTimeoutMs), "--cluster-announce-ip", "127.0.0.1",
                    "--cluster-require-full-coverage", "no",
                ],
                directory: directory)
            while !reply(port: port, to: ["PING"]).hasPrefix("+PONG") {
                if !process.isRunning {
                    if attempt < 3, process.stdout().contains("Address already in use") { break }
                    throw process.failure("exited before answering PING")
                }
                if ContinuousClock.now >= deadline {
                    process.terminate()
                    throw process.failure("did not answer PING on 127.0.0.1:\(port) in time")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            if process.isRunning { return (port, process) }
        }
        throw InteropHarnessError("redis cluster node \(index): no free port pair in 3 attempts")
    }

    private func waitUntil(_ deadline: ContinuousClock.Instant, _ what: String, node: Int,
                           _ condition: () -> Bool) async throws {
        while !condition() {
            if let process = processes[node], !process.isRunning { throw process.failure("exited before: \(what)") }
            if ContinuousClock.now >= deadline {
                throw processes[node]?.failure("timed out waiting until \(what)") ?? InteropHarnessError(what)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// One command over a fresh blocking socket; the first bytes of the reply as text ("" if none).
    private static func reply(port: UInt16, to command: [String]) -> String {
        var request = "*\(command.count)\r\n"
        for argument in command { request += "$\(argument.utf8.count)\r\n\(argument)\r\n" }
        let bytes = LoopbackPorts.exchange(port: port, request: Array(request.utf8), maxReply: 256) ?? []
        return String(decoding: bytes, as: UTF8.self)
    }
}
