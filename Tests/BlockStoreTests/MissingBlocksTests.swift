import Bitswap
import BlockStore
import CAR
import EdgeswapServer
import NIOCore
import Multiformats
import ObjectStorage
import Testing

/// `BlockSource`'s has / get / missingBlocks(under:) on the indexed CAR store.
@Suite struct MissingBlocksTests {
    private let peer = PeerContext(peerID: [0x00, 0x02, 0x08, 0x01], connectionID: 1, protocolVersion: .v1_2_0)

    private func source() async throws -> IndexedCARBlockSource {
        let fixtures = try loadFixture("cidv0-20mib")
        let (bucket, _) = try await ingestedStore([try fixturePath(fixtures)], label: "missing-blocks")
        return IndexedCARBlockSource(buckets: StoreBuckets(single: bucket))
    }

    @Test func missingBlocksUnderARootAreListedInCAROrder() async throws {
        let fixture = try loadFixture("cidv0-20mib")
        let source = try await source()
        let inCAR = try sections(of: try fixturePath(fixture)).map(\.0.cid.multihash)
        #expect(inCAR.count == 81)
        let root = try CID(string: fixture.root)

        let all = try await source.missingBlocks(under: root, have: [], peer: peer)
        #expect(all == inCAR)
        // The root's CAR is now in the peer's scope, as when it asks for the root.
        #expect(await source.scope(of: Multibase.base58btc.encodeWithoutPrefix(peer.peerID)).count == 1)

        // What the peer has is left out; the rest keeps its order.
        let have = Set(inCAR.prefix(10) + [inCAR[40]])
        let rest = try await source.missingBlocks(under: root, have: have, peer: peer)
        #expect(rest == inCAR.enumerated().filter { !have.contains($0.element) }.map(\.element))
        #expect(try await source.missingBlocks(under: root, have: Set(inCAR), peer: peer).isEmpty)

        // A CID that is no root here (a leaf, or unknown): nothing.
        let leaf = CID(codec: Multicodec.raw, multihash: inCAR[5])
        #expect(try await source.missingBlocks(under: leaf, have: [], peer: peer).isEmpty)
    }

    @Test func hasAndGetThroughTheBlockSourceProtocol() async throws {
        let fixture = try loadFixture("cidv0-20mib")
        let source: any BlockSource = try await source()
        let blocks = try sections(of: try fixturePath(fixture))
        let root = try CID(string: fixture.root)
        #expect(try await source.has(root, peer: peer))
        let leaf = blocks[7]
        #expect(try await source.get(leaf.0.cid, peer: peer).map { Array($0.readableBytesView) } == leaf.1)
        let digest = try Array("not stored".utf8).withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
        let absent = try CID(v0: digest)
        #expect(try await source.has(absent, peer: peer) == false)
        #expect(try await source.get(absent, peer: peer) == nil)
    }
}
