import Logging
import NIOCore
import NIOPosix

/// A small pool of pipelined connections to one Redis server (one node of a cluster, or the one server).
///
/// - Connections are dialled lazily, up to `poolSize`; callers are spread over them round robin, and many
///   commands share each connection (no checkout: replies pair with commands by order).
/// - A connection that has closed (server restart, timeout, protocol error) is dropped and re-dialled on
///   the next use. Failed dials back off exponentially with jitter; during the wait calls fail at once with
///   the last error (never a busy loop of dials).
/// - Every new connection sends AUTH and SELECT as configured.
actor RedisNodePool {
    nonisolated let configuration: RedisConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger

    private enum Slot {
        case empty
        case connecting(Task<RedisConnection, any Error>)
        case ready(RedisConnection)
    }

    private var slots: [Slot]
    private var nextSlot = 0
    private var dialFailures = 0
    private var nextDialAllowed: ContinuousClock.Instant?
    private var lastDialError: RedisError?
    private var isShutDown = false

    init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        precondition(configuration.poolSize > 0, "poolSize must be positive")
        self.configuration = configuration
        group = eventLoopGroup
        self.logger = logger
        slots = Array(repeating: .empty, count: configuration.poolSize)
    }

    /// A live connection from the pool, dialling one if its slot is empty or dead.
    func connection() async throws(RedisError) -> RedisConnection {
        guard !isShutDown else { throw .shutDown }
        let index = nextSlot
        nextSlot = (nextSlot + 1) % slots.count
        switch slots[index] {
        case .ready(let connection) where connection.isActive:
            return connection
        case .connecting(let task):
            return try await Self.value(of: task)
        case .ready(let dead):
            logger.debug("redis connection closed; dropping it", metadata: ["address": "\(dead.address)"])
            slots[index] = .empty
        case .empty:
            break
        }
        let now = ContinuousClock.now
        if let until = nextDialAllowed, now < until {
            // Backing off: use any other live connection, else fail fast with why the last dial failed.
            for case .ready(let connection) in slots where connection.isActive { return connection }
            let wait = until - now
            switch lastDialError {
            case .unreachable(let address, let reason)?:
                throw .unreachable(address: address, reason: "\(reason) (next dial in \(wait))")
            case let error?:
                throw error
            case nil:
                throw .unreachable(address: configuration.address, reason: "backing off (next dial in \(wait))")
            }
        }
        let configuration = configuration
        let group = group
        let task = Task { () async throws -> RedisConnection in
            try await RedisConnection.connect(to: configuration, on: group)
        }
        slots[index] = .connecting(task)
        let connection: RedisConnection
        do throws(RedisError) {
            connection = try await Self.value(of: task)
        } catch {
            if case .connecting = slots[index] { slots[index] = .empty }
            dialFailures += 1
            let wait = backoff(afterFailures: dialFailures)
            nextDialAllowed = ContinuousClock.now + wait
            lastDialError = error
            logger.warning("redis dial failed", metadata: [
                "address": "\(configuration.address)", "error": "\(error)",
                "failures": "\(dialFailures)", "retry_in": "\(wait)",
            ])
            throw error
        }
        if isShutDown {
            await connection.close()
            throw .shutDown
        }
        if case .connecting = slots[index] { slots[index] = .ready(connection) }
        if dialFailures > 0 {
            logger.info("redis reachable again", metadata: ["address": "\(configuration.address)"])
        }
        dialFailures = 0
        nextDialAllowed = nil
        lastDialError = nil
        return connection
    }

    /// base * 2^(failures-1), capped at the maximum, then scaled by a random 50-100 % ("equal jitter").
    private func backoff(afterFailures failures: Int) -> Duration {
        let base = configuration.reconnectBackoffBase
        let cap = configuration.reconnectBackoffMax
        var wait = base
        for _ in 1..<max(1, min(failures, 32)) where wait < cap { wait *= 2 }
        wait = min(wait, cap)
        return wait * Double.random(in: 0.5...1.0)
    }

    private static func value(of task: Task<RedisConnection, any Error>) async throws(RedisError) -> RedisConnection {
        do {
            return try await task.value
        } catch let error as RedisError {
            throw error
        } catch {
            throw .unreachable(address: "?", reason: "\(error)")
        }
    }

    /// Closes every connection; later calls fail with `RedisError.shutDown`.
    func shutdown() async {
        isShutDown = true
        let current = slots
        slots = Array(repeating: .empty, count: slots.count)
        for slot in current {
            switch slot {
            case .ready(let connection): await connection.close()
            case .connecting(let task): if let connection = try? await task.value { await connection.close() }
            case .empty: break
            }
        }
    }
}
