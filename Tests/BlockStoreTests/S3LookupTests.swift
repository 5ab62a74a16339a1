import Bitswap
import BlockStore
import EdgeswapServer
import EdgeswapTestSupport
import Multiformats
import ObjectStorage
import Testing

/// `IndexedCARBlockSource` over a real SeaweedFS (SigV4 enforced): what a crowd of cold peers costs in S3
/// requests. Runs in the loopback-only namespace like every test that starts a server.
@Suite struct S3LookupTests {
    @Test func hundredPeersAskingForOneColdRootCauseOneListingAndOneIndexGet() async throws {
        let s3 = try await SeaweedFS(name: "blockstore-single-flight")
        defer {
            s3.stop()
            s3.remove()
        }
        let client = S3Client(configuration: try S3Configuration(
            endpoint: s3.endpoint, bucket: "single-flight", accessKeyID: s3.accessKeyID,
            secretAccessKey: s3.secretAccessKey))
        let bucket = client.bucket("single-flight")
        try await bucket.createBucketIfMissing()
        let fixture = try loadFixture("rawleaves-3mib")
        let results = await Ingester(store: StoreBuckets(single: bucket)).ingest(paths: [try fixturePath(fixture)])
        #expect(results.count == 1)
        if case .failure(let error) = results[0] { Issue.record("ingest: \(error)") }

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
        try await client.shutdown()
    }
}
