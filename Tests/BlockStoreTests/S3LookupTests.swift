import Bitswap
import BlockStore
import CAR
import EdgeswapServer
import EdgeswapTestSupport
import Multiformats
import NIOConcurrencyHelpers
import ObjectStorage
import Testing

/// `IndexedCARBlockSource` over a real SeaweedFS (SigV4 enforced): what a crowd of cold peers costs in S3
/// requests. Runs in the loopback-only namespace like every test that starts a server.
@Suite struct S3LookupTests {
    /// A SeaweedFS of its own with one bucket holding `fixture`, ingested: `body` gets the client, the bucket and
    /// the CAR's CID; the client is shut down and the server stopped after it.
    private func withIngestedS3(_ name: String, fixture: FixtureManifest.Fixture,
                                _ body: (S3Client, S3Bucket, CID) async throws -> Void) async throws {
        let s3 = try await SeaweedFS(name: "blockstore-\(name)")
        defer {
            s3.stop()
            s3.remove()
        }
        let client = S3Client(configuration: try S3Configuration(
            endpoint: s3.endpoint, bucket: name, accessKeyID: s3.accessKeyID, secretAccessKey: s3.secretAccessKey))
        let bucket = client.bucket(name)
        try await bucket.createBucketIfMissing()
        let results = await Ingester(store: StoreBuckets(single: bucket)).ingest(paths: [try fixturePath(fixture)])
        #expect(results.count == 1)
        do {
            try await body(client, bucket, try #require(results.first).get().car)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    @Test func hundredPeersAskingForOneColdRootCauseOneListingAndOneIndexGet() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        try await withIngestedS3("single-flight", fixture: fixture) { client, bucket, _ in
            let source = IndexedCARBlockSource(buckets: StoreBuckets(single: bucket))
            let root = try CID(string: fixture.root)
            let before = client.statistics.attempts
            // A hundred peers, all at once, want the root (a want-have, as kubo starts): nothing is cached yet.
            let answers = try await withThrowingTaskGroup(of: Bool.self) { group in
                for peer in 0..<100 {
                    group.addTask {
                        let batch = BlockLookupBatch(
                            peer: PeerContext(peerID: [0x00, 0x02, 0x08, UInt8(peer)], connectionID: UInt64(peer),
                                              protocolVersion: .v1_2_0),
                            requests: [BlockRequest(cid: root, wantType: .have, priority: .max)],
                            replaceHaveWithBlockSize: 0, maxBlockSize: 2 << 20)
                        if case .have = try await source.lookup(batch)[root] { return true }
                        return false
                    }
                }
                var all: [Bool] = []
                for try await answer in group { all.append(answer) }
                return all
            }
            #expect(answers.count == 100 && answers.allSatisfy { $0 }, "every peer gets HAVE for the root")
            let requests = client.statistics.attempts - before
            let stats = await source.statistics()
            #expect(stats.listings == 1, "one dudewhere LIST for the root, shared by every peer")
            #expect(stats.indexLoads == 1, "one index load for the CAR")
            // One LIST, one GET of the index, one ranged GET of the CAR's head (to find its payload): nothing more.
            #expect(requests == 3, "S3 requests for 100 cold peers: \(requests)")
            // Every peer's scope now holds the CAR (scopes are keyed by the base58btc peer ID).
            #expect(await source.scope(of: Multibase.base58btc.encodeWithoutPrefix([0x00, 0x02, 0x08, 42])).count == 1)
        }
    }

    /// A 3 MiB coalesced run through S3, its body streamed as NIO reads it: many pieces, sections split across
    /// them, every block verified and byte-exact, a corrupt section in the middle refused and the ones after it
    /// still served; the first block is answered long before the body's last piece is in.
    @Test func aStreamedRunThroughS3ServesEverySectionVerified() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        try await withIngestedS3("streamed", fixture: fixture) { _, bucket, car in
            let blocks = try sections(of: try fixturePath(fixture)).sorted { $0.0.offset < $1.0.offset }
            let victim = blocks.count / 2
            var bytes = try await bucket.get(StoreLayout.carKey(car))
            bytes[Int(blocks[victim].0.blockOffset + blocks[victim].0.blockLength / 2)] ^= 0x40
            try await bucket.put(StoreLayout.carKey(car), bytes: bytes)

            let watched = PieceWatchingBucket(base: bucket)
            var settings = IndexedCARBlockSourceSettings()
            settings.coalesceGap = 1 << 20
            settings.maxCoalescedRead = 64 << 20
            let source = IndexedCARBlockSource(buckets: StoreBuckets(single: watched), settings: settings)
            _ = await source.get(try CID(string: fixture.root), peer: "s3")
            source.blockCache.removeAll()
            let before = watched.pieces.withLockedValue { $0 }
            let firstAt = NIOLockedValueBox<Int?>(nil)
            let answers = NIOLockedValueBox([Int: BlockLookup]())
            await source.lookup(blocks.map { ($0.0.cid, false) }, peer: "s3", maxBlockSize: 2 << 20,
                                replaceHaveWithBlockSize: 0) { index, answer in
                let pieces = watched.pieces.withLockedValue { $0 } - before
                firstAt.withLockedValue { if $0 == nil { $0 = pieces } }
                answers.withLockedValue { $0[index] = answer }
            }
            let total = watched.pieces.withLockedValue { $0 } - before
            for (i, (section, data)) in blocks.enumerated() {
                let answer = answers.withLockedValue { $0[i] }
                if i == victim {
                    #expect(answer == .corrupt, "\(section.cid)")
                } else {
                    #expect(answer?.bytes == data, "\(i) \(section.cid)")
                }
            }
            #expect(total > 4, "the 3 MiB body came in \(total) pieces")
            let first = try #require(firstAt.withLockedValue { $0 })
            #expect(first < total, "first block answered after \(first) of \(total) pieces")
            let stats = await source.statistics()
            #expect(stats.blockReads == 2, "the root's read, then one run")
            #expect(stats.corruptBlocks == 1)
        }
    }
}
