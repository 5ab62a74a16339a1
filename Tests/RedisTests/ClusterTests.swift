import BlockStore
import EdgeswapTestSupport
import Foundation
import Quota
import Redis
import Testing

/// A plain (non-cluster-aware) connection to one node, for setting up migrations and looking inside.
func nodeConnection(_ port: UInt16) async throws -> RedisConnection {
    try await RedisConnection.connect(to: RedisConfiguration(host: "127.0.0.1", port: Int(port)))
}

/// The node ID of each master and, per master, one key of the form `<prefix>-N` in its slots.
struct ClusterLayout {
    let ports: [UInt16]
    let ids: [String]
    /// Port → the slot ranges it serves.
    let ranges: [UInt16: [ClosedRange<Int>]]

    init(_ cluster: RedisCluster) async throws {
        ports = cluster.ports
        var ids: [String] = []
        for port in ports {
            let connection = try await nodeConnection(port)
            ids.append(try #require(try await connection.send(["CLUSTER", "MYID"]).string))
            await connection.close()
        }
        self.ids = ids
        let connection = try await nodeConnection(ports[0])
        let slots = try #require(try await connection.send(["CLUSTER", "SLOTS"]).array)
        await connection.close()
        var ranges: [UInt16: [ClosedRange<Int>]] = [:]
        for entry in slots {
            let fields = try #require(entry.array)
            let master = try #require(fields[2].array)
            let port = UInt16(try #require(master[1].integer))
            ranges[port, default: []].append(Int(try #require(fields[0].integer))...Int(try #require(fields[1].integer)))
        }
        self.ranges = ranges
    }

    /// Index (into `ports`) of the master serving `key`.
    func owner(of key: String) -> Int {
        let slot = RedisHashSlot.slot(of: key)
        return ports.firstIndex { ranges[$0, default: []].contains { $0.contains(slot) } }!
    }

    /// A key `<prefix>-N` served by master `index`.
    func key(on index: Int, prefix: String) -> String {
        (0...).lazy.map { "\(prefix)-\($0)" }.first { owner(of: $0) == index }!
    }
}

/// Moves `slot` from master `from` to master `to` the way `redis-cli --cluster reshard` does: IMPORTING on
/// the target, MIGRATING on the source, MIGRATE of `keys` (none: the slot stays mid-migration), then with
/// `finish` `CLUSTER SETSLOT <slot> NODE <target>` on every master (the target first).
func migrate(slot: Int, from: Int, to: Int, keys: [String], finish: Bool, in layout: ClusterLayout) async throws {
    let source = try await nodeConnection(layout.ports[from])
    let target = try await nodeConnection(layout.ports[to])
    #expect(try await target.send(["CLUSTER", "SETSLOT", RedisArgument(slot), "IMPORTING", RedisArgument(layout.ids[from])])
            == .simpleString("OK"))
    #expect(try await source.send(["CLUSTER", "SETSLOT", RedisArgument(slot), "MIGRATING", RedisArgument(layout.ids[to])])
            == .simpleString("OK"))
    if !keys.isEmpty {
        let command: [RedisArgument] = ["MIGRATE", "127.0.0.1", RedisArgument(Int(layout.ports[to])), "", 0, 5000, "KEYS"]
            + keys.map { RedisArgument($0) }
        #expect(try await source.send(command) == .simpleString("OK"))
    }
    if finish {
        for index in [to, from] + layout.ports.indices.filter({ $0 != to && $0 != from }) {
            let node = try await nodeConnection(layout.ports[index])
            #expect(try await node.send(["CLUSTER", "SETSLOT", RedisArgument(slot), "NODE", RedisArgument(layout.ids[to])])
                    == .simpleString("OK"))
            await node.close()
        }
    }
    await source.close()
    await target.close()
}

/// Waits (at most 5 s) until `condition` holds for the client's statistics.
func waitForStatistics(_ client: RedisClient, _ condition: (RedisClusterStatistics) -> Bool) async throws -> RedisClusterStatistics {
    let deadline = ContinuousClock.now + .seconds(5)
    while true {
        let statistics = await client.clusterStatistics()
        if condition(statistics) || ContinuousClock.now >= deadline { return statistics }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Key slots and routing without a server.
@Suite struct HashSlotTests {
    @Test func crc16AndSlotVectorsOfTheSpecification() {
        // "Output for "123456789": 31C3" (Redis Cluster specification, appendix A).
        #expect(RedisHashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisHashSlot.crc16([UInt8]()) == 0)
        // CLUSTER KEYSLOT's documented examples.
        #expect(RedisHashSlot.slot(of: "somekey") == 11058)
        #expect(RedisHashSlot.slot(of: "foo{hash_tag}") == 2515)
        #expect(RedisHashSlot.slot(of: "bar{hash_tag}") == 2515)
        // The hash tag examples of the specification.
        let user = RedisHashSlot.slot(of: "user1000")
        #expect(RedisHashSlot.slot(of: "{user1000}.following") == user)
        #expect(RedisHashSlot.slot(of: "{user1000}.followers") == user)
        #expect(RedisHashSlot.slot(of: "foo{}{bar}") == Int(RedisHashSlot.crc16(Array("foo{}{bar}".utf8)) % 16384))
        #expect(RedisHashSlot.slot(of: "foo{{bar}}zap") == RedisHashSlot.slot(of: "{bar"))
        #expect(RedisHashSlot.slot(of: "foo{bar}{zap}") == RedisHashSlot.slot(of: "bar"))
        #expect(RedisHashSlot.slot(of: "{}user1000") == Int(RedisHashSlot.crc16(Array("{}user1000".utf8)) % 16384))
        #expect(RedisHashSlot.slot(of: "no}brace{") == Int(RedisHashSlot.crc16(Array("no}brace{".utf8)) % 16384))
        // Our keys: one peer's keys share a slot.
        let peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
        #expect(RedisHashSlot.slot(of: "es:peer:{\(peer)}:cars") == RedisHashSlot.slot(of: "es:q:{\(peer)}:123"))
    }

    @Test func firstKeyOfCommands() {
        func key(_ command: [RedisArgument]) -> String? {
            RedisCommandKey.firstKey(of: command).map { String(decoding: $0.bytes, as: UTF8.self) }
        }
        #expect(key(["GET", "a"]) == "a")
        #expect(key(["set", "b", "1", "PX", 5]) == "b")
        #expect(key(["EVALSHA", "abc", 2, "k1", "k2", "arg"]) == "k1")
        #expect(key(["EVALSHA", "abc", 0, "arg"]) == nil)
        #expect(key(["EVAL", "return 1", "x"]) == nil)
        #expect(key(["PING"]) == nil)
        #expect(key(["SCRIPT", "LOAD", "return 1"]) == nil)
        #expect(key(["OBJECT", "ENCODING", "c"]) == "c")
        #expect(key(["XREAD", "COUNT", 2, "STREAMS", "s", "0"]) == "s")
        #expect(key(["ZUNION", 2, "z1", "z2"]) == "z1")
        #expect(key(["GET"]) == nil)
    }

    @Test func clusterURLs() throws {
        let configuration = try RedisConfiguration(url: "redis+cluster://edge:p%40ss@10.0.0.1:7001,[::1]:7002,node3")
        #expect(configuration.mode == .cluster(seeds: [
            RedisNode(host: "10.0.0.1", port: 7001), RedisNode(host: "::1", port: 7002), RedisNode(host: "node3", port: 6379),
        ]))
        #expect(configuration.username == "edge" && configuration.password == "p@ss")
        #expect(configuration.address == "10.0.0.1:7001")
        #expect(configuration.description == "redis+cluster://edge:***@10.0.0.1:7001,[::1]:7002,node3:6379")
        #expect(try RedisConfiguration(url: "redis+cluster://h:1/0").mode == .cluster(seeds: [RedisNode(host: "h", port: 1)]))
        #expect(try RedisConfiguration(url: "redis://h:1/2").mode == .standalone)
        for bad in ["redis+cluster://h:1/2", "redis+cluster://h:1,,h:2", "redis+cluster://", "redis+cluster://h:0"] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisConfiguration(url: bad) }
        }
    }
}

/// The client's cluster mode against a real 3-master Redis Cluster on loopback (run with
/// `bash .ci/in-netns swift test --skip-build --filter RedisTests`).
@Suite struct ClusterTests {
    @Test func getAndSetAcrossEveryMaster() async throws {
        let cluster = try await RedisCluster()
        let layout = try await ClusterLayout(cluster)
        try await withClient(url: cluster.url) { client throws in
            let keys = (0..<60).map { "key-\($0)" }
            for key in keys {
                #expect(try await client.send(["SET", RedisArgument(key), RedisArgument("v-\(key)")]) == .simpleString("OK"))
            }
            for key in keys {
                #expect(try await client.send(["GET", RedisArgument(key)]) == .bulkString(Array("v-\(key)".utf8)))
            }
            // Each key is on the master its slot says (our slot agrees with the server's CLUSTER KEYSLOT),
            // and every master got some.
            for (index, port) in layout.ports.enumerated() {
                let node = try await nodeConnection(port)
                let mine = keys.filter { layout.owner(of: $0) == index }
                #expect(!mine.isEmpty)
                #expect(try await node.send(["DBSIZE"]) == .integer(Int64(mine.count)))
                for key in mine.prefix(5) {
                    #expect(try await node.send(["CLUSTER", "KEYSLOT", RedisArgument(key)])
                            == .integer(Int64(RedisHashSlot.slot(of: key))))
                }
                await node.close()
            }
            // A pipeline of one hash tag goes to one node; keys of two slots are refused before sending.
            let replies = try await client.pipeline([["SET", "{tag}a", "1"], ["INCR", "{tag}a"], ["GET", "{tag}a"]])
            #expect(replies == [.simpleString("OK"), .integer(2), .bulkString([0x32])])
            let error = await #expect(throws: RedisError.self) {
                try await client.pipeline([["GET", "key-0"], ["GET", "key-1"]])
            }
            guard case .crossSlot? = error else {
                Issue.record("expected crossSlot, got \(String(describing: error))")
                return
            }
            // Keyless commands run on some master.
            #expect(try await client.send(["PING"]) == .simpleString("PONG"))
            let statistics = await client.clusterStatistics()
            #expect(statistics.movedRedirects == 0 && statistics.askRedirects == 0, "\(statistics)")
            #expect(statistics.slotMapRefreshes == 1, "\(statistics)")
        }
    }

    @Test func followsMovedAfterASlotMigrationAndRefreshesTheMap() async throws {
        let cluster = try await RedisCluster()
        let layout = try await ClusterLayout(cluster)
        try await withClient(url: cluster.url) { client throws in
            let key = layout.key(on: 0, prefix: "moved")
            #expect(try await client.send(["SET", RedisArgument(key), "before"]) == .simpleString("OK"))
            let before = await client.clusterStatistics()
            #expect(before.slotMapRefreshes == 1)

            try await Task.sleep(for: .milliseconds(300))  // past the refresh rate limit
            try await migrate(slot: RedisHashSlot.slot(of: key), from: 0, to: 1, keys: [key], finish: true, in: layout)
            // The client's map still says node 0: it gets MOVED, follows it and refreshes the map.
            #expect(try await client.send(["GET", RedisArgument(key)]) == .bulkString(Array("before".utf8)))
            let after = try await waitForStatistics(client) { $0.slotMapRefreshes >= 2 }
            #expect(after.movedRedirects == 1, "\(after)")
            #expect(after.slotMapRefreshes >= 2, "\(after)")
            // The map now knows: no further redirect, and writes land on node 1.
            #expect(try await client.send(["SET", RedisArgument(key), "after"]) == .simpleString("OK"))
            #expect(await client.clusterStatistics().movedRedirects == 1)
            let node1 = try await nodeConnection(layout.ports[1])
            #expect(try await node1.send(["GET", RedisArgument(key)]) == .bulkString(Array("after".utf8)))
            await node1.close()
        }
    }

    @Test func followsAskMidMigrationWithoutUpdatingTheMap() async throws {
        let cluster = try await RedisCluster()
        let layout = try await ClusterLayout(cluster)
        try await withClient(url: cluster.url) { client throws in
            let tag = "{" + layout.key(on: 2, prefix: "ask") + "}"
            let (moved, stayed) = ("\(tag)moved", "\(tag)stayed")
            #expect(try await client.send(["SET", RedisArgument(moved), "m"]) == .simpleString("OK"))
            #expect(try await client.send(["SET", RedisArgument(stayed), "s"]) == .simpleString("OK"))
            let slot = RedisHashSlot.slot(of: moved)
            try await migrate(slot: slot, from: 2, to: 0, keys: [moved], finish: false, in: layout)

            // The source no longer has `moved` and answers ASK; `stayed` it serves itself.
            #expect(try await client.send(["GET", RedisArgument(moved)]) == .bulkString([0x6D]))
            #expect(try await client.send(["GET", RedisArgument(stayed)]) == .bulkString([0x73]))
            // A pipeline split by the migration: one command asked over, the other answered at the source.
            let replies = try await client.pipeline([["GET", RedisArgument(moved)], ["GET", RedisArgument(stayed)]])
            #expect(replies == [.bulkString([0x6D]), .bulkString([0x73])])
            // EVALSHA follows ASK as well (the script is loaded on the target after its NOSCRIPT).
            let script = "return redis.call('GET', KEYS[1])"
            #expect(try await client.evalSHA(script: script, keys: [RedisArgument(moved)]) == .bulkString([0x6D]))
            let statistics = await client.clusterStatistics()
            #expect(statistics.askRedirects >= 3, "\(statistics)")
            #expect(statistics.movedRedirects == 0 && statistics.slotMapRefreshes == 1, "ASK leaves the map alone: \(statistics)")

            // A multi-key command whose keys are split is TRYAGAIN: retried a bounded number of times,
            // then the server's error.
            let error = await #expect(throws: RedisError.self) {
                try await client.send(["MGET", RedisArgument(moved), RedisArgument(stayed)])
            }
            #expect(error?.serverErrorCode == "TRYAGAIN", "got \(String(describing: error))")
            #expect(await client.clusterStatistics().retries == 5)
        }
    }

    @Test func aRedirectLoopEndsWithAClearError() async throws {
        let cluster = try await RedisCluster()
        let layout = try await ClusterLayout(cluster)
        try await withClient(url: cluster.url) { client throws in
            let key = layout.key(on: 1, prefix: "loop")
            // MIGRATING on the source without IMPORTING on the target: the source says ASK target, and the
            // target, not importing, says MOVED back to the source.
            let source = try await nodeConnection(layout.ports[1])
            #expect(try await source.send(["CLUSTER", "SETSLOT", RedisArgument(RedisHashSlot.slot(of: key)), "MIGRATING",
                                           RedisArgument(layout.ids[2])]) == .simpleString("OK"))
            await source.close()
            let started = ContinuousClock.now
            let error = await #expect(throws: RedisError.self) { try await client.send(["GET", RedisArgument(key)]) }
            guard case .tooManyRedirects(let command, let last)? = error else {
                Issue.record("expected tooManyRedirects, got \(String(describing: error))")
                return
            }
            #expect(command == "GET")
            #expect(last.hasPrefix("ASK") || last.hasPrefix("MOVED"), "\(last)")
            // Bounded, not a hang (5 redirects on loopback; the bound leaves room for a loaded CI machine).
            #expect(ContinuousClock.now - started < .seconds(15))
            #expect(error!.description.contains("redirected GET too many times"))
        }
    }

    @Test func evalSHALoadsTheScriptOnEachNode() async throws {
        let cluster = try await RedisCluster()
        let layout = try await ClusterLayout(cluster)
        try await withClient(url: cluster.url) { client throws in
            let script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
            let keys = layout.ports.indices.map { layout.key(on: $0, prefix: "script") }
            for key in keys {
                #expect(try await client.evalSHA(script: script, keys: [RedisArgument(key)], args: [5]) == .integer(5))
            }
            // Loaded on every master, because each ran it (node 0 loaded it first, so asking it for the SHA1
            // loads nothing new).
            let first = try await nodeConnection(layout.ports[0])
            let sha = try #require(try await first.send(["SCRIPT", "LOAD", RedisArgument(script)]).string)
            await first.close()
            for port in layout.ports {
                let node = try await nodeConnection(port)
                #expect(try await node.send(["SCRIPT", "EXISTS", RedisArgument(sha)]) == .array([.integer(1)]), "node \(port)")
                #expect(try await node.send(["SCRIPT", "FLUSH"]) == .simpleString("OK"))
                await node.close()
            }
            // Flushed everywhere: each node answers NOSCRIPT once and gets the script again.
            for key in keys {
                #expect(try await client.evalSHA(script: script, keys: [RedisArgument(key)], args: [2]) == .integer(7))
            }
            #expect(await client.clusterStatistics().movedRedirects == 0)
        }
    }

    @Test func sharedStateAndQuotaLedgerWorkUnchanged() async throws {
        let cluster = try await RedisCluster()
        let layout = try await ClusterLayout(cluster)
        try await withClient(url: cluster.url) { client throws in
            let scopes = RedisPeerScopes(client: client)
            let cache = RedisIndexCache(client: client)
            let ledger = RedisQuotaLedger(client: client)
            // Peers whose keys land on every master.
            let peers = (0..<12).map { "peer-\($0)" }
            #expect(Set(peers.map { layout.owner(of: scopes.key(for: $0)) }).count == 3)
            let (a, b) = (try cid("a"), try cid("b"))
            for peer in peers {
                try await scopes.add([a, b], to: peer, limit: 4)
                #expect(try await scopes.cars(of: peer, limit: 4) == [a, b])
                let usage = try await ledger.charge(peer: peer, window: 7, windowLength: .seconds(60), subrequests: 2, bytes: 10)
                #expect(usage == QuotaUsage(subrequests: 2, bytes: 10))
                let again = try await ledger.charge(peer: peer, window: 7, windowLength: .seconds(60), subrequests: 1, bytes: 5)
                #expect(again == QuotaUsage(subrequests: 3, bytes: 15))
            }
            let cars = try (0..<12).map { try cid("car \($0)") }
            #expect(Set(cars.map { layout.owner(of: cache.key(for: $0)) }).count == 3)
            for (index, car) in cars.enumerated() {
                try await cache.store([UInt8(index), 1, 2], for: car)
            }
            for (index, car) in cars.enumerated() {
                #expect(try await cache.index(of: car) == [UInt8(index), 1, 2])
            }
            #expect(try await cache.index(of: try cid("missing")) == nil)
            #expect(await client.clusterStatistics().movedRedirects == 0)
        }
    }

    @Test func aKilledNodeFailsFastWhileTheOthersKeepServing() async throws {
        let cluster = try await RedisCluster()
        let layout = try await ClusterLayout(cluster)
        try await withClient(url: cluster.url, configure: {
            $0.connectTimeout = .seconds(1)
            $0.reconnectBackoffBase = .milliseconds(50)
            $0.reconnectBackoffMax = .milliseconds(400)
        }) { client throws in
            let keys = layout.ports.indices.map { layout.key(on: $0, prefix: "kill") }
            for key in keys {
                #expect(try await client.send(["SET", RedisArgument(key), "1"]) == .simpleString("OK"))
            }
            cluster.kill(2)
            #expect(!cluster.isRunning(2))
            // Now and after the others have marked it failed (node timeout 2 s), node 2's slots fail with an
            // error naming it, quickly; the other masters' slots keep working.
            var unreachable = 0
            for round in 0..<2 {
                if round == 1 { try await Task.sleep(for: .seconds(3)) }
                for _ in 0..<3 {
                    for index in 0..<2 {
                        #expect(try await client.send(["INCR", RedisArgument(keys[index])]).integer != nil,
                                "round \(round), node \(index)")
                    }
                    let started = ContinuousClock.now
                    do throws(RedisError) {
                        _ = try await client.send(["GET", RedisArgument(keys[2])])
                        Issue.record("GET on the killed node's slot succeeded")
                    } catch .unreachable(let address, _) {
                        #expect(address == "127.0.0.1:\(layout.ports[2])")
                        unreachable += 1
                    } catch .connectionClosed {
                        // The first call may race the close of the pooled connection.
                    } catch {
                        Issue.record("round \(round): unexpected error \(error)")
                    }
                    #expect(ContinuousClock.now - started < .seconds(3), "round \(round)")
                }
            }
            #expect(unreachable >= 5, "at most the first call may race the closing connection")
            let statistics = await client.clusterStatistics()
            #expect(statistics.nodeFailures >= 1, "\(statistics)")
        }
    }
}
