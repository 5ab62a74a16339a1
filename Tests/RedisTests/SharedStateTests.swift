import BlockStore
import EdgeswapTestSupport
import Multiformats
import Redis
import Testing

/// A CIDv1 (raw, sha2-256) of `text`.
func cid(_ text: String) throws -> CID {
    let bytes = Array(text.utf8)
    let multihash = try bytes.withUnsafeBytes { raw in try Multihash.compute(code: Multicodec.sha2_256, of: raw) }
    return CID(codec: Multicodec.raw, multihash: multihash)
}

/// The key's remaining time to live in milliseconds (PTTL: -2 no key, -1 no expiry).
func pttl(_ client: RedisClient, _ key: String) async throws -> Int64 {
    try #require(try await client.send(["PTTL", RedisArgument(key)]).integer)
}

@Suite struct SharedStateTests {
    static let peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"

    @Test func peerScopesKeepMostRecentFirstUpToTheLimit() async throws {
        let server = try await RedisServer()
        try await withClient(server) { client throws in
            let scopes = RedisPeerScopes(client: client, ttl: .seconds(600))
            let (a, b, c, d) = (try cid("a"), try cid("b"), try cid("c"), try cid("d"))
            #expect(try await scopes.cars(of: Self.peer, limit: 3) == [])

            // `cars[0]` is the most recent of a batch, as in the in-process scope.
            try await scopes.add([a, b], to: Self.peer, limit: 3)
            #expect(try await scopes.cars(of: Self.peer, limit: 3) == [a, b])
            try await scopes.add([c], to: Self.peer, limit: 3)
            #expect(try await scopes.cars(of: Self.peer, limit: 3) == [c, a, b])
            try await scopes.add([d], to: Self.peer, limit: 3)
            #expect(try await scopes.cars(of: Self.peer, limit: 3) == [d, c, a], "b, the oldest, trimmed")
            // Re-adding moves a CAR to the front without duplicating it.
            try await scopes.add([a], to: Self.peer, limit: 3)
            #expect(try await scopes.cars(of: Self.peer, limit: 3) == [a, d, c])
            #expect(try await scopes.cars(of: Self.peer, limit: 2) == [a, d])

            // The key and its members as written: hash-tagged peer ID, binary CIDs.
            let key = "es:peer:{\(Self.peer)}:cars"
            #expect(scopes.key(for: Self.peer) == key)
            #expect(try await client.send(["ZCARD", RedisArgument(key)]) == .integer(3))
            #expect(try await client.send(["ZREVRANGE", RedisArgument(key), 0, 0]) == .array([.bulkString(a.bytes)]))
            // Other peers are not affected.
            #expect(try await scopes.cars(of: "other-peer", limit: 3) == [])
        }
    }

    @Test func peerScopesRefreshTheirTimeToLive() async throws {
        let server = try await RedisServer()
        try await withClient(server) { client throws in
            let ttl: Duration = .seconds(300)
            let scopes = RedisPeerScopes(client: client, keyPrefix: "t:", ttl: ttl)
            let key = "t:peer:{\(Self.peer)}:cars"
            try await scopes.add([try cid("x")], to: Self.peer, limit: 8)
            let afterAdd = try await pttl(client, key)
            #expect(afterAdd > 100_000 && afterAdd <= 300_000, "PTTL after add: \(afterAdd)")

            // Shorten it to 5 s behind the scope's back; reading must set it back to the full 300 s (the bounds
            // tell the two apart with room for a loaded machine).
            #expect(try await client.send(["PEXPIRE", RedisArgument(key), 5_000]) == .integer(1))
            _ = try await scopes.cars(of: Self.peer, limit: 8)
            let afterRead = try await pttl(client, key)
            #expect(afterRead > 100_000 && afterRead <= 300_000, "PTTL after read: \(afterRead)")

            #expect(try await client.send(["PEXPIRE", RedisArgument(key), 5_000]) == .integer(1))
            try await scopes.add([try cid("y")], to: Self.peer, limit: 8)
            let afterSecondAdd = try await pttl(client, key)
            #expect(afterSecondAdd > 100_000, "PTTL after second add: \(afterSecondAdd)")

            // An expired scope is empty.
            let short = RedisPeerScopes(client: client, keyPrefix: "s:", ttl: .milliseconds(50))
            try await short.add([try cid("z")], to: Self.peer, limit: 8)
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await short.cars(of: Self.peer, limit: 8) == [])
        }
    }

    @Test func peerScopesSurviveAScriptFlush() async throws {
        let server = try await RedisServer()
        try await withClient(server) { client throws in
            let scopes = RedisPeerScopes(client: client)
            try await scopes.add([try cid("1")], to: Self.peer, limit: 4)
            #expect(try await client.send(["SCRIPT", "FLUSH"]) == .simpleString("OK"))
            try await scopes.add([try cid("2")], to: Self.peer, limit: 4)
            #expect(try await scopes.cars(of: Self.peer, limit: 4) == [try cid("2"), try cid("1")])
        }
    }

    @Test func indexCacheRoundTripWithTimeToLive() async throws {
        let server = try await RedisServer()
        try await withClient(server) { client throws in
            let cache = RedisIndexCache(client: client, ttl: .seconds(3600))
            let car = try cid("car")
            #expect(try await cache.index(of: car) == nil)
            let value = pseudoRandomBytes(count: 100_000, seed: 9) + [0, 0, 13, 10]
            let stored = ContinuousClock.now
            try await cache.store(value, for: car)
            #expect(try await cache.index(of: car) == value)
            #expect(try await cache.index(of: try cid("other car")) == nil)

            let key = "es:car:{\(car)}:idx"
            #expect(cache.key(for: car) == key)
            #expect(try await client.send(["STRLEN", RedisArgument(key)]) == .integer(Int64(value.count)))
            let ttl = try await pttl(client, key)
            // The TTL counts down from 1 h from the moment of the store: allow for the time since (a loaded CI
            // machine has taken over 10 s between these lines).
            let since = (ContinuousClock.now - stored).components
            let elapsedMs = Int(since.seconds) * 1000 + Int(since.attoseconds / 1_000_000_000_000_000) + 1
            #expect(ttl > 3_600_000 - elapsedMs && ttl <= 3_600_000, "PTTL: \(ttl) after \(elapsedMs) ms")

            // Storing again (another instance loaded the same index) overwrites and refreshes.
            try await cache.store([1, 2, 3], for: car)
            #expect(try await cache.index(of: car) == [1, 2, 3])
        }
    }

    @Test func sharedStateReportsAnUnreachableServer() async throws {
        let server = try await RedisServer()
        try await withClient(server, configure: { $0.connectTimeout = .seconds(1) }) { client throws in
            let scopes: any SharedPeerScopes = RedisPeerScopes(client: client)
            let cache: any SharedIndexCache = RedisIndexCache(client: client)
            server.stop()
            try await Task.sleep(for: .milliseconds(100))
            await #expect(throws: RedisError.self) { try await scopes.cars(of: Self.peer, limit: 4) }
            await #expect(throws: RedisError.self) { try await cache.index(of: try cid("car")) }
        }
    }
}
