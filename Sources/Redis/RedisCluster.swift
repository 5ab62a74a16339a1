import Logging
import NIOCore

/// What the cluster-mode client has done about the cluster's topology, for metrics and tests. All zero in
/// standalone mode.
public struct RedisClusterStatistics: Sendable, Hashable {
    /// Slot maps read with CLUSTER SLOTS (the first one included).
    public var slotMapRefreshes = 0
    /// MOVED replies followed.
    public var movedRedirects = 0
    /// ASK replies followed.
    public var askRedirects = 0
    /// TRYAGAIN / CLUSTERDOWN replies retried.
    public var retries = 0
    /// Nodes that could not be reached (or dropped a connection), each followed by a map refresh.
    public var nodeFailures = 0

    public init() {}
}

/// Which master serves each of the 16384 hash slots, as CLUSTER SLOTS reported it (plus the slots MOVED
/// replies have reassigned since).
struct RedisSlotMap: Sendable {
    /// Masters in order of their first slot.
    private(set) var masters: [RedisNode] = []
    /// Per slot an index into `masters`, or -1 when no node serves it.
    private var owners = [Int16](repeating: -1, count: RedisHashSlot.count)

    func owner(of slot: Int) -> RedisNode? {
        let index = owners[slot]
        return index < 0 ? nil : masters[Int(index)]
    }

    mutating func assign(_ slots: ClosedRange<Int>, to node: RedisNode) {
        let index: Int
        if let known = masters.firstIndex(of: node) {
            index = known
        } else {
            index = masters.count
            masters.append(node)
        }
        for slot in slots { owners[slot] = Int16(index) }
    }

    /// Parses a CLUSTER SLOTS reply read from `node`. Each entry is `[start, end, master, replicas...]` and
    /// each node `[endpoint, port, id, ...]`; the command's documentation: "A NULL value for the endpoint
    /// indicates the node has an unknown endpoint and the client should connect to the same endpoint it used
    /// to send the CLUSTER SLOTS command but with the port returned from the command", and "?" marks an
    /// endpoint that cannot be used at all (such a range is left unserved).
    static func parse(_ reply: RedisValue, from node: RedisNode) throws(RedisError) -> RedisSlotMap {
        guard let entries = reply.array else {
            throw .unexpectedReply(expected: "array from CLUSTER SLOTS", got: reply.description)
        }
        var map = RedisSlotMap()
        for entry in entries {
            guard let fields = entry.array, fields.count >= 3,
                  let start = fields[0].integer, let end = fields[1].integer,
                  0 <= start, start <= end, end < RedisHashSlot.count,
                  let master = fields[2].array, master.count >= 2,
                  let port = master[1].integer, (1...65535).contains(port)
            else {
                throw .unexpectedReply(expected: "CLUSTER SLOTS entry [start, end, [host, port, id], ...]",
                                       got: entry.description)
            }
            let host: String
            switch master[0] {
            case .null: host = node.host
            case let endpoint where endpoint.string == "": host = node.host
            case let endpoint where endpoint.string == "?": continue
            case let endpoint:
                guard let text = endpoint.string else {
                    throw .unexpectedReply(expected: "endpoint string in CLUSTER SLOTS", got: endpoint.description)
                }
                host = text
            }
            map.assign(Int(start)...Int(end), to: RedisNode(host: host, port: Int(port)))
        }
        return map
    }
}

/// The reply of a node that does not serve the command's slot (the specification, "Redirection and
/// resharding" and "Hash slots configuration propagation").
enum RedisClusterRedirect: Equatable {
    /// "-MOVED 3999 127.0.0.1:6381": another node serves the slot; retry there and update the map ("it is
    /// likely multiple slots were reconfigured rather than just one, so updating the client configuration
    /// as soon as possible is often the best strategy").
    case moved(slot: Int, node: RedisNode)
    /// "-ASK 3999 127.0.0.1:6381": only this query goes to `node`, after ASKING; the map is not updated.
    case ask(slot: Int, node: RedisNode)
    /// "-TRYAGAIN" (a multi-key command during a resharding) or "-CLUSTERDOWN" (the cluster cannot serve
    /// the slot now): retry after a short wait.
    case retry

    /// The redirect `reply` (from `from`) stands for, or nil for any other reply (a malformed MOVED or ASK
    /// included: it goes back to the caller as the error reply it is).
    init?(_ reply: RedisValue, from: RedisNode) {
        guard case .error(let message) = reply else { return nil }
        if message.hasPrefix("TRYAGAIN") || message.hasPrefix("CLUSTERDOWN") {
            self = .retry
            return
        }
        let words = message.split(separator: " ")
        guard words.count == 3, words[0] == "MOVED" || words[0] == "ASK",
              let slot = Int(words[1]), (0..<RedisHashSlot.count).contains(slot),
              let colon = words[2].lastIndex(of: ":"),
              let port = Int(words[2][words[2].index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = String(words[2][..<colon])
        // An unknown endpoint is sent as ":port" (cluster-preferred-endpoint-type): same host, that port.
        if host.isEmpty { host = from.host }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let node = RedisNode(host: host, port: port)
        self = words[0] == "MOVED" ? .moved(slot: slot, node: node) : .ask(slot: slot, node: node)
    }
}

/// Cluster mode of `RedisClient`: the slot map, one `RedisNodePool` per master, and the routing of each
/// command (or single-slot pipeline) to the master that serves its slot, following the specification's
/// client rules:
///
/// - MOVED: the slot is reassigned in the map at once, the command retried on the named node, and the
///   whole map refreshed (rate-limited to one CLUSTER SLOTS per `clusterRefreshInterval`, one at a time).
/// - ASK: "send only the query that was redirected to the specified node but continue sending subsequent
///   queries to the old node. Start the redirected query with the ASKING command. Don't yet update local
///   client tables". ASKING and the command go in one write on one connection, since "ASKING sets a
///   one-time flag on the client".
/// - TRYAGAIN / CLUSTERDOWN: retried `clusterRetries` times with a doubling, jittered wait.
/// - A node that cannot be dialled: the map is refreshed from another known node and the command retried
///   if the slot now has another owner (failover); otherwise the dial error is the command's error. A
///   connection lost with the command in flight is not retried (it may have run); the map is refreshed for
///   the next command.
/// - At most `clusterMaxRedirects` redirects per call, then `RedisError.tooManyRedirects`.
actor RedisClusterRouter {
    /// Where a batch goes next.
    enum Route: Sendable {
        /// The master serving this slot.
        case slot(Int)
        /// Commands without a key: one master, the same one until it fails (so SCRIPT LOAD and a keyless
        /// EVALSHA meet on one node).
        case anyNode
        /// An ASK target, for this batch only.
        case asking(RedisNode)
    }

    private enum State {
        /// `lastRefresh`: when the last CLUSTER SLOTS read ended (nil before the first).
        case idle(lastRefresh: ContinuousClock.Instant?)
        /// A read is under way; callers that need the map wait for it (single flight).
        case refreshing(Task<Result<RedisSlotMap, RedisError>, Never>)
        case shutDown
    }

    nonisolated let configuration: RedisConfiguration
    private nonisolated let seeds: [RedisNode]
    private let group: any EventLoopGroup
    private let logger: Logger
    private var state = State.idle(lastRefresh: nil)
    /// Nil until the first CLUSTER SLOTS read succeeds.
    private var map: RedisSlotMap?
    private var pools: [RedisNode: RedisNodePool] = [:]
    private var statistics = RedisClusterStatistics()
    /// Which master `.anyNode` means (advanced when it cannot be reached); also where refreshes start.
    private var anyNodeIndex = 0

    init(configuration: RedisConfiguration, seeds: [RedisNode], eventLoopGroup: any EventLoopGroup,
         logger: Logger) {
        precondition(!seeds.isEmpty, "a cluster needs at least one seed node")
        self.configuration = configuration
        self.seeds = seeds
        group = eventLoopGroup
        self.logger = logger
    }

    func currentStatistics() -> RedisClusterStatistics { statistics }

    /// Sends `commands` (all for the slot of `route`) in one write and returns their replies in order,
    /// following redirects; error replies other than redirects are returned as values.
    ///
    /// With `script` (the batch is an EVALSHA of it), a NOSCRIPT reply loads the script with SCRIPT LOAD on
    /// the node that gave it, which after a redirect is not the node the key's slot first led to, and the
    /// command is sent there again (once per call).
    nonisolated func execute(_ commands: [[RedisArgument]], route initial: Route, timeout: Duration?,
                             script: String? = nil) async throws(RedisError) -> [RedisValue] {
        if commands.isEmpty { return [] }
        var results = [RedisValue?](repeating: nil, count: commands.count)
        var pending = Array(commands.indices)
        var route = initial
        var redirects = 0
        var retries = 0
        var nodeFailures = 0
        var scriptLoads = 0
        while true {
            let (node, pool) = try await target(for: route)
            let connection: RedisConnection
            do {
                connection = try await pool.connection()
            } catch {
                // Never sent, so safe to retry elsewhere if the map now says so (bounded: a few nodes).
                guard case .unreachable = error, nodeFailures < 3,
                      await retryAfterFailure(of: node, route: route) else { throw error }
                nodeFailures += 1
                continue
            }
            let asking: Bool
            let batch: [[RedisArgument]]
            if case .asking = route {
                asking = true
                batch = pending.flatMap { [["ASKING"], commands[$0]] }
            } else {
                asking = false
                batch = pending.map { commands[$0] }
            }
            let replies: [RedisValue]
            do {
                replies = try await connection.pipeline(batch, timeout: timeout)
            } catch {
                if case .connectionClosed = error { await connectionLost(to: node) }
                throw error
            }
            var again: [Int] = []
            var next: Route?
            var lastRedirect = ""
            var loadScript = false
            for (position, index) in pending.enumerated() {
                let reply = replies[asking ? 2 * position + 1 : position]
                results[index] = reply
                if script != nil, scriptLoads == 0, case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
                    loadScript = true
                    again.append(index)
                    continue
                }
                guard let redirect = RedisClusterRedirect(reply, from: node) else { continue }
                again.append(index)
                switch redirect {
                case .moved(let slot, let target):
                    if next == nil {
                        next = .slot(slot)
                        await moved(slot: slot, to: target)
                    }
                    lastRedirect = "MOVED \(slot) \(target.address) from \(node.address)"
                case .ask(let slot, let target):
                    if next == nil {
                        next = .asking(target)
                        await asked()
                    }
                    lastRedirect = "ASK \(slot) \(target.address) from \(node.address)"
                case .retry:
                    break
                }
            }
            if again.isEmpty { return results.compactMap { $0 } }
            if loadScript, let script, next == nil {
                // Same node, same route (ASKING again if asked): only the script was missing there.
                scriptLoads += 1
                _ = try await connection.send(["SCRIPT", "LOAD", RedisArgument(script)], timeout: timeout)
            } else if let next {
                redirects += 1
                guard redirects <= configuration.clusterMaxRedirects else {
                    throw .tooManyRedirects(command: RedisConnection.name(of: commands), last: lastRedirect)
                }
                route = next
            } else {
                retries += 1
                // Out of retries: the TRYAGAIN / CLUSTERDOWN replies stand as the commands' replies.
                guard retries <= configuration.clusterRetries else { return results.compactMap { $0 } }
                await retrying()
                try? await Task.sleep(for: Self.backoff(base: configuration.clusterRetryBackoff, attempt: retries))
            }
            pending = again
        }
    }

    /// A connection to the master `.anyNode` stands for.
    nonisolated func anyConnection() async throws(RedisError) -> RedisConnection {
        var failures = 0
        while true {
            let (node, pool) = try await target(for: .anyNode)
            do {
                return try await pool.connection()
            } catch {
                guard case .unreachable = error, failures < 3,
                      await retryAfterFailure(of: node, route: .anyNode) else { throw error }
                failures += 1
            }
        }
    }

    /// Closes every node's connections; later calls fail with `RedisError.shutDown`.
    func shutdown() async {
        state = .shutDown
        let all = pools.values
        pools = [:]
        for pool in all { await pool.shutdown() }
    }

    // MARK: - Map and pools

    private func target(for route: Route) async throws(RedisError) -> (RedisNode, RedisNodePool) {
        if case .shutDown = state { throw .shutDown }
        let node: RedisNode
        switch route {
        case .asking(let target):
            node = target
        case .anyNode:
            let map = try await currentMap()
            guard !map.masters.isEmpty else { throw .clusterTopology("the slot map lists no master") }
            node = map.masters[anyNodeIndex % map.masters.count]
        case .slot(let slot):
            guard let owner = try await currentMap().owner(of: slot) else {
                refreshInBackground()
                throw .clusterTopology("no node serves hash slot \(slot) (CLUSTER SLOTS leaves it unassigned)")
            }
            node = owner
        }
        if case .shutDown = state { throw .shutDown }
        return (node, pool(for: node))
    }

    private func pool(for node: RedisNode) -> RedisNodePool {
        if let pool = pools[node] { return pool }
        let pool = RedisNodePool(configuration: configuration.forNode(node), eventLoopGroup: group, logger: logger)
        pools[node] = pool
        return pool
    }

    private func currentMap() async throws(RedisError) -> RedisSlotMap {
        if let map { return map }
        return try await refresh()
    }

    /// Reads the map with CLUSTER SLOTS from the first known node that answers, unless one was read less
    /// than `clusterRefreshInterval` ago (then the current map is returned), or joins the read under way.
    @discardableResult
    private func refresh() async throws(RedisError) -> RedisSlotMap {
        switch state {
        case .shutDown:
            throw .shutDown
        case .refreshing(let task):
            return try await task.value.get()
        case .idle(let lastRefresh):
            if let map, let lastRefresh, ContinuousClock.now - lastRefresh < configuration.clusterRefreshInterval {
                return map
            }
        }
        var candidates: [(RedisNode, RedisNodePool)] = []
        let masters = map?.masters ?? []
        for offset in masters.indices {
            let node = masters[(anyNodeIndex + offset) % masters.count]
            candidates.append((node, pool(for: node)))
        }
        for seed in seeds where !masters.contains(seed) { candidates.append((seed, pool(for: seed))) }
        let timeout = configuration.commandTimeout
        let task = Task { await Self.readSlotMap(from: candidates, timeout: timeout) }
        state = .refreshing(task)
        let result = await task.value
        if case .shutDown = state { throw .shutDown }
        state = .idle(lastRefresh: .now)
        let fresh = try result.get()
        map = fresh
        statistics.slotMapRefreshes += 1
        logger.debug("redis cluster slot map read", metadata: [
            "masters": "\(fresh.masters.map(\.address))", "refreshes": "\(statistics.slotMapRefreshes)",
        ])
        // Pools of nodes that are neither masters nor seeds any more (removed, or demoted to replica).
        for (node, stale) in pools where !fresh.masters.contains(node) && !seeds.contains(node) {
            pools[node] = nil
            Task { await stale.shutdown() }
        }
        return fresh
    }

    private func refreshInBackground() {
        if case .idle = state { Task { try? await self.refresh() } }
    }

    private static func readSlotMap(from candidates: [(RedisNode, RedisNodePool)],
                                    timeout: Duration) async -> Result<RedisSlotMap, RedisError> {
        var failures: [String] = []
        var allUnreachable = true
        for (node, pool) in candidates {
            do throws(RedisError) {
                let reply = try await pool.connection().send(["CLUSTER", "SLOTS"], timeout: timeout)
                let map = try RedisSlotMap.parse(reply, from: node)
                guard !map.masters.isEmpty else {
                    throw .clusterTopology("CLUSTER SLOTS lists no slots (the cluster is not set up yet)")
                }
                return .success(map)
            } catch {
                if case .unreachable = error {} else { allUnreachable = false }
                failures.append("\(node.address): \(error)")
            }
        }
        let reason = "no node answered CLUSTER SLOTS: " + failures.joined(separator: "; ")
        // Every node down reads as Redis being down (what a caller falls back on), not as a topology problem.
        return .failure(allUnreachable
            ? .unreachable(address: candidates.map(\.0.address).joined(separator: ","), reason: reason)
            : .clusterTopology(reason))
    }

    /// After `node` could not be dialled: refreshes the map (rate-limited) and says whether the route now
    /// leads elsewhere (failover, or another master for keyless commands).
    private func retryAfterFailure(of node: RedisNode, route: Route) async -> Bool {
        statistics.nodeFailures += 1
        switch route {
        case .asking:
            return false
        case .anyNode:
            let masters = ((try? await refresh()) ?? map)?.masters ?? []
            guard masters.count > 1 else { return false }
            if masters[anyNodeIndex % masters.count] == node { anyNodeIndex += 1 }
            return true
        case .slot(let slot):
            guard let fresh = try? await refresh(), let owner = fresh.owner(of: slot) else { return false }
            return owner != node
        }
    }

    private func connectionLost(to node: RedisNode) {
        statistics.nodeFailures += 1
        logger.debug("redis cluster connection lost; refreshing the slot map", metadata: ["node": "\(node.address)"])
        refreshInBackground()
    }

    private func moved(slot: Int, to node: RedisNode) {
        statistics.movedRedirects += 1
        if map == nil { map = RedisSlotMap() }
        map?.assign(slot...slot, to: node)  // in place (optional chaining mutates the stored map)
        refreshInBackground()
    }

    private func asked() { statistics.askRedirects += 1 }

    private func retrying() { statistics.retries += 1 }

    /// base * 2^(attempt-1), scaled by a random 50-100 %.
    private static func backoff(base: Duration, attempt: Int) -> Duration {
        var wait = base
        for _ in 1..<max(1, min(attempt, 16)) { wait *= 2 }
        return wait * Double.random(in: 0.5...1.0)
    }
}
