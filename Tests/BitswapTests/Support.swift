import Bitswap
import Multiformats
import NIOCore
import Testing

/// sha2-256("hello"), the digest in the c.7 examples.
let helloDigest: [UInt8] = hex("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(s.filter { !$0.isWhitespace })
    precondition(chars.count % 2 == 0)
    while !chars.isEmpty {
        out.append(UInt8(String(chars[0...1]), radix: 16)!)
        chars.removeFirst(2)
    }
    return out
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    var b = ByteBuffer()
    b.writeBytes(bytes)
    return b
}

func bytes(_ b: ByteBuffer) -> [UInt8] { Array(b.readableBytesView) }

/// A raw CIDv1 over sha2-256 of `data`, computed (not hard-coded).
func rawCID(_ data: [UInt8]) throws -> CID {
    let mh = try data.withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
    return CID(codec: Multicodec.raw, multihash: mh)
}

func v0CID(_ data: [UInt8]) throws -> CID {
    let mh = try data.withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
    return try CID(v0: mh)
}

/// Splits a frame into its body and decodes it.
func decodeFrame(_ frame: ByteBuffer) throws -> BitswapMessage {
    var decoder = BitswapFrameDecoder()
    decoder.append(frame)
    let body = try #require(try decoder.nextMessage())
    #expect(decoder.bufferedBytes == 0)
    return try BitswapMessage(decoding: body)
}

/// An in-memory source keyed by multihash; it verifies nothing because it only holds blocks it
/// hashed itself.
struct MemoryBlockSource: BlockSource {
    var blocks: [Multihash: [UInt8]] = [:]

    mutating func add(_ data: [UInt8]) throws -> CID {
        let cid = try rawCID(data)
        blocks[cid.multihash] = data
        return cid
    }

    func results(for batch: BlockLookupBatch) -> [CID: BlockLookupResult] {
        var out: [CID: BlockLookupResult] = [:]
        for request in batch.requests {
            guard let data = blocks[request.cid.multihash] else { out[request.cid] = .notFound; continue }
            if data.count > batch.maxBlockSize { out[request.cid] = .tooLarge(size: data.count); continue }
            if request.wantType == .have && data.count > batch.replaceHaveWithBlockSize {
                out[request.cid] = .have(size: data.count)
            } else {
                out[request.cid] = .block(buffer(data))
            }
        }
        return out
    }

    func lookup(_ batch: BlockLookupBatch) async throws -> [CID: BlockLookupResult] { results(for: batch) }

    /// A memory source has no DAGs: every block counts as under every root.
    func missingBlocks(under root: CID, have: Set<Multihash>, peer: PeerContext) async throws -> [Multihash] {
        blocks.keys.filter { !have.contains($0) }.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
    }
}

/// Drives an engine against a memory source synchronously, collecting what it sends.
struct Harness {
    var engine: BitswapEngine
    var source: MemoryBlockSource
    var sent: [BitswapMessage] = []
    var refusals: [BitswapEngine.Refusal] = []
    var closes: [String] = []
    var pendingLookups: [(UInt64, BlockLookupBatch)] = []
    var lookupBatches: [BlockLookupBatch] = []
    /// When false, lookups are held until `completeLookups()`.
    var autoComplete = true

    init(version: BitswapProtocolVersion = .v1_2_0, source: MemoryBlockSource,
         configuration: BitswapEngine.Configuration = .init()) {
        engine = BitswapEngine(peer: PeerContext(peerID: [0x00, 0x01, 0x02], connectionID: 1, protocolVersion: version),
                               configuration: configuration)
        self.source = source
    }

    mutating func receive(_ message: BitswapMessage) throws {
        let actions = engine.receive(message)
        try handle(actions)
    }

    mutating func receive(_ entries: [BitswapMessage.Entry], full: Bool = false) throws {
        try receive(BitswapMessage(wantlist: .init(entries: entries, full: full)))
    }

    mutating func completeLookups() throws {
        while !pendingLookups.isEmpty {
            let (id, batch) = pendingLookups.removeFirst()
            let actions = engine.lookupCompleted(id: id, results: source.results(for: batch))
            try handle(actions)
        }
    }

    /// The peer's stream drained; let the engine send more until it stops.
    mutating func drain() throws {
        for _ in 0..<10_000 {
            let before = sent.count
            let actions = engine.outboundWritable()
            try handle(actions)
            if sent.count == before && pendingLookups.isEmpty { return }
        }
    }

    mutating func handle(_ actions: [BitswapEngine.Action]) throws {
        var followUps: [BitswapEngine.Action] = []
        for action in actions {
            switch action {
            case .send(let frame): sent.append(try decodeFrame(frame.contiguous()))
            case .refused(let r): refusals.append(r)
            case .close(let reason): closes.append(reason)
            case .lookup(let id, let batch):
                lookupBatches.append(batch)
                if autoComplete {
                    followUps += engine.lookupCompleted(id: id, results: source.results(for: batch))
                } else {
                    pendingLookups.append((id, batch))
                }
            }
        }
        if !followUps.isEmpty { try handle(followUps) }
    }
}
