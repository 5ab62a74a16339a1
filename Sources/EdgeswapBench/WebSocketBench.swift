import Libp2p
import NIOCore
import NIOPosix

// WebSocket transport throughput over loopback: one side writes 64 KiB buffers (one binary frame each)
// for about 3 s while the socket is writable, the other side counts and discards. Dialer→listener
// measures client masking plus server unmasking; listener→dialer the unmasked server path.

/// Writes `chunk` whenever the channel is writable until `deadline`, then closes.
private final class BlastHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let chunk: ByteBuffer
    private let deadline: NIODeadline
    private var finished = false

    init(chunk: ByteBuffer, deadline: NIODeadline) {
        self.chunk = chunk
        self.deadline = deadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.pump(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.pump(context: context)
        context.fireChannelWritabilityChanged()
    }

    private func pump(context: ChannelHandlerContext) {
        guard !self.finished else { return }
        while context.channel.isWritable {
            if NIODeadline.now() >= self.deadline {
                self.finished = true
                context.flush()
                context.close(promise: nil)
                return
            }
            for _ in 0..<16 {
                context.write(Self.wrapOutboundOut(self.chunk), promise: nil)
            }
            context.flush()
        }
    }
}

/// Counts received bytes; reports them when the connection closes.
private final class SinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var bytes = 0
    private var start: NIODeadline?
    private let done: EventLoopPromise<(Int, TimeAmount)>

    init(done: EventLoopPromise<(Int, TimeAmount)>) {
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if self.start == nil { self.start = .now() }
        self.bytes += Self.unwrapInboundIn(data).readableBytes
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.succeed((self.bytes, NIODeadline.now() - (self.start ?? .now())))
    }
}

private enum Direction: String {
    case dialerToListener = "dialer→listener (masked)"
    case listenerToDialer = "listener→dialer (unmasked)"
}

private func measure(_ direction: Direction, group: MultiThreadedEventLoopGroup, seconds: Int64) throws -> Double {
    let chunk = ByteBuffer(repeating: 0xA5, count: 64 * 1024)
    let done = group.next().makePromise(of: (Int, TimeAmount).self)
    let deadline = NIODeadline.now() + .seconds(seconds)
    let server = try WebSocketTransport.listen(host: "127.0.0.1", port: 0, group: group) { channel in
        channel.eventLoop.makeCompletedFuture {
            switch direction {
            case .dialerToListener: try channel.pipeline.syncOperations.addHandler(SinkHandler(done: done))
            case .listenerToDialer: try channel.pipeline.syncOperations.addHandler(BlastHandler(chunk: chunk, deadline: NIODeadline.now() + .seconds(seconds)))
            }
        }
    }.wait()
    let port = server.localAddress?.port ?? 0
    let client = try WebSocketTransport.dial(host: "127.0.0.1", port: port, group: group) { channel in
        channel.eventLoop.makeCompletedFuture {
            switch direction {
            case .dialerToListener: try channel.pipeline.syncOperations.addHandler(BlastHandler(chunk: chunk, deadline: deadline))
            case .listenerToDialer: try channel.pipeline.syncOperations.addHandler(SinkHandler(done: done))
            }
        }
    }.wait()
    let (bytes, elapsed) = try done.futureResult.wait()
    try? client.close().wait()
    try server.close().wait()
    return Double(bytes) / (Double(elapsed.nanoseconds) / 1e9) / 1e9
}

/// Prints one-way WebSocket throughput in each direction over loopback (64 KiB writes, ~3 s each).
func runWebSocketBenchmarks() {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    defer { try? group.syncShutdownGracefully() }
    print("WebSocket transport, loopback, 64 KiB writes, 3 s per direction")
    for direction in [Direction.dialerToListener, .listenerToDialer] {
        do {
            let gbps = try measure(direction, group: group, seconds: 3)
            print("  \(direction.rawValue): \((gbps * 100).rounded() / 100) GB/s")
        } catch {
            print("  \(direction.rawValue): failed: \(error)")
        }
    }
}
