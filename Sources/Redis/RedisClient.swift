import Logging
import NIOCore
import NIOPosix

/// A Redis client: a small pool of pipelined connections to one server, or, in cluster mode, one such pool
/// per master of a Redis Cluster with every command routed by its key's hash slot.
///
/// - Connections are dialled lazily, up to `poolSize` (per node); callers are spread over them round robin,
///   and many commands share each connection (no checkout: replies pair with commands by order).
/// - A connection that has closed (server restart, timeout, protocol error) is dropped and re-dialled on
///   the next use. Failed dials back off exponentially with jitter; during the wait calls fail at once with
///   the last error (never a busy loop of dials).
/// - Every new connection sends AUTH and SELECT as configured.
/// - Cluster mode (`RedisConfiguration.Mode.cluster`): a command goes to the master serving the slot of
///   its first key (`RedisCommandKey.firstKey(of:)`; `send(_:key:)` names the key explicitly), commands
///   without a key to one master; MOVED, ASK, TRYAGAIN and CLUSTERDOWN are handled here (see
///   `RedisClusterRouter`), so callers use the same calls in both modes. A pipeline must hold keys of one
///   slot only (one hash tag), else it fails with `RedisError.crossSlot` before anything is sent.
/// - Every error is a `RedisError`.
///
/// Call `shutdown()` before dropping the client: it closes the connections.
public actor RedisClient {
    public nonisolated let configuration: RedisConfiguration

    /// Fixed at init by `configuration.mode`: the standalone path is the pool alone, untouched by any
    /// cluster logic.
    private enum Topology: Sendable {
        case standalone(RedisNodePool)
        case cluster(RedisClusterRouter)
    }

    private nonisolated let topology: Topology
    /// SHA1 of each script loaded with SCRIPT LOAD, by source text (the same on every node of a cluster).
    private var scriptSHAs: [String: String] = [:]

    public init(configuration: RedisConfiguration,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "edgeswap.redis")) {
        precondition(configuration.poolSize > 0, "poolSize must be positive")
        self.configuration = configuration
        switch configuration.mode {
        case .standalone:
            topology = .standalone(RedisNodePool(configuration: configuration, eventLoopGroup: eventLoopGroup,
                                                 logger: logger))
        case .cluster(let seeds):
            topology = .cluster(RedisClusterRouter(configuration: configuration, seeds: seeds,
                                                   eventLoopGroup: eventLoopGroup, logger: logger))
        }
    }

    /// Sends one command and returns its reply. An error reply throws `RedisError.server`. In cluster mode
    /// it goes to the node serving its first key.
    public nonisolated func send(_ command: [RedisArgument], timeout: Duration? = nil) async throws(RedisError) -> RedisValue {
        switch topology {
        case .standalone(let pool):
            return try await pool.connection().send(command, timeout: timeout)
        case .cluster(let router):
            return try await Self.single(router.execute([command], route: Self.route(of: [command]), timeout: timeout))
        }
    }

    /// `send(_:timeout:)` routed by `key` in cluster mode (for a command whose key the built-in table
    /// does not find); nil routes as `send(_:timeout:)` does. Standalone, `key` is ignored.
    public nonisolated func send(_ command: [RedisArgument], key: RedisArgument?,
                                 timeout: Duration? = nil) async throws(RedisError) -> RedisValue {
        guard let key, case .cluster(let router) = topology else { return try await send(command, timeout: timeout) }
        return try await Self.single(router.execute([command], route: .slot(RedisHashSlot.slot(of: key.bytes)),
                                                    timeout: timeout))
    }

    /// Sends `commands` on one connection in one write and returns their replies in order (one round trip).
    /// Error replies come back as `.error` values; transport failures throw. In cluster mode every key of
    /// the pipeline must be in one slot (`RedisError.crossSlot` otherwise).
    public nonisolated func pipeline(_ commands: [[RedisArgument]], timeout: Duration? = nil) async throws(RedisError) -> [RedisValue] {
        switch topology {
        case .standalone(let pool):
            return try await pool.connection().pipeline(commands, timeout: timeout)
        case .cluster(let router):
            return try await router.execute(commands, route: Self.route(of: commands), timeout: timeout)
        }
    }

    /// Runs a Lua script with EVALSHA. The script is loaded (SCRIPT LOAD) the first time and whenever the
    /// server answers NOSCRIPT (after a restart, failover or SCRIPT FLUSH), then the call is retried once.
    /// In cluster mode the EVALSHA goes to the node serving `keys[0]` (following redirects), and a node
    /// that answers NOSCRIPT gets the script there and then: each node loads it the first time it runs it.
    public nonisolated func evalSHA(script: String, keys: [RedisArgument] = [], args: [RedisArgument] = [],
                                    timeout: Duration? = nil) async throws(RedisError) -> RedisValue {
        let key = keys.first
        let sha: String
        if let known = await knownSHA(of: script) {
            sha = known
        } else {
            sha = try await loadScript(script, key: key)
        }
        let command: (String) -> [RedisArgument] = { sha in
            ["EVALSHA", RedisArgument(sha), RedisArgument(keys.count)] + keys + args
        }
        if case .cluster(let router) = topology {
            let route: RedisClusterRouter.Route = key.map { .slot(RedisHashSlot.slot(of: $0.bytes)) } ?? .anyNode
            return try await Self.single(router.execute([command(sha)], route: route, timeout: timeout, script: script))
        }
        do {
            return try await send(command(sha), timeout: timeout)
        } catch let error where error.serverErrorCode == "NOSCRIPT" {
            let reloaded = try await loadScript(script, key: key)
            return try await send(command(reloaded), timeout: timeout)
        }
    }

    private func knownSHA(of script: String) -> String? { scriptSHAs[script] }

    private nonisolated func loadScript(_ script: String, key: RedisArgument?) async throws(RedisError) -> String {
        let reply = try await send(["SCRIPT", "LOAD", RedisArgument(script)], key: key)
        guard let sha = reply.string else {
            throw .unexpectedReply(expected: "SHA1 from SCRIPT LOAD", got: reply.description)
        }
        await remember(sha: sha, for: script)
        return sha
    }

    private func remember(sha: String, for script: String) { scriptSHAs[script] = sha }

    /// A live connection from the pool, dialling one if its slot is empty or dead. In cluster mode a
    /// connection to one master (the one keyless commands go to); no redirects are followed on it.
    public nonisolated func connection() async throws(RedisError) -> RedisConnection {
        switch topology {
        case .standalone(let pool): try await pool.connection()
        case .cluster(let router): try await router.anyConnection()
        }
    }

    /// Slot map refreshes and redirects so far (all zero in standalone mode).
    public nonisolated func clusterStatistics() async -> RedisClusterStatistics {
        switch topology {
        case .standalone: RedisClusterStatistics()
        case .cluster(let router): await router.currentStatistics()
        }
    }

    /// Closes every connection; later calls fail with `RedisError.shutDown`.
    public func shutdown() async {
        switch topology {
        case .standalone(let pool): await pool.shutdown()
        case .cluster(let router): await router.shutdown()
        }
    }

    /// The route of a batch: the slot of its keys, which must agree, or any node when it has none.
    private static func route(of commands: [[RedisArgument]]) throws(RedisError) -> RedisClusterRouter.Route {
        var found: (slot: Int, key: RedisArgument)?
        for command in commands {
            guard let key = RedisCommandKey.firstKey(of: command) else { continue }
            let slot = RedisHashSlot.slot(of: key.bytes)
            if let found, found.slot != slot {
                throw .crossSlot("\(RedisValue.bulkString(found.key.bytes)) is in slot \(found.slot), "
                                 + "\(RedisValue.bulkString(key.bytes)) in slot \(slot)")
            }
            found = (slot, key)
        }
        return found.map { .slot($0.slot) } ?? .anyNode
    }

    /// The one reply of a one-command batch; an error reply throws, as `RedisConnection.send` does.
    private static func single(_ replies: [RedisValue]) throws(RedisError) -> RedisValue {
        guard let reply = replies.first else {
            throw .unexpectedReply(expected: "one reply", got: "none")
        }
        if case .error(let message) = reply { throw .server(message) }
        return reply
    }
}
