import Bitswap
import Logging
import Multiformats
import NIOConcurrencyHelpers
import NIOCore
import Redis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An operator's cap on what one peer may cost per time window, shared by every instance when the ledger is in
/// Redis. Two resources are counted: storage subrequests (every LIST, index GET and ranged block GET the peer's
/// wants caused: what an object store bills and rate-limits) and block bytes served.
public struct QuotaPolicy: Sendable, Equatable {
    /// What a peer over its quota gets.
    public enum Action: String, Sendable, CaseIterable {
        /// Every further want of the window is answered as a miss (DONT_HAVE where the peer asked for one).
        /// Gentler than closing: boxo clients survive it and try other peers (anchors-and-specs: "DONT_HAVE plus
        /// pendingBytes and backpressure are gentler than closing").
        case dontHave = "dont-have"
        /// The connection is closed, as Hoverboard does when its subrequest budget runs out.
        case close
    }

    /// Length of a window; windows are aligned to the Unix epoch so every instance agrees on them.
    public var window: Duration
    /// Storage subrequests allowed per peer and window; nil: not counted against a cap.
    public var maxSubrequests: Int?
    /// Block bytes allowed per peer and window; nil: not counted against a cap.
    public var maxBytes: Int?
    public var action: Action

    public init(window: Duration = .seconds(60), maxSubrequests: Int? = nil, maxBytes: Int? = nil,
                action: Action = .dontHave) {
        self.window = window
        self.maxSubrequests = maxSubrequests
        self.maxBytes = maxBytes
        self.action = action
    }

    /// Whether any cap is set.
    public var isEnabled: Bool { maxSubrequests != nil || maxBytes != nil }

    /// Whether `usage` has reached a cap (the request that reaches it is served; the next is not).
    public func isExhausted(_ usage: QuotaUsage) -> Bool {
        if let maxSubrequests, usage.subrequests >= maxSubrequests { return true }
        if let maxBytes, usage.bytes >= maxBytes { return true }
        return false
    }

    /// The index of the window holding `unixMilliseconds`.
    public func windowIndex(atUnixMilliseconds unixMilliseconds: Int64) -> Int64 {
        unixMilliseconds / max(1, window.wholeMilliseconds)
    }
}

/// One peer's use of one window.
public struct QuotaUsage: Sendable, Equatable {
    public var subrequests: Int
    public var bytes: Int

    public init(subrequests: Int = 0, bytes: Int = 0) {
        self.subrequests = subrequests
        self.bytes = bytes
    }
}

/// Where usage is counted. `charge` adds and returns the window's totals in one step, so concurrent lookups
/// (and instances) never both see room that only one of them may use.
public protocol QuotaLedger: Sendable {
    func charge(peer: String, window: Int64, windowLength: Duration, subrequests: Int, bytes: Int) async throws
        -> QuotaUsage
}

/// Usage counted in this process only (one instance, or no Redis). Old windows are dropped as new ones start;
/// at most `maxPeers` peers are tracked per window (past it, the peers seen least recently are forgotten,
/// which can only err on the side of serving).
public actor LocalQuotaLedger: QuotaLedger {
    private var window: Int64 = .min
    private var usage: [String: QuotaUsage] = [:]
    private let maxPeers: Int

    public init(maxPeers: Int = 100_000) {
        self.maxPeers = maxPeers
    }

    public func charge(peer: String, window: Int64, windowLength: Duration, subrequests: Int, bytes: Int)
        -> QuotaUsage
    {
        if window != self.window {
            self.window = window
            usage = [:]
        }
        var entry = usage[peer] ?? QuotaUsage()
        entry.subrequests += subrequests
        entry.bytes += bytes
        if usage[peer] == nil, usage.count >= maxPeers { usage.removeAll(keepingCapacity: true) }
        usage[peer] = entry
        return entry
    }
}

/// Usage counted in Redis: one hash per peer and window, `<prefix>q:{<peerID>}:<window>` with fields `s`
/// (subrequests) and `b` (bytes), added to by one Lua script that also sets the key to expire after two
/// windows, so every instance behind the load balancer charges the same counters.
public struct RedisQuotaLedger: QuotaLedger {
    public let client: RedisClient
    public let keyPrefix: String

    public init(client: RedisClient, keyPrefix: String = "es:") {
        self.client = client
        self.keyPrefix = keyPrefix
    }

    public func key(peer: String, window: Int64) -> String { "\(keyPrefix)q:{\(peer)}:\(window)" }

    /// KEYS[1] the window's hash; ARGV[1] subrequests, ARGV[2] bytes, ARGV[3] TTL in ms. Returns {s, b}.
    static let chargeScript = """
        local s = redis.call('HINCRBY', KEYS[1], 's', ARGV[1])
        local b = redis.call('HINCRBY', KEYS[1], 'b', ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return {s, b}
        """

    public func charge(peer: String, window: Int64, windowLength: Duration, subrequests: Int, bytes: Int)
        async throws -> QuotaUsage
    {
        let ttl = 2 * windowLength.wholeMilliseconds
        let reply = try await client.evalSHA(
            script: Self.chargeScript, keys: [RedisArgument(key(peer: peer, window: window))],
            args: [RedisArgument(subrequests), RedisArgument(bytes), RedisArgument(max(1000, ttl))])
        guard let values = reply.array, values.count == 2, let s = values[0].integer, let b = values[1].integer else {
            throw RedisError.unexpectedReply(expected: "two integers", got: "\(reply)")
        }
        return QuotaUsage(subrequests: Int(s), bytes: Int(b))
    }
}

/// Counters for metrics.
public struct QuotaStatistics: Sendable, Equatable {
    /// Lookup batches refused because the peer was over its quota.
    public var refusedBatches = 0
    /// Wants in those batches.
    public var refusedWants = 0
    /// Connections closed for it (`.close`).
    public var closedConnections = 0
    /// Ledger calls that failed (the lookup was served: a quota never turns a ledger outage into an outage).
    public var ledgerFailures = 0
}

/// Per-peer quotas as a `LookupGate`: the step the Bitswap service takes before every lookup batch and after it.
///
/// Before a batch (`admit`), the peer's usage is read (a zero charge); over a cap the batch is refused as the
/// policy says: `.refuse` (every want a miss, DONT_HAVE where asked) or `.close` (the engine's close action).
/// After an admitted batch (`charge`), the storage subrequests it caused (counted by `MeteredBucket` while it
/// ran) and the bytes of the blocks it returned are added. A batch that starts under a cap is served whole, so a
/// cap can be passed by at most one batch (the engine's lookup batch size bounds that). Bytes served from the
/// verified block cache count too (they are block bytes sent); cache hits cost no subrequest. A ledger that
/// fails (Redis down) is counted and logged, and the batch is served.
public final class QuotaGate: LookupGate {
    public let policy: QuotaPolicy
    public let ledger: any QuotaLedger
    private let logger: Logger
    private let counters = NIOLockedValueBox(QuotaStatistics())
    private let clock: @Sendable () -> Int64

    /// `unixMilliseconds` is the wall clock (replaceable in tests).
    public init(policy: QuotaPolicy, ledger: any QuotaLedger, logger: Logger = Logger(label: "edgeswap.quota"),
                unixMilliseconds: @escaping @Sendable () -> Int64 = QuotaGate.wallClockMilliseconds) {
        self.policy = policy
        self.ledger = ledger
        self.logger = logger
        self.clock = unixMilliseconds
    }

    public var statistics: QuotaStatistics { counters.withLockedValue { $0 } }

    public static func wallClockMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    public func admit(_ batch: BlockLookupBatch) async -> BitswapEngine.Admission {
        let peer = Multibase.base58btc.encodeWithoutPrefix(batch.peer.peerID)
        let window = policy.windowIndex(atUnixMilliseconds: clock())
        guard let usage = await charge(peer, window, subrequests: 0, bytes: 0), policy.isExhausted(usage) else {
            return .admit
        }
        let first = counters.withLockedValue { c -> Bool in
            c.refusedBatches += 1
            c.refusedWants += batch.requests.count
            if policy.action == .close { c.closedConnections += 1 }
            return c.refusedBatches == 1 || c.refusedBatches.isMultiple(of: 100)
        }
        if first || policy.action == .close {
            logger.notice("peer over quota", metadata: [
                "peer": "\(peer)", "subrequests": "\(usage.subrequests)", "bytes": "\(usage.bytes)",
                "action": "\(policy.action.rawValue)",
            ])
        }
        let reason = "quota exceeded for \(peer): \(usage.subrequests) storage subrequests, \(usage.bytes) bytes this window"
        switch policy.action {
        case .dontHave: return .refuse(reason: reason)
        case .close: return .close(reason: reason)
        }
    }

    public func charge(_ batch: BlockLookupBatch, subrequests: Int, bytes: Int) async {
        guard subrequests > 0 || bytes > 0 else { return }
        let peer = Multibase.base58btc.encodeWithoutPrefix(batch.peer.peerID)
        let window = policy.windowIndex(atUnixMilliseconds: clock())
        _ = await charge(peer, window, subrequests: subrequests, bytes: bytes)
    }

    private func charge(_ peer: String, _ window: Int64, subrequests: Int, bytes: Int) async -> QuotaUsage? {
        do {
            return try await ledger.charge(peer: peer, window: window, windowLength: policy.window,
                                           subrequests: subrequests, bytes: bytes)
        } catch {
            let failures = counters.withLockedValue { c -> Int in
                c.ledgerFailures += 1
                return c.ledgerFailures
            }
            if failures <= 3 || failures.isMultiple(of: 1000) {
                logger.warning("quota ledger unavailable; serving without a quota check",
                               metadata: ["error": "\(error)", "failures": "\(failures)"])
            }
            return nil
        }
    }
}

extension Duration {
    /// The duration in whole milliseconds (rounded down), as Redis TTLs and window arithmetic take it.
    var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
