import Multiformats
import Redis

/// `SharedPeerScopes` in Redis: one sorted set per peer, `<prefix>peer:{<peerID>}:cars`, whose members are
/// binary CIDs scored by recency (the braces are a Redis Cluster hash tag: "only the substring between { and
/// } is hashed", so every key of one peer lands in one slot).
///
/// Adding runs one Lua script (EVALSHA, loaded on demand), so the add, the trim to `limit` and the TTL
/// refresh are atomic with respect to other instances. Reading is ZREVRANGE plus PEXPIRE, pipelined: one
/// round trip.
public struct RedisPeerScopes: SharedPeerScopes {
    public let client: RedisClient
    /// Prepended to every key (default `es:`), so several deployments can share one Redis.
    public let keyPrefix: String
    /// How long a scope lives after it was last read or added to.
    public let ttl: Duration

    public init(client: RedisClient, keyPrefix: String = "es:", ttl: Duration = .seconds(600)) {
        self.client = client
        self.keyPrefix = keyPrefix
        self.ttl = ttl
    }

    /// The key holding `peer`'s scope.
    public func key(for peer: String) -> String { "\(keyPrefix)peer:{\(peer)}:cars" }

    /// KEYS[1] the scope; ARGV[1] limit; ARGV[2] TTL in ms; ARGV[3...] CIDs, least recent first. Each new
    /// CID is scored above the current highest score (a re-added CID moves to the front); then all but the
    /// `limit` highest are removed and the TTL is set. Returns the scope's size.
    static let addScript = """
        local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
        local score = 0
        if top[2] then score = tonumber(top[2]) end
        for i = 3, #ARGV do
          score = score + 1
          redis.call('ZADD', KEYS[1], score, ARGV[i])
        end
        local limit = tonumber(ARGV[1])
        redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 1))
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return redis.call('ZCARD', KEYS[1])
        """

    public func cars(of peer: String, limit: Int) async throws -> [CID] {
        guard limit > 0 else { return [] }
        let key = RedisArgument(key(for: peer))
        let replies = try await client.pipeline([
            ["ZREVRANGE", key, 0, RedisArgument(limit - 1)],
            ["PEXPIRE", key, RedisArgument(ttl.milliseconds)],
        ])
        if case .error(let message) = replies[0] { throw RedisError.server(message) }
        guard let members = replies[0].array else {
            throw RedisError.unexpectedReply(expected: "array from ZREVRANGE", got: replies[0].description)
        }
        return try members.map { member in
            guard let bytes = member.bytes else {
                throw RedisError.unexpectedReply(expected: "CID bytes", got: member.description)
            }
            return try CID(bytes: bytes)
        }
    }

    public func add(_ cars: [CID], to peer: String, limit: Int) async throws {
        guard !cars.isEmpty else { return }
        let args = [RedisArgument(max(limit, 0)), RedisArgument(ttl.milliseconds)]
            + cars.reversed().map { RedisArgument(bytes: $0.bytes) }
        _ = try await client.evalSHA(script: Self.addScript, keys: [RedisArgument(key(for: peer))], args: args)
    }
}

/// `SharedIndexCache` in Redis: `<prefix>car:{<carCID>}:idx` holds the encoded index with a TTL. A CAR is
/// immutable and content-addressed, so entries are never invalidated, only expired (and evicted by Redis'
/// own memory policy).
public struct RedisIndexCache: SharedIndexCache {
    public let client: RedisClient
    /// Prepended to every key (default `es:`).
    public let keyPrefix: String
    /// How long an index stays cached after it was stored.
    public let ttl: Duration

    public init(client: RedisClient, keyPrefix: String = "es:", ttl: Duration = .seconds(86_400)) {
        self.client = client
        self.keyPrefix = keyPrefix
        self.ttl = ttl
    }

    /// The key holding `car`'s index (the CID in its canonical text form).
    public func key(for car: CID) -> String { "\(keyPrefix)car:{\(car)}:idx" }

    public func index(of car: CID) async throws -> [UInt8]? {
        let reply = try await client.send(["GET", RedisArgument(key(for: car))])
        switch reply {
        case .null: return nil
        case .bulkString(let bytes): return bytes
        default: throw RedisError.unexpectedReply(expected: "bulk string or null from GET", got: reply.description)
        }
    }

    public func store(_ value: [UInt8], for car: CID) async throws {
        _ = try await client.send(["SET", RedisArgument(key(for: car)), RedisArgument(bytes: value),
                                   "PX", RedisArgument(ttl.milliseconds)])
    }
}

extension Duration {
    /// Whole milliseconds, at least 1 (PEXPIRE / PX reject 0).
    fileprivate var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}
