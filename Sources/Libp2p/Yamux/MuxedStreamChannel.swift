import NIOCore

/// What a stream channel needs from the handler that owns the muxer session. All calls happen on
/// the parent channel's event loop.
protocol MuxedStreamParent: AnyObject {
    func streamWrite(_ data: ByteBuffer, on id: MuxedStreamID) throws
    func streamCloseWrite(_ id: MuxedStreamID) throws
    func streamReset(_ id: MuxedStreamID)
    func streamReleaseWindow(_ bytes: Int, on id: MuxedStreamID)
    func streamQueuedBytes(_ id: MuxedStreamID) -> Int
    func streamFlush()
    func streamChannelClosed(_ id: MuxedStreamID)
}

/// The peer reset a muxed stream (yamux RST, mplex Reset). Fired through `errorCaught` before the
/// stream channel closes.
public struct MuxedStreamResetError: Error, Equatable, Sendable {
    public var streamID: MuxedStreamID
    /// The yamux error code carried by WindowUpdate+RST, if any.
    public var errorCode: UInt32?

    public init(streamID: MuxedStreamID, errorCode: UInt32?) {
        self.streamID = streamID
        self.errorCode = errorCode
    }
}

/// Ask a stream channel to reset its stream: `channel.triggerUserOutboundEvent(MuxedStreamResetEvent())`.
public struct MuxedStreamResetEvent: Sendable, Equatable {
    public init() {}
}

/// One muxed stream as a NIO child `Channel` with its own pipeline, in the manner of NIOHTTP2's
/// `HTTP2StreamChannel`.
///
/// - Reads: payload slices from the session are queued and delivered when the pipeline calls
///   `read()` (auto-read by default). The flow-control window is released as each slice is
///   delivered, so a pipeline that stops reading stops the peer after one window.
/// - Writes: `ByteBuffer`s are handed to the session on `flush()`; their promises succeed once the
///   session holds them (sent or queued behind the peer's window). The channel turns unwritable
///   while the session queues more than `writeBufferHighWatermark` bytes, and writable again when
///   the queue drains.
/// - `close(mode: .output)` half-closes (FIN); `close()` half-closes and closes the channel, the
///   peer's remaining data being discarded (its window still released). Reset with
///   `MuxedStreamResetEvent`.
/// - The peer's half-close arrives as `ChannelEvent.inputClosed` after any data still queued.
public final class MuxedStreamChannel: Channel, ChannelCore, @unchecked Sendable {
    // @unchecked Sendable: every mutable member is touched only on `eventLoop`, as in NIO's own channels.

    public let streamID: MuxedStreamID
    public let eventLoop: any EventLoop
    public let allocator: ByteBufferAllocator
    public let parent: (any Channel)?
    public var pipeline: ChannelPipeline { self._pipeline }
    public var closeFuture: EventLoopFuture<Void> { self.closePromise.futureResult }
    public var localAddress: SocketAddress? { self.parent?.localAddress }
    public var remoteAddress: SocketAddress? { self.parent?.remoteAddress }
    public var _channelCore: any ChannelCore { self }
    public var isWritable: Bool { self.writable }
    public var isActive: Bool { self.active }

    /// Queued bytes above which the channel reports itself unwritable.
    public let writeBufferHighWatermark: Int

    /// Bytes written to this stream and not yet sent: held by the channel until its flush, then by the muxer
    /// behind the peer's flow-control window. What a peer that stops reading makes this side hold.
    public var queuedOutboundBytes: Int {
        self.eventLoop.preconditionInEventLoop()
        var pending = 0
        for (data, _) in self.pendingWrites { pending += data.readableBytes }
        return pending + (self.owner?.streamQueuedBytes(self.streamID) ?? 0)
    }

    private var _pipeline: ChannelPipeline!
    private let closePromise: EventLoopPromise<Void>
    private weak var owner: (any MuxedStreamParent)?
    private var active = false
    private var closed = false
    private var writable = true
    private var outputClosed = false
    private var inputClosed = false
    private var inputClosedPending = false
    /// The muxer reported the stream closed both ways; the channel closes once buffered reads are delivered.
    private var fullyClosedPending = false
    private var autoRead = true
    private var readRequested = false
    private var pendingReads = CircularBuffer<ByteBuffer>()
    private var pendingWrites = CircularBuffer<(ByteBuffer, EventLoopPromise<Void>?)>()

    init(streamID: MuxedStreamID, parent: any Channel, owner: any MuxedStreamParent, writeBufferHighWatermark: Int) {
        self.streamID = streamID
        self.eventLoop = parent.eventLoop
        self.allocator = parent.allocator
        self.parent = parent
        self.owner = owner
        self.writeBufferHighWatermark = writeBufferHighWatermark
        self.closePromise = parent.eventLoop.makePromise()
        self._pipeline = ChannelPipeline(channel: self)
    }

    // MARK: - Options

    public func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) -> EventLoopFuture<Void> {
        if self.eventLoop.inEventLoop {
            return self.eventLoop.makeCompletedFuture { try self.setOption0(option, value: value) }
        }
        return self.eventLoop.submit { try self.setOption0(option, value: value) }
    }

    public func getOption<Option: ChannelOption>(_ option: Option) -> EventLoopFuture<Option.Value> {
        if self.eventLoop.inEventLoop {
            return self.eventLoop.makeCompletedFuture { try self.getOption0(option) }
        }
        return self.eventLoop.submit { try self.getOption0(option) }
    }

    private func setOption0<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
        self.eventLoop.preconditionInEventLoop()
        switch option {
        case let option as ChannelOptions.Types.AutoReadOption:
            self.autoRead = value as! ChannelOptions.Types.AutoReadOption.Value
            _ = option
            if self.autoRead && self.active { self.pipeline.read() }
        default:
            throw ChannelError.operationUnsupported
        }
    }

    private func getOption0<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
        self.eventLoop.preconditionInEventLoop()
        switch option {
        case _ as ChannelOptions.Types.AutoReadOption:
            return self.autoRead as! Option.Value
        case _ as ChannelOptions.Types.AllowRemoteHalfClosureOption:
            return true as! Option.Value
        default:
            throw ChannelError.operationUnsupported
        }
    }

    // MARK: - Lifecycle driven by the handler

    /// Registers the channel, runs `initializer`, then activates it.
    func start(initializer: ((any Channel) -> EventLoopFuture<Void>)?) -> EventLoopFuture<Void> {
        self.pipeline.fireChannelRegistered()
        let initialized = initializer?(self) ?? self.eventLoop.makeSucceededVoidFuture()
        return initialized.map {
            guard !self.closed else { return }
            self.active = true
            self.pipeline.fireChannelActive()
            if self.autoRead { self.pipeline.read() }
        }
    }

    func receivedData(_ data: ByteBuffer) {
        if self.closed {
            // Nobody reads any more; return the window so the peer is not stalled forever.
            self.owner?.streamReleaseWindow(data.readableBytes, on: self.streamID)
            return
        }
        self.pendingReads.append(data)
        self.deliverReads()
    }

    func receivedRemoteClose() {
        self.inputClosedPending = true
        self.deliverReads()
    }

    func receivedReset(errorCode: UInt32?) {
        self.failPendingWrites(MuxedStreamResetError(streamID: self.streamID, errorCode: errorCode))
        if !self.closed {
            self.pipeline.fireErrorCaught(MuxedStreamResetError(streamID: self.streamID, errorCode: errorCode))
        }
        self.closeChannel(error: MuxedStreamResetError(streamID: self.streamID, errorCode: errorCode))
    }

    func streamFullyClosed() {
        // Both sides have closed. Data the application has not read yet (it may be applying backpressure,
        // so no read is outstanding) must still reach it: closing now would drop it. Deliver it as reads
        // are requested, then report end of input, then close.
        self.inputClosedPending = true
        self.fullyClosedPending = true
        self.deliverReads()
        self.closeIfDrained()
    }

    private func closeIfDrained() {
        if self.fullyClosedPending && self.pendingReads.isEmpty && !self.closed {
            self.closeChannel(error: nil)
        }
    }

    func writabilityRestored() {
        guard !self.writable, !self.closed else { return }
        self.writable = true
        self.pipeline.fireChannelWritabilityChanged()
    }

    func sessionFailed(_ error: any Error) {
        self.failPendingWrites(error)
        if !self.closed { self.pipeline.fireErrorCaught(error) }
        self.closeChannel(error: error)
    }

    private func deliverReads() {
        guard self.active, !self.closed, self.readRequested else { return }
        if !self.pendingReads.isEmpty {
            self.readRequested = false
            while let data = self.pendingReads.popFirst() {
                let count = data.readableBytes
                self.pipeline.fireChannelRead(data)
                self.owner?.streamReleaseWindow(count, on: self.streamID)
                if self.closed { return }
            }
            self.pipeline.fireChannelReadComplete()
        }
        if self.inputClosedPending && self.pendingReads.isEmpty && !self.inputClosed && !self.closed {
            self.inputClosed = true
            self.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
        self.owner?.streamFlush()
        if self.fullyClosedPending {
            self.closeIfDrained()
            return
        }
        if self.autoRead && !self.closed && !self.readRequested { self.pipeline.read() }
    }

    private func failPendingWrites(_ error: any Error) {
        while let (_, promise) = self.pendingWrites.popFirst() {
            promise?.fail(error)
        }
    }

    private func closeChannel(error: (any Error)?) {
        guard !self.closed else { return }
        self.closed = true
        self.failPendingWrites(error ?? ChannelError.ioOnClosedChannel)
        let wasActive = self.active
        self.active = false
        if wasActive { self.pipeline.fireChannelInactive() }
        self.pipeline.fireChannelUnregistered()
        self.owner?.streamChannelClosed(self.streamID)
        self.eventLoop.execute {
            self.removeHandlers(pipeline: self.pipeline)
            self.closePromise.succeed()
        }
    }

    // MARK: - ChannelCore

    public func localAddress0() throws -> SocketAddress { throw ChannelError.operationUnsupported }
    public func remoteAddress0() throws -> SocketAddress { throw ChannelError.operationUnsupported }
    public func register0(promise: EventLoopPromise<Void>?) { promise?.succeed() }
    public func registerAlreadyConfigured0(promise: EventLoopPromise<Void>?) { promise?.succeed() }
    public func bind0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }
    public func connect0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func write0(_ data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !self.closed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        guard !self.outputClosed else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        self.pendingWrites.append((self.unwrapData(data, as: ByteBuffer.self), promise))
    }

    public func flush0() {
        guard let owner = self.owner, !self.pendingWrites.isEmpty else { return }
        while let (data, promise) = self.pendingWrites.popFirst() {
            do {
                try owner.streamWrite(data, on: self.streamID)
                promise?.succeed()
            } catch {
                promise?.fail(error)
            }
        }
        owner.streamFlush()
        if self.writable && owner.streamQueuedBytes(self.streamID) > self.writeBufferHighWatermark {
            self.writable = false
            self.pipeline.fireChannelWritabilityChanged()
        }
    }

    public func read0() {
        self.readRequested = true
        self.deliverReads()
    }

    public func close0(error: any Error, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard !self.closed else {
            promise?.fail(ChannelError.alreadyClosed)
            return
        }
        switch mode {
        case .input:
            promise?.fail(ChannelError.operationUnsupported)
        case .output:
            self.closeOutput(promise: promise)
            if !self.closed { self.pipeline.fireUserInboundEventTriggered(ChannelEvent.outputClosed) }
        case .all:
            if !self.outputClosed { self.closeOutput(promise: nil) }
            self.closeChannel(error: nil)
            promise?.succeed()
        }
    }

    private func closeOutput(promise: EventLoopPromise<Void>?) {
        guard !self.outputClosed else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        self.flush0()
        self.outputClosed = true
        do {
            try self.owner?.streamCloseWrite(self.streamID)
            self.owner?.streamFlush()
            promise?.succeed()
        } catch {
            promise?.fail(error)
        }
    }

    public func triggerUserOutboundEvent0(_ event: Any, promise: EventLoopPromise<Void>?) {
        guard event is MuxedStreamResetEvent else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        self.owner?.streamReset(self.streamID)
        self.owner?.streamFlush()
        self.closeChannel(error: MuxedStreamResetError(streamID: self.streamID, errorCode: nil))
        promise?.succeed()
    }

    public func channelRead0(_ data: NIOAny) {
        // Reached the tail of the pipeline unhandled: drop it.
    }

    public func errorCaught0(error: any Error) {}
}
