import CAR
import EdgeswapTestSupport
import Foundation
import Multiformats
import ObjectStorage
import Testing

/// The production lookup path end to end: CARs ingested into a real SeaweedFS (SigV4 enforced), per-peer
/// scopes and CAR indexes in a real redis-server, `edgeswap serve --s3-endpoint … --redis …` serving real
/// peers, and each fault the issue names. Everything runs in the loopback-only namespace (`make test`).
@Suite(.serialized) struct StoragePathTests {
    /// The parts of `fixtures.json` these tests read.
    struct Manifest: Decodable {
        struct Fixture: Decodable {
            let name: String
            let root: String
            let sha256: String?
            let car: String
            let blocks: Int
        }
        let fixtures: [Fixture]
    }

    /// SeaweedFS + Redis + the fixtures ingested into one bucket.
    final class Stack {
        let directory: TestDirectory
        let s3: SeaweedFS
        let redis: RedisServer
        let bucket = "edgeswap-test"
        let fixtures: String
        let manifest: Manifest

        init(name: String) async throws {
            directory = try TestDirectory(name: name)
            s3 = try await SeaweedFS(name: name)
            redis = try await RedisServer()
            fixtures = directory.path("fixtures").path
            try await runEdgeswap("fixtures", ["fixtures", "--output", fixtures], directory: directory)
            manifest = try JSONDecoder().decode(
                Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/fixtures.json")))
        }

        deinit {
            s3.stop()
            redis.stop()
            s3.remove()
            directory.remove()
        }

        /// The AWS_* variables `edgeswap` reads for this SeaweedFS.
        var environment: [String: String] {
            ["AWS_ACCESS_KEY_ID": s3.accessKeyID, "AWS_SECRET_ACCESS_KEY": s3.secretAccessKey, "AWS_REGION": "us-east-1"]
        }

        var storeArguments: [String] { ["--s3-endpoint", s3.endpoint, "--bucket", bucket] }

        /// The same bucket, from this process (to damage objects on purpose).
        func client() throws -> S3Client {
            S3Client(configuration: try S3Configuration(
                endpoint: s3.endpoint, bucket: bucket, accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey))
        }

        func fixture(_ name: String) throws -> Manifest.Fixture {
            try #require(manifest.fixtures.first { $0.name == name })
        }

        func ingest(_ names: [String]) async throws {
            let cars = try names.map { fixtures + "/" + (try fixture($0)).car }
            try await runEdgeswap("ingest", ["ingest", "--quiet"] + storeArguments + cars, directory: directory,
                                  environment: environment)
        }

        /// `edgeswap serve` on the S3 store, with Redis unless `redis` is false, and an admin port.
        /// `credentialsAsFlags`: pass the S3 credentials as options instead of AWS_* variables.
        func serve(name: String, redis useRedis: Bool = true, credentialsAsFlags: Bool = false,
                   extra: [String] = []) async throws -> (EdgeswapServe, String) {
            let key = directory.path("server.key").path
            if !FileManager.default.fileExists(atPath: key) {
                try await runEdgeswap("key", ["key", "new", "--output", key], directory: directory)
            }
            let server = try await EdgeswapServe.start(
                ["--key", key, "--log-level", "debug", "--admin-listen", "127.0.0.1:0",
                 "--listen", "/ip4/127.0.0.1/tcp/0/ws"] + storeArguments
                    + (useRedis ? ["--redis", redis.url] : []) + extra
                    + (credentialsAsFlags ? ["--s3-access-key-id", s3.accessKeyID,
                                             "--s3-secret-access-key", s3.secretAccessKey] : []),
                expectedListeners: 1, environment: credentialsAsFlags ? [:] : environment, directory: directory,
                processName: name)
            let line = try await server.process.waitForLine(matching: "^admin http://", timeout: .seconds(10))
            return (server, String(line.dropFirst("admin ".count)))
        }

        /// `edgeswap load` (our own Bitswap client) with `identity` asking for exactly `cids` (WANT_BLOCK with
        /// sendDontHave), as one JSON report.
        func load(_ cids: [String], from address: String, identity: String, name: String) async throws -> LoadReport {
            let list = directory.path("\(name).wantlist")
            try (cids.joined(separator: "\n") + "\n").write(to: list, atomically: true, encoding: .utf8)
            return try await runLoad(address, ["--key", identity, "--wantlist", list.path, "--round-timeout", "30"],
                                     name: name, directory: directory)
        }

        /// Keys in Redis matching `pattern` (redis-cli, from Debian's redis-tools).
        func redisKeys(_ pattern: String) async throws -> [String] {
            let process = try ManagedProcess(
                name: "redis-cli", executable: URL(fileURLWithPath: "/usr/bin/redis-cli"),
                arguments: ["-p", "\(redis.port)", "--scan", "--pattern", pattern], directory: directory)
            _ = try await process.waitForExit(timeout: .seconds(10))
            return process.stdoutLines().filter { !$0.isEmpty }
        }
    }

    /// Metric `name`'s value in a Prometheus text page.
    static func metric(_ name: String, in page: String) -> Int? {
        for line in page.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Int(line.dropFirst(name.count + 1))
        }
        return nil
    }

    static func metrics(_ admin: String) async throws -> String {
        try await AdminEndpointTests.get(admin + "/metrics").1
    }

    /// Every CID of a CAR, in file order (root first for the fixtures).
    static func cids(ofCAR path: String) throws -> [CID] {
        let reader = try CARReader(source: try FileByteSource(path: path))
        var out: [CID] = []
        while let (section, _) = try reader.nextBlock() { out.append(section.cid) }
        return out
    }

    @Test func kuboDownloadsThroughS3AndRedisByteExact() async throws {
        let stack = try await Stack(name: "s3-redis-kubo")
        let names = ["cidv0-20mib", "rawleaves-3mib", "blake3-2mib"]
        try await stack.ingest(names)
        let (server, admin) = try await stack.serve(name: "serve", credentialsAsFlags: true)
        defer { server.process.terminate() }
        let files = try names.map { try stack.fixture($0) }
        let report = try await Kubo.fetch(files.map(\.root), from: try server.listener(secure: false).multiaddr,
                                          identity: .ed25519, directory: stack.directory, timeout: .seconds(240))
        #expect(report.ok, "\(report)\n\(server.process.stderr().suffix(3000))")
        for file in files {
            let item = report.results?.first { $0.cid == file.root }
            #expect(item?.sha256 == file.sha256, "\(file.name): \(String(describing: item))")
        }
        let page = try await Self.metrics(admin)
        // One index GET per CAR: three CARs were touched, each loaded once.
        #expect(Self.metric("edgeswap_store_index_loads_total", in: page) == 3, "\(page)")
        #expect((Self.metric("edgeswap_s3_requests_total", in: page) ?? 0) > 0)
        #expect(Self.metric("edgeswap_store_shared_failures_total", in: page) == 0)
        // Redis now holds kubo's scope and the three indexes.
        #expect(try await stack.redisKeys("es:peer:{*}:cars").count == 1)
        #expect(try await stack.redisKeys("es:car:{*}:idx").count == 3)
    }

    @Test func peerResumesOnAnotherInstanceFromTheScopeInRedis() async throws {
        let stack = try await Stack(name: "s3-redis-resume")
        try await stack.ingest(["cidv0-20mib"])
        let fixture = try stack.fixture("cidv0-20mib")
        let cids = try Self.cids(ofCAR: stack.fixtures + "/" + fixture.car).map(\.description)
        #expect(cids.first == fixture.root)
        let identity = try await newKeyFile("client.key", in: stack.directory)

        let (first, _) = try await stack.serve(name: "serve-a")
        defer { first.process.terminate() }
        let (second, secondAdmin) = try await stack.serve(name: "serve-b")
        defer { second.process.terminate() }

        // On instance A the peer asks for the root and a few blocks, then is cut off (the process ends).
        let before = try await stack.load(Array(cids.prefix(4)), from: first.listeners[0].multiaddr,
                                          identity: identity, name: "load-a")
        #expect(before.blocks == 4 && before.errors == 0, "\(before)")
        // On instance B it asks only for non-root blocks: B finds them through the peer's scope in Redis.
        let after = try await stack.load(Array(cids.dropFirst(4)), from: second.listeners[0].multiaddr,
                                         identity: identity, name: "load-b")
        #expect(after.blocks == cids.count - 4, "\(after)")
        #expect(after.errors == 0 && after.dont_haves == 0, "\(after)")
        let page = try await Self.metrics(secondAdmin)
        #expect((Self.metric("edgeswap_store_shared_scope_reads_total", in: page) ?? 0) >= 1, "\(page)")
        // B never had to list dudewhere or blockmap: the scope alone located every block, and the index came
        // from Redis (A cached it), not from satnav.
        #expect(Self.metric("edgeswap_store_listings_total", in: page) == 0, "\(page)")
        #expect(Self.metric("edgeswap_store_index_loads_total", in: page) == 1)
        #expect(Self.metric("edgeswap_store_shared_index_hits_total", in: page) == 1, "\(page)")

        // A peer with another identity gets nothing for the same non-root blocks on B: no scope, and the
        // blocks are under no root it asked for (blockmap still finds them: served, but only after listings).
        let stranger = try await newKeyFile("stranger.key", in: stack.directory)
        let other = try await stack.load([cids[5]], from: second.listeners[0].multiaddr, identity: stranger,
                                         name: "load-stranger")
        #expect(other.blocks == 1)
        let later = try await Self.metrics(secondAdmin)
        #expect((Self.metric("edgeswap_store_listings_total", in: later) ?? 0) >= 1, "\(later)")
    }

    @Test func s3OutageGivesDontHaveAndNotReadyThenRecovers() async throws {
        let stack = try await Stack(name: "s3-outage")
        try await stack.ingest(["rawleaves-3mib"])
        let fixture = try stack.fixture("rawleaves-3mib")
        let cids = try Self.cids(ofCAR: stack.fixtures + "/" + fixture.car).map(\.description)
        let identity = try await newKeyFile("client.key", in: stack.directory)
        let (server, admin) = try await stack.serve(name: "serve", extra: ["--s3-retries", "1", "--s3-timeout", "2"])
        defer { server.process.terminate() }
        let address = server.listeners[0].multiaddr
        #expect(try await AdminEndpointTests.awaitStatus(admin + "/readyz", 200).0 == 200)

        stack.s3.stop()
        let down = try await stack.load([cids[0]], from: address, identity: identity, name: "load-down")
        #expect(down.blocks == 0)
        #expect(down.dont_haves == 1, "asked with sendDontHave while S3 is down: \(down)")
        let notReady = try await AdminEndpointTests.awaitStatus(admin + "/readyz", 503)
        #expect(notReady.0 == 503, "\(notReady.1)")
        #expect(notReady.1.contains("FAIL s3 \(stack.bucket)"), "\(notReady.1)")
        #expect(server.process.isRunning)

        try await stack.s3.start()
        // Ready again once a LIST succeeds (SeaweedFS's S3 port answers a moment before its filer does).
        let ready = try await AdminEndpointTests.awaitStatus(admin + "/readyz", 200, within: .seconds(30))
        #expect(ready.0 == 200, "\(ready.1)")
        // The negative cache forgets failures (only misses are cached), so the same block is served now.
        let up = try await stack.load(cids, from: address, identity: identity, name: "load-up")
        #expect(up.blocks == cids.count && up.errors == 0, "\(up)")
    }

    @Test func redisOutageServesThroughS3ThenCachesAgain() async throws {
        let stack = try await Stack(name: "redis-outage")
        try await stack.ingest(["rawleaves-3mib", "blake3-2mib"])
        let (server, admin) = try await stack.serve(name: "serve")
        defer { server.process.terminate() }
        let address = try server.listener(secure: false).multiaddr
        stack.redis.stop()

        let raw = try stack.fixture("rawleaves-3mib")
        let during = try await Kubo.fetch([raw.root], from: address, identity: .ed25519, name: "kubo-during",
                                          directory: stack.directory, timeout: .seconds(120))
        #expect(during.results?.first?.sha256 == raw.sha256, "\(during)\n\(server.process.stderr().suffix(3000))")
        let page = try await Self.metrics(admin)
        #expect((Self.metric("edgeswap_store_shared_failures_total", in: page) ?? 0) > 0, "\(page)")
        #expect(server.process.stderr().contains("shared store unavailable"))
        let readiness = try await AdminEndpointTests.awaitStatus(admin + "/readyz", 200)
        #expect(readiness.0 == 200, "Redis is not critical: \(readiness.1)")
        #expect(readiness.1.contains("FAIL redis (not critical)"), "\(readiness.1)")

        try await stack.redis.restart()
        let blake = try stack.fixture("blake3-2mib")
        // Reconnects are backed off (at most 10 s between dials); the next fetch after that uses Redis again.
        try await Task.sleep(for: .seconds(1))
        let after = try await Kubo.fetch([blake.root], from: address, identity: .ed25519, name: "kubo-after",
                                         directory: stack.directory, timeout: .seconds(120))
        #expect(after.results?.first?.sha256 == blake.sha256, "\(after)")
        var indexKeys: [String] = []
        for _ in 0..<40 {
            indexKeys = try await stack.redisKeys("es:car:{*}:idx")
            if !indexKeys.isEmpty { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(!indexKeys.isEmpty, "after Redis came back, the next cold CAR index was cached there again")
    }

    @Test func corruptedRangeInS3IsNeverSent() async throws {
        let stack = try await Stack(name: "s3-corrupt")
        try await stack.ingest(["rawleaves-3mib"])
        let fixture = try stack.fixture("rawleaves-3mib")
        let path = stack.fixtures + "/" + fixture.car
        let cids = try Self.cids(ofCAR: path)
        // Flip one byte in the middle of the last block's data, in the object S3 holds (same size, so the
        // index still points at the section).
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count - 100] ^= 0x5a
        let client = try stack.client()
        let carKeys = try await client.bucket(stack.bucket).listAll(prefix: "").filter { $0.hasSuffix(".car") }
        #expect(carKeys.count == 1, "\(carKeys)")
        try await client.bucket(stack.bucket).put(try #require(carKeys.first), bytes: bytes)
        try await client.shutdown()

        let identity = try await newKeyFile("client.key", in: stack.directory)
        let (server, admin) = try await stack.serve(name: "serve")
        defer { server.process.terminate() }
        let report = try await stack.load(cids.map(\.description), from: server.listeners[0].multiaddr,
                                          identity: identity, name: "load")
        // Every other block arrives and verifies; the damaged one never does (the client verifies what it gets,
        // so a wrong block would show up as an error).
        #expect(report.blocks == cids.count - 1, "\(report)")
        #expect(report.errors == 0, "\(report)")
        #expect(report.dont_haves == 1, "\(report)")
        #expect(server.process.stderr().contains("block does not match its CID"))
        let page = try await Self.metrics(admin)
        #expect(Self.metric("edgeswap_store_corrupt_blocks_total", in: page) == 1, "\(page)")
    }
}
