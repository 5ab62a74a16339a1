// The load tool's sans-IO fetch session, driven by hand: the wants it sends, the window, verification.

import Bitswap
import EdgeswapLoad
import Multiformats
import NIOCore
import Testing
import UnixFS

private func rawCID(_ bytes: [UInt8]) throws -> CID {
    CID(codec: Multicodec.raw, multihash: try bytes.withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) })
}

private func block(_ cid: CID, _ bytes: [UInt8]) -> BitswapMessage {
    BitswapMessage(payload: [.init(prefix: cid.prefix, data: ByteBuffer(bytes: bytes))])
}

/// A root dag-pb node linking `count` raw leaves.
private struct TinyDAG {
    let leaves: [(CID, [UInt8])]
    let root: CID
    let rootBytes: [UInt8]

    init(count: Int) throws {
        var leaves: [(CID, [UInt8])] = []
        for index in 0..<count {
            let bytes = Array("leaf \(index) of a tiny DAG".utf8)
            leaves.append((try rawCID(bytes), bytes))
        }
        self.leaves = leaves
        self.rootBytes = PBNode(links: leaves.map { PBLink(hash: $0.0, name: "", tsize: UInt64($0.1.count)) },
                                data: [0x08, 0x02]).encoded()
        self.root = CID(codec: Multicodec.dagPB, multihash: try rootBytes.withUnsafeBytes {
            try Multihash.compute(code: Multicodec.sha2_256, of: $0)
        })
    }
}

@Suite struct FetchSessionTests {
    @Test func fetchesTheWayKuboDoesWithinTheWindow() throws {
        let dag = try TinyDAG(count: 5)
        var session = BitswapFetchSession(roots: [dag.root], configuration: .init(window: 2))
        let firstMessage = session.start(now: 0)
        let first = try #require(firstMessage)
        let rootWant = try #require(first.wantlist?.entries.first)
        #expect(first.wantlist?.entries.count == 1)
        #expect(rootWant.cid == dag.root && rootWant.wantType == .have && rootWant.sendDontHave)
        #expect(rootWant.priority == .max)

        let haveReply = session.receive(BitswapMessage(blockPresences: [.init(cid: dag.root, type: .have)]), now: 10)
        let afterHave = try #require(haveReply)
        #expect(afterHave.wantlist?.entries.map(\.wantType) == [.block])
        #expect(afterHave.wantlist?.entries.first?.cid == dag.root)

        // The root arrives: cancel it, then want the first two leaves (window 2).
        let rootReply = session.receive(block(dag.root, dag.rootBytes), now: 100)
        let afterRoot = try #require(rootReply)
        let entries = try #require(afterRoot.wantlist?.entries)
        #expect(entries.first?.cancel == true && entries.first?.cid == dag.root)
        #expect(entries.dropFirst().map(\.cid) == [dag.leaves[0].0, dag.leaves[1].0])
        #expect(entries.dropFirst().allSatisfy { $0.wantType == .block && $0.sendDontHave && !$0.cancel })
        #expect(session.outstandingCount == 2)

        var now: UInt64 = 200
        for index in 0..<5 {
            #expect(!session.isComplete)
            let reply = session.receive(block(dag.leaves[index].0, dag.leaves[index].1), now: now)
            now += 100
            let wanted = reply?.wantlist?.entries.filter { !$0.cancel }.map(\.cid) ?? []
            #expect(wanted == (index + 2 < 5 ? [dag.leaves[index + 2].0] : []))
        }
        #expect(session.isComplete)
        let statistics = session.statistics
        #expect(statistics.blocks == 6)
        #expect(statistics.bytes == dag.rootBytes.count + dag.leaves.reduce(0) { $0 + $1.1.count })
        #expect(statistics.haves == 1 && statistics.dontHaves == 0 && statistics.failureCount == 0)
        #expect(statistics.latencies.first == 100)
    }

    @Test func corruptBlockIsAnErrorAndNotCounted() throws {
        let dag = try TinyDAG(count: 1)
        var session = BitswapFetchSession(roots: [dag.leaves[0].0], configuration: .init(rootWantHave: false))
        _ = session.start(now: 0)
        var corrupt = dag.leaves[0].1
        corrupt[0] ^= 1
        _ = session.receive(block(dag.leaves[0].0, corrupt), now: 1)
        #expect(!session.isComplete)
        #expect(session.statistics.blocks == 0)
        #expect(session.statistics.failureCount == 1)
        guard case .unwantedBlock = session.statistics.failures.first else {
            Issue.record("expected unwantedBlock, got \(session.statistics.failures)")
            return
        }
        // A prefix naming an unknown hash function.
        _ = session.receive(BitswapMessage(payload: [.init(prefix: [1, 0x55, 0x7f, 32], data: ByteBuffer(bytes: corrupt))]), now: 2)
        #expect(session.statistics.failures.last == .unsupportedHash(code: 0x7f))
        _ = session.receive(block(dag.leaves[0].0, dag.leaves[0].1), now: 3)
        #expect(session.isComplete)
        #expect(session.statistics.blocks == 1)
        // The same block again: a duplicate, not an error.
        _ = session.receive(block(dag.leaves[0].0, dag.leaves[0].1), now: 4)
        #expect(session.statistics.duplicates == 1 && session.statistics.failureCount == 2)
    }

    @Test func dontHaveEndsTheBranch() throws {
        let dag = try TinyDAG(count: 2)
        var session = BitswapFetchSession(roots: [dag.root])
        _ = session.start(now: 0)
        let reply = session.receive(BitswapMessage(blockPresences: [.init(cid: dag.root, type: .dontHave)]), now: 1)
        #expect(reply == nil)
        #expect(session.isComplete)
        #expect(session.statistics.dontHaves == 1 && session.statistics.blocks == 0)
    }
}
