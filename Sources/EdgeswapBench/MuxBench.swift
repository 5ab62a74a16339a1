import Libp2p
import NIOCore

/// Stream-muxer benchmarks: frame encode + decode throughput between two session machines in
/// memory (no I/O, no crypto). Each round the sender writes 64 KiB Data frames, the receiver decodes
/// them, releases the window and its WindowUpdates flow back.
func runMuxBenchmarks() {
    let frameSize = 64 * 1024
    let totalBytes = 2 * 1024 * 1024 * 1024  // 2 GiB per run
    var payload = ByteBufferAllocator().buffer(capacity: frameSize)
    for i in 0..<frameSize { payload.writeInteger(UInt8(truncatingIfNeeded: i)) }

    for run in 1...3 {
        let seconds = yamuxRun(payload: payload, totalBytes: totalBytes)
        let gbps = Double(totalBytes) / seconds / 1e9
        print("yamux 64 KiB data frames, encode+decode, run \(run): \(formatted(gbps)) GB/s (\(formatted(seconds)) s for 2 GiB)")
    }
    for run in 1...2 {
        let seconds = mplexRun(payload: payload, totalBytes: totalBytes)
        let gbps = Double(totalBytes) / seconds / 1e9
        print("mplex 64 KiB messages, encode+decode, run \(run): \(formatted(gbps)) GB/s")
    }
}

private func formatted(_ value: Double) -> String {
    let scaled = (value * 1000).rounded() / 1000
    return "\(scaled)"
}

private func yamuxRun(payload: ByteBuffer, totalBytes: Int) -> Double {
    var sender = YamuxSession(role: .server)
    var receiver = YamuxSession(role: .client)
    let stream = try! sender.openStream()
    var sent = 0
    var received = 0
    let clock = ContinuousClock()
    let start = clock.now
    while received < totalBytes {
        // Fill the peer's window (256 KiB = 4 frames), as a busy server stream would.
        while sent < totalBytes && sender.queuedBytes(on: stream) == 0 {
            try! sender.write(payload, on: stream)
            sent += payload.readableBytes
        }
        if let bytes = sender.takeOutboundBytes() { receiver.receive(bytes) }
        while let event = receiver.nextEvent() {
            switch event {
            case .streamOpened(let id):
                receiver.acceptStream(id)
            case .data(let id, let data):
                received += data.readableBytes
                receiver.releaseWindow(data.readableBytes, on: id)
            default:
                break
            }
        }
        if let bytes = receiver.takeOutboundBytes() { sender.receive(bytes) }
        while sender.nextEvent() != nil {}
    }
    let elapsed = clock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

private func mplexRun(payload: ByteBuffer, totalBytes: Int) -> Double {
    var sender = MplexSession()
    var receiver = MplexSession()
    let stream = try! sender.openStream()
    var received = 0
    let clock = ContinuousClock()
    let start = clock.now
    while received < totalBytes {
        for _ in 0..<4 { try! sender.write(payload, on: stream) }
        if let bytes = sender.takeOutboundBytes() { receiver.receive(bytes) }
        while let event = receiver.nextEvent() {
            if case .data(_, let data) = event { received += data.readableBytes }
        }
    }
    let elapsed = clock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}
