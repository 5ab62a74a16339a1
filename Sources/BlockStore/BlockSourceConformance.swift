import Bitswap
import Multiformats
import NIOConcurrencyHelpers

extension IndexedCARBlockSource: BlockSource {
    /// Answers a Bitswap engine's batch. The peer's scope is keyed by its peer ID string (base58btc, as
    /// `ipfs id` prints it). Each distinct CID is looked up once; a CID wanted both as a block and as a
    /// have is looked up as a block. Corrupt blocks are answered `.notFound` (they were logged and counted:
    /// "a mismatch is never returned as a block").
    public func lookup(_ batch: BlockLookupBatch) async throws -> [CID: BlockLookupResult] {
        let results = NIOLockedValueBox([CID: BlockLookupResult]())
        await lookup(batch) { cid, result in results.withLockedValue { $0[cid] = result } }
        return results.withLockedValue { $0 }
    }

    /// `lookup(_:)` answering each distinct CID through `each` as soon as it is known (a block as soon as its
    /// section has arrived and been verified), returning when all are answered: the seam through which an engine
    /// could send the early blocks of a batch before its slowest run is in.
    public func lookup(_ batch: BlockLookupBatch, each: @escaping @Sendable (CID, BlockLookupResult) -> Void) async {
        var order: [CID] = []
        var haveOnly: [CID: Bool] = [:]
        for request in batch.requests {
            let have = request.wantType == .have
            if let seen = haveOnly[request.cid] {
                haveOnly[request.cid] = seen && have
            } else {
                haveOnly[request.cid] = have
                order.append(request.cid)
            }
        }
        let peer = Multibase.base58btc.encodeWithoutPrefix(batch.peer.peerID)
        let cids = order
        await lookup(order.map { ($0, haveOnly[$0]!) }, peer: peer, maxBlockSize: batch.maxBlockSize,
                     replaceHaveWithBlockSize: batch.replaceHaveWithBlockSize) { index, answer in
            each(cids[index], Self.result(answer))
        }
    }

    static func result(_ answer: BlockLookup) -> BlockLookupResult {
        switch answer {
        case .block(let bytes): return .block(bytes)
        case .have: return .have(size: nil)
        case .notFound, .corrupt: return .notFound
        case .tooLarge(let size): return .tooLarge(size: Int(clamping: size))
        case .unavailable(let error): return .failed("\(error)")
        }
    }

    public func missingBlocks(under root: CID, have: Set<Multihash>, peer: PeerContext) async throws -> [Multihash] {
        let name = Multibase.base58btc.encodeWithoutPrefix(peer.peerID)
        return try await missingBlocks(under: root, have: have, peer: name)
    }
}
