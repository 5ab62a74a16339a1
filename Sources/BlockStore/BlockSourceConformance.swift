import Bitswap
import Multiformats

extension IndexedCARBlockSource: BlockSource {
    /// Answers a Bitswap engine's batch. The peer's scope is keyed by its peer ID string (base58btc, as
    /// `ipfs id` prints it). Each distinct CID is looked up once; a CID wanted both as a block and as a
    /// have is looked up as a block. Corrupt blocks are answered `.notFound` (they were logged and counted:
    /// "a mismatch is never returned as a block").
    public func lookup(_ batch: BlockLookupBatch) async throws -> [CID: BlockLookupResult] {
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
        let answers = await lookup(order.map { ($0, haveOnly[$0]!) }, peer: peer, maxBlockSize: batch.maxBlockSize,
                                   replaceHaveWithBlockSize: batch.replaceHaveWithBlockSize)
        var results: [CID: BlockLookupResult] = [:]
        results.reserveCapacity(order.count)
        for (cid, answer) in zip(order, answers) {
            switch answer {
            case .block(let bytes): results[cid] = .block(bytes)
            case .have: results[cid] = .have(size: nil)
            case .notFound, .corrupt: results[cid] = .notFound
            case .tooLarge(let size): results[cid] = .tooLarge(size: Int(clamping: size))
            case .unavailable(let error): results[cid] = .failed("\(error)")
            }
        }
        return results
    }

    public func missingBlocks(under root: CID, have: Set<Multihash>, peer: PeerContext) async throws -> [Multihash] {
        let name = Multibase.base58btc.encodeWithoutPrefix(peer.peerID)
        return try await missingBlocks(under: root, have: have, peer: name)
    }
}
