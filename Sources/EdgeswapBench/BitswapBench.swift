import Bitswap
import Foundation
import Multiformats
import NIOCore

/// Bitswap codec throughput: wantlist messages of 100 entries, and ~4 MiB responses of 16 × 256 KiB
/// blocks (block bytes are copied once, into the reused outbound buffer; decoding slices without
/// copying). Also one engine round (16 want-blocks → lookups → packed frames).
func runBitswapBenchmarks() {
    print("== Bitswap codec (single thread, CPU time)")
    // 100 want entries, as kubo sends them: raw CIDv1 sha2-256, descending priorities, sendDontHave.
    var entries: [BitswapMessage.Entry] = []
    for i in 0..<100 {
        let seed = Array("block \(i)".utf8)
        let mh = seed.withUnsafeBytes { try! Multihash.compute(code: Multicodec.sha2_256, of: $0) }
        entries.append(.init(cid: CID(codec: Multicodec.raw, multihash: mh), priority: Int32.max - Int32(i),
                             wantType: i == 0 ? .have : .block, sendDontHave: i != 0))
    }
    let wants = BitswapMessage(wantlist: .init(entries: entries))
    var out = ByteBuffer()
    out.reserveCapacity(8 << 10)
    let wantSize = wants.encodedSize
    let encodeWants = bitswapMeasure {
        out.clear()
        wants.encodeFrame(into: &out)
    }
    var body = ByteBuffer()
    wants.encodeBody(into: &body)
    let decodeWants = bitswapMeasure {
        guard let m = try? BitswapMessage(decoding: body), m.wantlist?.entries.count == 100 else { fatalError("decode") }
    }
    print(String(format: "  100-entry wantlist (%d B): encode %9.0f msg/s, decode %9.0f msg/s",
                 wantSize, encodeWants, decodeWants))

    // 16 × 256 KiB blocks in `payload`.
    var payload: [BitswapMessage.Block] = []
    var blockCIDs: [CID] = []
    for i in 0..<16 {
        var data = ByteBuffer()
        data.writeRepeatingByte(UInt8(i), count: 256 << 10)
        let mh = data.withUnsafeReadableBytes { try! Multihash.compute(code: Multicodec.sha2_256, of: $0) }
        let cid = CID(codec: Multicodec.raw, multihash: mh)
        blockCIDs.append(cid)
        payload.append(.init(prefix: cid.prefix, data: data))
    }
    let response = BitswapMessage(payload: payload, pendingBytes: 1 << 20)
    let responseSize = response.encodedSize
    var big = ByteBuffer()
    big.reserveCapacity(responseSize + 16)
    let encodeBig = bitswapMeasure {
        big.clear()
        response.encodeFrame(into: &big)
    }
    var bigBody = ByteBuffer()
    response.encodeBody(into: &bigBody)
    let decodeBig = bitswapMeasure {
        guard let m = try? BitswapMessage(decoding: bigBody), m.payload.count == 16 else { fatalError("decode") }
    }
    let mb = Double(responseSize) / 1e6
    print(String(format: "  16 × 256 KiB response (%d B): encode %7.1f msg/s = %8.1f MB/s, decode %9.0f msg/s = %9.1f MB/s",
                 responseSize, encodeBig, encodeBig * mb, decodeBig, decodeBig * mb))

    // Engine round: 16 want-blocks for 256 KiB blocks, answered from memory, frames packed (256 KiB target).
    let peer = PeerContext(peerID: [0, 1], connectionID: 1, protocolVersion: .v1_2_0)
    var results: [CID: BlockLookupResult] = [:]
    var engineEntries: [BitswapMessage.Entry] = []
    for (i, block) in payload.enumerated() {
        let cid = blockCIDs[i]
        results[cid] = .block(block.data)
        engineEntries.append(.init(cid: cid, priority: 100 - Int32(i), sendDontHave: true))
    }
    let request = BitswapMessage(wantlist: .init(entries: engineEntries))
    var sentBytes = 0
    let engineRate = bitswapMeasure {
        var engine = BitswapEngine(peer: peer)
        var pending = engine.receive(request)
        while let action = pending.popLast() {
            switch action {
            case .lookup(let id, let batch):
                var answer: [CID: BlockLookupResult] = [:]
                for r in batch.requests { answer[r.cid] = results[r.cid] }
                pending += engine.lookupCompleted(id: id, results: answer)
            case .send(let frame):
                sentBytes += frame.byteCount
                pending += engine.outboundWritable()
            case .refused: fatalError("refused")
            case .close: fatalError("closed")
            }
        }
    }
    print(String(format: "  engine round, 16 × 256 KiB want-blocks → frames: %7.1f rounds/s = %8.1f MB/s",
                 engineRate, engineRate * Double(16 << 18) / 1e6))
    _ = sentBytes
}

/// Iterations per second of `body` by this thread's CPU time, over about a second after a warm-up.
private func bitswapMeasure(_ body: () -> Void) -> Double {
    let clock = ContinuousClock()
    let warmUpEnd = clock.now.advanced(by: .milliseconds(200))
    while clock.now < warmUpEnd { body() }
    var iterations = 0
    let start = clock.now
    let cpuStart = bitswapThreadCPU()
    repeat {
        for _ in 0..<4 { body() }
        iterations += 4
    } while clock.now - start < .seconds(1)
    return Double(iterations) / (bitswapThreadCPU() - cpuStart)
}

private func bitswapThreadCPU() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
