import Dispatch
import Libp2p
import Logging
import Multiformats
import NIOCore
import NIOPosix

/// libp2p host benchmarks over loopback, our dialer against our listener (two hosts, one event loop each):
/// - one-stream throughput through WebSocket + Noise + yamux: 64 KiB writes for about 3 s into a sink that
///   reports the byte count when the stream ends; MB/s from the first write to the count's arrival;
/// - full connection handshakes per second (WebSocket upgrade → multistream-select → Noise XX →
///   multistream-select → yamux ready), one at a time and 8 in parallel.
func runHostBenchmarks() {
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            try await hostBenchmarks()
        } catch {
            print("host benchmark failed: \(error)")
        }
        done.signal()
    }
    done.wait()
}

private let sinkProtocol = "/edgeswap/bench/sink/1.0.0"

private func hostBenchmarks() async throws {
    for window in [YamuxSettings.initialStreamWindow, 1 << 20] {
        try await throughput(window: window)
    }
    try await handshakes()
}

/// Two hosts on one event loop each; the listener has the sink protocol and grants `window` per stream.
private func withHosts(window: UInt32 = YamuxSettings.initialStreamWindow,
                       _ body: (Libp2pHost, Multiaddr) async throws -> Void) async throws {
    var logger = Logger(label: "bench.host")
    logger.logLevel = .critical
    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var limits = Libp2pHostLimits()
    limits.yamuxStreamWindow = window
    let server = try Libp2pHost(configuration: .init(
        identity: .generateEd25519(), listenAddresses: [try Multiaddr("/ip4/127.0.0.1/tcp/0/ws")], limits: limits,
        logger: logger), group: serverGroup)
    let client = try Libp2pHost(configuration: .init(identity: .generateEd25519(), logger: logger), group: clientGroup)
    server.register(protocol: sinkProtocol) { stream in
        try await stream.executeThenClose { inbound, outbound in
            var total: UInt64 = 0
            for try await chunk in inbound { total += UInt64(chunk.readableBytes) }
            var reply = ByteBuffer()
            reply.writeInteger(total)
            try await outbound.write(reply)
            outbound.finish()
        }
    }
    let address = try await server.start()[0]
    try await client.start()
    try await body(client, address)
    await client.shutdown()
    await server.shutdown()
    try await serverGroup.shutdownGracefully()
    try await clientGroup.shutdownGracefully()
}

private func throughput(window: UInt32) async throws {
    try await withHosts(window: window) { client, address in
        let connection = try await client.dial(address)
        var chunk = ByteBuffer()
        for i in 0..<(64 * 1024) { chunk.writeInteger(UInt8(truncatingIfNeeded: i &* 7)) }
        let fixedChunk = chunk
        for run in 1...3 {
            let stream = try await connection.openStream(sinkProtocol)
            let clock = ContinuousClock()
            let start = clock.now
            let (sent, acknowledged) = try await stream.executeThenClose { inbound, outbound in
                var sent: UInt64 = 0
                while clock.now - start < .seconds(3) {
                    try await outbound.write(fixedChunk)
                    sent += UInt64(fixedChunk.readableBytes)
                }
                outbound.finish()
                var reply = ByteBuffer()
                for try await var part in inbound { reply.writeBuffer(&part) }
                return (sent, reply.readInteger(as: UInt64.self) ?? 0)
            }
            let seconds = (clock.now - start).seconds
            print("host: one stream ws+noise+yamux, 64 KiB writes, \(window / 1024) KiB window, run \(run): "
                  + "\(format(Double(sent) / seconds / 1e6)) MB/s (\(sent / 1_000_000) MB in \(format(seconds)) s, "
                  + "sink counted \(acknowledged == sent ? "all" : "\(acknowledged)") bytes)")
        }
        await connection.close()
    }
}

private func handshakes() async throws {
    try await withHosts { client, address in
        for parallel in [1, 8] {
            let clock = ContinuousClock()
            let start = clock.now
            let count = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<parallel {
                    group.addTask {
                        var n = 0
                        while clock.now - start < .seconds(3) {
                            let connection = try await client.dial(address)
                            await connection.close()
                            n += 1
                        }
                        return n
                    }
                }
                return try await group.reduce(0, +)
            }
            let seconds = (clock.now - start).seconds
            print("host: full connection handshakes (ws upgrade + mss + Noise XX + mss + yamux), \(parallel) at a time: "
                  + "\(format(Double(count) / seconds)) /s (\(count) in \(format(seconds)) s)")
        }
    }
}

extension Duration {
    fileprivate var seconds: Double {
        let (s, attoseconds) = self.components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

private func format(_ value: Double) -> String {
    "\((value * 10).rounded() / 10)"
}
