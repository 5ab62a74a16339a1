// edgeswap-bench: identify and ping machines (per connection / per ping work, no I/O).

import Libp2p
import Multiformats
import NIOCore

/// Prints identify encode/decode rates and the ping responder's echo throughput.
func runProtocolsBenchmarks() {
    let key = PrivateKey.generateEd25519().publicKey
    let listen = (try? Multiaddr("/dns4/edge.example.com/tcp/443/wss")).map { [$0] } ?? []
    let observed = try? Multiaddr("/ip4/203.0.113.7/tcp/51234/wss")
    let message = IdentifyMessage(
        localKey: key, agentVersion: "edgeswap/0.1.0", listenAddrs: listen, observedAddr: observed,
        protocols: ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0"])
    let encoded = message.protobufEncoding

    let iterations = 200_000
    let clock = ContinuousClock()
    var sink = 0
    let encodeTime = clock.measure {
        for _ in 0..<iterations {
            var buffer = ByteBuffer()
            message.writeDelimited(into: &buffer)
            sink &+= buffer.readableBytes
        }
    }
    let decodeTime = clock.measure {
        for _ in 0..<iterations {
            var reader = IdentifyReader()
            var buffer = ByteBuffer()
            message.writeDelimited(into: &buffer)
            try? reader.receive(buffer)
            if let decoded = try? reader.finish() { sink &+= decoded.protocols.count }
        }
    }
    print("identify: \(encoded.count)-byte message, encode+frame \(rate(iterations, encodeTime)) msg/s, "
          + "frame+read+decode \(rate(iterations, decodeTime)) msg/s")

    var responder = PingResponder()
    let payload = ByteBuffer(bytes: PingInitiator.randomPayload())
    let pings = 1_000_000
    let pingTime = clock.measure {
        for _ in 0..<pings {
            if case .write(let echo) = responder.receive(payload) { sink &+= echo.readableBytes }
        }
    }
    print("ping responder: \(rate(pings, pingTime)) echoes/s (32-byte payloads)  [\(sink % 2)]")
}

private func rate(_ count: Int, _ elapsed: Duration) -> Int {
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return seconds > 0 ? Int(Double(count) / seconds) : 0
}
