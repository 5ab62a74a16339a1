import Bitswap
import BlockStore
import CAR
import EdgeswapServer
import Multiformats
import NIOCore
import ObjectStorage
import Testing

/// `IndexedCARBlockSource` as the Bitswap engine sees it: `BlockSource.lookup(_:)`.
@Suite struct BlockSourceConformanceTests {
    private static let peerID: [UInt8] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20] + [UInt8](repeating: 7, count: 32)

    private func batch(_ requests: [BlockRequest], maxBlockSize: Int = 2 << 20) -> BlockLookupBatch {
        BlockLookupBatch(peer: PeerContext(peerID: Self.peerID, connectionID: 1, protocolVersion: .v1_2_0),
                         requests: requests, replaceHaveWithBlockSize: 1024, maxBlockSize: maxBlockSize)
    }

    @Test func answersBlocksHavesAndMisses() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        let (bucket, _) = try await ingestedStore([try fixturePath(fixture)], label: "blockstore-conformance")
        let counting = CountingBucket(base: bucket)
        let source: any BlockSource = IndexedCARBlockSource(buckets: StoreBuckets(single: counting))
        let blocks = try sections(of: try fixturePath(fixture))
        let root = blocks[0]
        let leaf = blocks[4]
        #expect(root.1.count < 1024 && leaf.1.count > 1024)
        let absent = try rawCID(of: [1])

        // kubo's opening: want-have for the root. The root's section is under 1024 bytes, so it comes as a
        // block (boxo's maxBlockSizeReplaceHasWithBlock).
        let first = try await source.lookup(batch([BlockRequest(cid: root.0.cid, wantType: .have, priority: .max)]))
        guard case .block(let rootBytes)? = first[root.0.cid] else {
            Issue.record("root: \(String(describing: first[root.0.cid]))")
            return
        }
        #expect(Array(rootBytes.readableBytesView) == root.1)

        // Then, the same peer: a have for a large leaf (answered from the index, no CAR read), a block for
        // another leaf asked twice, and a miss.
        await counting.log.reset()
        let other = blocks[7]
        let second = try await source.lookup(batch([
            BlockRequest(cid: leaf.0.cid, wantType: .have, priority: 10),
            BlockRequest(cid: other.0.cid, wantType: .block, priority: 9),
            BlockRequest(cid: other.0.cid, wantType: .have, priority: 8),
            BlockRequest(cid: absent, wantType: .block, priority: 7),
        ]))
        #expect(second.count == 3)
        guard case .have(size: nil)? = second[leaf.0.cid] else {
            Issue.record("leaf have: \(String(describing: second[leaf.0.cid]))")
            return
        }
        guard case .block(let otherBytes)? = second[other.0.cid] else {
            Issue.record("leaf block: \(String(describing: second[other.0.cid]))")
            return
        }
        #expect(Array(otherBytes.readableBytesView) == other.1)
        guard case .notFound? = second[absent] else {
            Issue.record("absent: \(String(describing: second[absent]))")
            return
        }
        // The leaves were found through the peer's scope: the only listings are the miss's two.
        #expect(await counting.log.listings == [StoreLayout.rootPrefix(absent), StoreLayout.blockPrefix(absent.multihash)])
        #expect(await counting.log.blockReads.count == 1, "only the wanted block is read")

        // The engine's block size limit applies.
        let small = try await source.lookup(batch([BlockRequest(cid: leaf.0.cid, wantType: .block, priority: 1)],
                                                  maxBlockSize: 1000))
        guard case .tooLarge(let size)? = small[leaf.0.cid] else {
            Issue.record("too large: \(String(describing: small[leaf.0.cid]))")
            return
        }
        #expect(size >= leaf.1.count)
    }
}
