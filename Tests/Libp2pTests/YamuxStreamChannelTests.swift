import Libp2p
import NIOCore
import NIOEmbedded
import Testing

/// Echoes every read and half-closes when the peer half-closes.
private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            context.close(mode: .output, promise: nil)
        }
    }
}

/// Records what a stream channel sees.
private final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var received = ByteBuffer()
    var inputClosed = false
    var errors: [any Error] = []
    var writabilityChanges: [Bool] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        self.received.writeBuffer(&bytes)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent { self.inputClosed = true }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.errors.append(error)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.writabilityChanges.append(context.channel.isWritable)
    }
}

/// Moves everything the embedded channel wrote into the peer session.
private func deliverOutbound(_ channel: EmbeddedChannel, to peer: inout YamuxSession) throws {
    while let bytes = try channel.readOutbound(as: ByteBuffer.self) {
        peer.receive(bytes)
    }
}

private func drain(_ session: inout YamuxSession) -> [StreamMuxerEvent] {
    var events: [StreamMuxerEvent] = []
    while let event = session.nextEvent() { events.append(event) }
    return events
}

@Suite struct YamuxStreamChannelTests {
    @Test func inboundStreamEchoAndHalfClose() throws {
        let channel = EmbeddedChannel()
        let handler = StreamMuxerHandler(muxer: YamuxSession(role: .server)) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(EchoHandler())
            }
        }
        try channel.pipeline.syncOperations.addHandler(handler)

        var client = YamuxSession(role: .client)
        let id = try client.openStream()
        try client.write(ByteBuffer(string: "ping"), on: id)
        try channel.writeInbound(client.takeOutboundBytes()!)
        try deliverOutbound(channel, to: &client)
        #expect(client.state(of: id) == .open)  // the server acknowledged after the initializer ran
        #expect(drain(&client) == [.data(id, ByteBuffer(string: "ping"))])

        try client.closeWrite(id)
        try channel.writeInbound(client.takeOutboundBytes()!)
        try deliverOutbound(channel, to: &client)
        #expect(drain(&client) == [.remoteClosed(id), .streamClosed(id)])
        #expect(try channel.finish().isClean)
    }

    @Test func outboundStreamWritesWithSynAndReceivesData() throws {
        let channel = EmbeddedChannel()
        let handler = StreamMuxerHandler(muxer: YamuxSession(role: .server), inboundStreamInitializer: nil)
        try channel.pipeline.syncOperations.addHandler(handler)
        let recorder = RecordingHandler()
        let stream = try handler.openStream { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(recorder)
            }
        }.wait()
        #expect(stream.isActive)
        stream.writeAndFlush(ByteBuffer(string: "want"), promise: nil)

        var client = YamuxSession(role: .client)
        try deliverOutbound(channel, to: &client)
        #expect(drain(&client) == [.streamOpened(MuxedStreamID(2)), .data(MuxedStreamID(2), ByteBuffer(string: "want"))])
        client.acceptStream(MuxedStreamID(2))
        try client.write(ByteBuffer(string: "block"), on: MuxedStreamID(2))
        try client.closeWrite(MuxedStreamID(2))
        try channel.writeInbound(client.takeOutboundBytes()!)
        #expect(recorder.received == ByteBuffer(string: "block"))
        #expect(recorder.inputClosed)
        // Closing the channel sends our FIN; both sides are then closed.
        try stream.close().wait()
        try deliverOutbound(channel, to: &client)
        #expect(drain(&client) == [.remoteClosed(MuxedStreamID(2)), .streamClosed(MuxedStreamID(2))])
    }

    @Test func peerResetReachesTheStreamPipelineAndClosesIt() throws {
        let channel = EmbeddedChannel()
        let recorder = RecordingHandler()
        var opened: (any Channel)?
        let handler = StreamMuxerHandler(muxer: YamuxSession(role: .server)) { stream in
            opened = stream
            return stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(recorder)
            }
        }
        try channel.pipeline.syncOperations.addHandler(handler)
        var client = YamuxSession(role: .client)
        let id = try client.openStream()
        try channel.writeInbound(client.takeOutboundBytes()!)
        client.reset(id)
        try channel.writeInbound(client.takeOutboundBytes()!)
        #expect(recorder.errors.count == 1)
        #expect(recorder.errors.first as? MuxedStreamResetError == MuxedStreamResetError(streamID: id, errorCode: nil))
        let stream = try #require(opened)
        #expect(!stream.isActive)
        // The close promise completes on the next loop turn, after the handlers are removed.
        channel.embeddedEventLoop.run()
        var closed = false
        stream.closeFuture.assumeIsolated().whenSuccess { closed = true }
        #expect(closed)
    }

    @Test func writabilityFollowsThePeersWindow() throws {
        let channel = EmbeddedChannel()
        let handler = StreamMuxerHandler(muxer: YamuxSession(role: .server), writeBufferHighWatermark: 1024,
                                         inboundStreamInitializer: nil)
        try channel.pipeline.syncOperations.addHandler(handler)
        let recorder = RecordingHandler()
        let stream = try handler.openStream { stream in
            stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(recorder) }
        }.wait()
        var big = ByteBuffer()
        big.writeRepeatingByte(0xAB, count: 300 * 1024)
        stream.writeAndFlush(big, promise: nil)
        #expect(!stream.isWritable)
        var client = YamuxSession(role: .client)
        try deliverOutbound(channel, to: &client)
        var received = 0
        for event in drain(&client) {
            if case .data(let id, let data) = event {
                received += data.readableBytes
                client.releaseWindow(data.readableBytes, on: id)
            }
        }
        #expect(received == 256 * 1024)
        try channel.writeInbound(client.takeOutboundBytes()!)
        #expect(stream.isWritable)
        #expect(recorder.writabilityChanges == [false, true])
    }

    @Test func sessionErrorClosesTheConnectionAfterGoAway() throws {
        let channel = EmbeddedChannel()
        let handler = StreamMuxerHandler(muxer: YamuxSession(role: .server), inboundStreamInitializer: nil)
        try channel.pipeline.syncOperations.addHandler(handler)
        #expect(throws: StreamMuxerError.invalidVersion(9)) {
            try channel.writeInbound(ByteBuffer(bytes: [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
        }
        #expect(try channel.readOutbound(as: ByteBuffer.self)
                == ByteBuffer(bytes: [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
        #expect(!channel.isActive)
    }
}
