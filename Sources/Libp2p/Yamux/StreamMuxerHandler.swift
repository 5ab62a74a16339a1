import NIOCore

/// Runs a stream-muxer session (yamux or mplex) over the connection's decrypted byte stream and
/// exposes every stream as a `MuxedStreamChannel` with its own pipeline.
///
/// Inbound: the parent pipeline delivers `ByteBuffer`s (plaintext after Noise); each one goes to
/// the session and every resulting event is dispatched to the stream channels. Outbound: the
/// session's bytes are written and flushed to the parent pipeline after each batch of events.
/// A session error closes the connection after its GoAway has been flushed.
///
/// Streams the peer opens run `inboundStreamInitializer` and are acknowledged (yamux ACK) once it
/// succeeds; `openStream(initializer:)` opens one from our side.
public final class StreamMuxerHandler<Muxer: StreamMuxerStateMachine>: ChannelInboundHandler, MuxedStreamParent {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Sets up a stream channel's pipeline.
    public typealias StreamInitializer = (any Channel) -> EventLoopFuture<Void>

    private var muxer: Muxer
    private var context: ChannelHandlerContext?
    private var eventLoop: (any EventLoop)?
    private var streams: [MuxedStreamID: MuxedStreamChannel] = [:]
    private let inboundStreamInitializer: StreamInitializer?
    private let writeBufferHighWatermark: Int
    private var processing = false
    /// Reused for every flush.
    private var outboundParts: [ByteBuffer] = []

    /// - Parameters:
    ///   - muxer: the session machine, e.g. `YamuxSession(role: .server)`.
    ///   - writeBufferHighWatermark: queued bytes per stream above which a stream channel is unwritable.
    ///   - inboundStreamInitializer: configures streams the peer opens; nil accepts them bare.
    public init(muxer: Muxer, writeBufferHighWatermark: Int = 256 * 1024,
                inboundStreamInitializer: StreamInitializer?) {
        self.muxer = muxer
        self.writeBufferHighWatermark = writeBufferHighWatermark
        self.inboundStreamInitializer = inboundStreamInitializer
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.eventLoop = context.eventLoop
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.muxer.receive(self.unwrapInboundIn(data))
        self.process()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        for channel in self.streams.values {
            channel.sessionFailed(StreamMuxerError.sessionClosed)
        }
        self.streams.removeAll()
        context.fireChannelInactive()
    }

    /// Opens an outbound stream. Call on the connection's event loop.
    public func openStream(initializer: StreamInitializer?) -> EventLoopFuture<any Channel> {
        guard let context = self.context else {
            guard let eventLoop = self.eventLoop else {
                preconditionFailure("openStream(initializer:) before the handler was added to a pipeline")
            }
            return eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        let id: MuxedStreamID
        do {
            id = try self.muxer.openStream()
        } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
        let channel = MuxedStreamChannel(streamID: id, parent: context.channel, owner: self,
                                         writeBufferHighWatermark: self.writeBufferHighWatermark)
        self.streams[id] = channel
        return channel.start(initializer: initializer).map { channel as any Channel }
    }

    /// Ends the session politely (yamux GoAway normal): no new streams, existing ones finish.
    /// `StreamMuxerEvent.pong` and `.goAwayReceived` are fired down the parent pipeline as user events.
    public func goAway() {
        self.muxer.goAway()
        self.flushOutbound()
    }

    // MARK: - Event dispatch

    private func process() {
        // Re-entrancy: a stream pipeline reacting to an event may call back into the session;
        // the outer loop picks up whatever that produced.
        guard !self.processing else { return }
        self.processing = true
        defer { self.processing = false }
        while let event = self.muxer.nextEvent() {
            self.handle(event)
        }
        self.flushOutbound()
    }

    private func handle(_ event: StreamMuxerEvent) {
        guard let context = self.context else { return }
        switch event {
        case .streamOpened(let id):
            let channel = MuxedStreamChannel(streamID: id, parent: context.channel, owner: self,
                                             writeBufferHighWatermark: self.writeBufferHighWatermark)
            self.streams[id] = channel
            channel.start(initializer: self.inboundStreamInitializer).assumeIsolated().whenComplete { result in
                switch result {
                case .success:
                    self.muxer.acceptStream(id)
                    self.flushOutbound()
                case .failure:
                    self.muxer.reset(id)
                    self.flushOutbound()
                    channel.sessionFailed(MuxedStreamResetError(streamID: id, errorCode: nil))
                }
            }
        case .data(let id, let data):
            if let channel = self.streams[id] {
                channel.receivedData(data)
            } else {
                self.muxer.releaseWindow(data.readableBytes, on: id)
            }
        case .remoteClosed(let id):
            self.streams[id]?.receivedRemoteClose()
        case .streamReset(let id, let code):
            self.streams.removeValue(forKey: id)?.receivedReset(errorCode: code)
        case .streamClosed(let id):
            // The channel stays in the map until it has delivered its buffered reads and closed
            // (`streamChannelClosed`), so a session failure meanwhile still reaches it.
            self.streams[id]?.streamFullyClosed()
        case .writable(let id):
            self.streams[id]?.writabilityRestored()
        case .pong, .goAwayReceived, .streamRefused:
            context.fireUserInboundEventTriggered(event)
        case .sessionError(let error):
            self.flushOutbound()
            let streams = self.streams
            self.streams.removeAll()
            for channel in streams.values { channel.sessionFailed(error) }
            context.fireErrorCaught(error)
            context.close(promise: nil)
        }
    }

    private func flushOutbound() {
        guard let context = self.context else { return }
        // Headers and small frames come in one buffer, large stream payloads as parts of their own: written
        // as they are, so the Noise handler seals payloads from the storage the stream's writer handed in.
        self.outboundParts.removeAll(keepingCapacity: true)
        self.muxer.takeOutbound(into: &self.outboundParts)
        guard !self.outboundParts.isEmpty else { return }
        for part in self.outboundParts { context.write(self.wrapOutboundOut(part), promise: nil) }
        self.outboundParts.removeAll(keepingCapacity: true)
        context.flush()
    }

    // MARK: - MuxedStreamParent

    func streamWrite(_ data: ByteBuffer, on id: MuxedStreamID) throws {
        try self.muxer.write(data, on: id)
    }

    func streamCloseWrite(_ id: MuxedStreamID) throws {
        try self.muxer.closeWrite(id)
    }

    func streamReset(_ id: MuxedStreamID) {
        self.muxer.reset(id)
        self.streams.removeValue(forKey: id)
    }

    func streamReleaseWindow(_ bytes: Int, on id: MuxedStreamID) {
        self.muxer.releaseWindow(bytes, on: id)
    }

    func streamQueuedBytes(_ id: MuxedStreamID) -> Int {
        self.muxer.queuedBytes(on: id)
    }

    func streamFlush() {
        // Stream calls can produce events (e.g. a close completing the stream); dispatch them.
        if self.processing {
            return
        }
        self.process()
    }

    func streamChannelClosed(_ id: MuxedStreamID) {
        // The channel is gone but the muxer stream may live on until the peer's FIN; data for it
        // is then released and dropped in `handle(.data)`.
        self.streams.removeValue(forKey: id)
    }
}

@available(*, unavailable)
extension StreamMuxerHandler: Sendable {}
