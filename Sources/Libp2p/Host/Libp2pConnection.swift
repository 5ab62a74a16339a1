// edgeswap: an upgraded libp2p connection and its streams, as the host hands them to protocol handlers.

import Logging
import Multiformats
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whether we or the peer opened a connection or stream.
public enum Libp2pDirection: String, Sendable {
    /// The peer dialed us / opened the stream.
    case inbound
    /// We dialed / opened the stream.
    case outbound
}

/// One libp2p stream: a negotiated protocol over one muxed stream, as an async channel with backpressure.
///
/// Reading: `inbound` yields the peer's bytes as they arrive (arbitrary chunking: frame your messages
/// yourself); it ends when the peer half-closes (yamux FIN) and throws ``MuxedStreamResetError`` when the
/// peer resets. Backpressure: when the handler stops iterating, the stream stops reading, which stops
/// returning yamux window to the peer, which stops the peer after one window (256 KiB by default).
///
/// Writing: `outbound.write(_:)` suspends while the muxer holds more than its high watermark for the stream
/// (the peer's window is full). `outbound.finish()` half-closes (FIN); the peer may still send.
///
/// Use ``executeThenClose(_:)`` for scoped access; the stream is closed when it returns. Call ``reset()`` to
/// abort the stream in both directions (yamux RST).
public struct Libp2pStream: Sendable {
    /// The negotiated protocol id (for a lazily opened outbound stream: the one proposed).
    public let protocolID: String
    /// Who opened the stream.
    public let direction: Libp2pDirection
    /// The connection the stream runs on (open more streams on it, e.g. to answer a Bitswap peer).
    public let connection: Libp2pConnection
    /// The stream as an async channel of `ByteBuffer`s (outbound half-closure enabled).
    public let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// Scoped access to the stream's reads and writes; the stream is closed when `body` returns or throws.
    public func executeThenClose<Result: Sendable>(
        _ body: (_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
                 _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> Result
    ) async throws -> Result {
        try await self.channel.executeThenClose { inbound, outbound in
            try await body(inbound, outbound)
        }
    }

    /// Resets the stream (yamux RST / mplex Reset): both directions end at once, queued data is dropped.
    public func reset() {
        self.channel.channel.triggerUserOutboundEvent(MuxedStreamResetEvent(), promise: nil)
    }
}

/// Handles one inbound stream of a registered protocol. It runs in its own task; when it returns the stream
/// is closed, and when it throws the stream is reset.
public typealias Libp2pStreamHandler = @Sendable (_ stream: Libp2pStream) async throws -> Void

/// Installs a protocol's channel handlers on one inbound stream's pipeline (`channel`, a muxed stream whose
/// protocol multistream-select has just chosen), on the connection's event loop. Bytes the peer sent after the
/// protocol id reach the handlers added here. Throwing resets the stream.
public typealias Libp2pStreamChannelInitializer = @Sendable (_ connection: Libp2pConnection, _ channel: any Channel)
    throws -> Void

/// An upgraded libp2p connection (WebSocket + Noise + yamux or mplex) to one authenticated peer.
public final class Libp2pConnection: Sendable, CustomStringConvertible {
    /// A number unique within the host, for logs.
    public let id: UInt64
    /// The authenticated remote peer.
    public let remotePeerID: PeerID
    /// The remote identity key.
    public let remotePublicKey: PublicKey
    /// Who dialed.
    public let direction: Libp2pDirection
    /// The negotiated muxer, `/yamux/1.0.0` or `/mplex/6.7.0`.
    public let muxerProtocol: String
    /// The remote socket address (nil for in-memory channels).
    public let remoteAddress: SocketAddress?
    /// The remote address as a multiaddr (`/ip4/…/tcp/…/ws` or `…/wss`), if known: identify's `observedAddr`.
    public let remoteMultiaddr: Multiaddr?
    /// The connection's event loop.
    public var eventLoop: any EventLoop { self.channel.eventLoop }
    /// Completes when the connection has closed.
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }

    let channel: any Channel
    let logger: Logger
    private let opener: NIOLoopBound<MuxedStreamOpener>
    private let tail: NIOLoopBound<ConnectionUpgradeTailHandler>
    let activity: NIOLoopBound<ConnectionActivity>
    /// The host's count of connection objects alive (this one included until it is freed).
    private let liveObjects: NIOLockedValueBox<Int>?

    init(id: UInt64, upgraded: ConnectionUpgrade.Upgraded, direction: Libp2pDirection, channel: any Channel,
         remoteMultiaddr: Multiaddr?, tail: ConnectionUpgradeTailHandler, logger: Logger,
         liveObjects: NIOLockedValueBox<Int>? = nil) {
        self.liveObjects = liveObjects
        liveObjects?.withLockedValue { $0 += 1 }
        self.id = id
        self.remotePeerID = upgraded.remotePeerID
        self.remotePublicKey = upgraded.remotePublicKey
        self.direction = direction
        self.muxerProtocol = upgraded.muxerProtocol
        self.remoteAddress = channel.remoteAddress
        self.remoteMultiaddr = remoteMultiaddr
        self.channel = channel
        self.logger = logger
        self.opener = upgraded.streams
        self.tail = NIOLoopBound(tail, eventLoop: channel.eventLoop)
        self.activity = NIOLoopBound(ConnectionActivity(eventLoop: channel.eventLoop), eventLoop: channel.eventLoop)
    }

    deinit {
        self.liveObjects?.withLockedValue { $0 -= 1 }
    }

    public var description: String {
        "connection \(self.id) \(self.direction) \(self.remotePeerID) \(self.remoteMultiaddr.map { "\($0)" } ?? "?")"
    }

    /// Opens a stream and negotiates one of `protocols` (most preferred first) with multistream-select.
    ///
    /// With a single protocol the stream is opened lazily, as go-libp2p does once it knows the peer speaks
    /// it: the proposal and the first data leave together and this returns at once, without waiting for the
    /// echo; a `na` then fails the stream's reads and writes. With several protocols it waits for the
    /// answer and returns the accepted one in ``Libp2pStream/protocolID``.
    public func openStream(protocols: [String]) async throws -> Libp2pStream {
        guard !protocols.isEmpty else { throw MultistreamError.noProtocolsToPropose }
        let loop = self.channel.eventLoop
        return try await loop.flatSubmit { () -> EventLoopFuture<Libp2pStream> in
            self.openStreamOnLoop(protocols: protocols)
        }.get()
    }

    /// Opens a stream for one protocol (lazily; see ``openStream(protocols:)``).
    public func openStream(_ protocolID: String) async throws -> Libp2pStream {
        try await self.openStream(protocols: [protocolID])
    }

    private func openStreamOnLoop(protocols: [String]) -> EventLoopFuture<Libp2pStream> {
        let loop = self.channel.eventLoop
        let result = OnceLoopPromise<Libp2pStream>(loop.makePromise())
        let lazy = protocols.count == 1
        let logger = self.logger
        let opened = self.opener.value.openStream { channel in
            loop.makeCompletedFuture {
                let lifecycle = StreamLifecycleHandler(direction: .outbound, protocolID: protocols.joined(separator: ","),
                                                       connection: self, logger: logger)
                try channel.pipeline.syncOperations.addHandler(lifecycle)
                let wrap: (String, any Channel) throws -> Void = { protocolID, channel in
                    do {
                        lifecycle.protocolID = protocolID
                        let stream = try self.makeStream(channel: channel, protocolID: protocolID, direction: .outbound)
                        result.succeed(stream)
                    } catch {
                        result.fail(error)
                        throw error
                    }
                }
                let mss = try MultistreamSelectHandler(
                    proposing: protocols, lazy: lazy, stage: "stream", logger: logger,
                    onSelected: { protocolID, channel in
                        if !lazy { try wrap(protocolID, channel) }
                    },
                    onFailed: { error in result.fail(error) })
                try channel.pipeline.syncOperations.addHandler(mss)
                if lazy { try wrap(protocols[0], channel) }
            }
        }
        opened.assumeIsolated().whenFailure { error in result.fail(error) }
        return result.futureResult
    }

    /// Opens a stream for `protocolID` on the event loop (call it there) and runs `initializer` on its pipeline;
    /// the future gives the stream's channel. The stream is opened lazily, as ``openStream(protocols:)`` does
    /// for one protocol: the proposal leaves with the first write, and a `na` fails the stream. For protocol
    /// code that runs on the connection's loop as channel handlers (no task, no async channel).
    public func openStreamOnLoop(_ protocolID: String, initializer: @escaping (any Channel) throws -> Void)
        -> EventLoopFuture<any Channel>
    {
        let loop = self.channel.eventLoop
        loop.preconditionInEventLoop()
        let logger = self.logger
        return self.opener.value.openStream { channel in
            loop.makeCompletedFuture {
                let lifecycle = StreamLifecycleHandler(direction: .outbound, protocolID: protocolID,
                                                       connection: self, logger: logger)
                try channel.pipeline.syncOperations.addHandler(lifecycle)
                let mss = try MultistreamSelectHandler(
                    proposing: [protocolID], lazy: true, stage: "stream", logger: logger,
                    onSelected: { _, _ in }, onFailed: { _ in })
                try channel.pipeline.syncOperations.addHandler(mss)
                try initializer(channel)
            }
        }
    }

    /// Closes the TCP connection with a reset (SO_LINGER 0): no FIN, no GoAway, unsent data dropped; the peer
    /// sees ECONNRESET, as when a client crashes or a middlebox kills the flow. For load and fault tools and
    /// tests that play a peer vanishing mid-transfer.
    public func abort() async {
        let channel = self.channel
        if let socket = channel as? any SocketOptionProvider {
            try? await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        try? await channel.close()
    }

    /// Stops reading from the socket (auto-read off): the peer's data backs up in the kernel buffers and the
    /// peer's flow-control windows, as with a client that stops reading. For tools and tests that play a slow
    /// or stuck reader.
    public func stopReading() async {
        try? await self.channel.setOption(ChannelOptions.autoRead, value: false).get()
    }

    func makeStream(channel: any Channel, protocolID: String, direction: Libp2pDirection) throws -> Libp2pStream {
        let async = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
            wrappingChannelSynchronously: channel,
            configuration: .init(isOutboundHalfClosureEnabled: true))
        return Libp2pStream(protocolID: protocolID, direction: direction, connection: self, channel: async)
    }

    /// Ends the connection: a polite GoAway first (no new streams), then the close. `reason` is logged.
    public func close(reason: String = "closed locally") async {
        let loop = self.channel.eventLoop
        let closed: EventLoopFuture<Void> = loop.flatSubmit {
            self.closeOnLoop(reason: .local(reason))
            return self.channel.closeFuture
        }
        try? await closed.get()
    }

    /// Sends GoAway (normal): the peer may open no new streams; running ones continue.
    public func goAway() async {
        let loop = self.channel.eventLoop
        try? await loop.submit { self.opener.value.goAway() }.get()
    }

    func closeOnLoop(reason: ConnectionCloseReason) {
        self.channel.eventLoop.preconditionInEventLoop()
        self.opener.value.goAway()
        self.tail.value.close(reason)
    }
}

/// Streams open on a connection and the time of the last change: the input of the idle timeout.
final class ConnectionActivity {
    private(set) var openStreams = 0
    private(set) var lastChange: NIODeadline
    private let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.lastChange = .now()
    }

    func streamOpened() {
        self.openStreams += 1
        self.lastChange = .now()
    }

    func streamClosed() {
        self.openStreams -= 1
        self.lastChange = .now()
    }

    /// Whether the connection has had no stream for at least `timeout`.
    func isIdle(for timeout: TimeAmount, now: NIODeadline = .now()) -> Bool {
        self.openStreams == 0 && now - self.lastChange >= timeout
    }
}

/// A promise that may be completed from several paths, of which only the first counts.
final class OnceLoopPromise<Value: Sendable> {
    private var promise: EventLoopPromise<Value>?
    let futureResult: EventLoopFuture<Value>

    init(_ promise: EventLoopPromise<Value>) {
        self.promise = promise
        self.futureResult = promise.futureResult
    }

    func succeed(_ value: Value) {
        self.promise?.succeed(value)
        self.promise = nil
    }

    func fail(_ error: any Error) {
        self.promise?.fail(error)
        self.promise = nil
    }
}

/// First handler of every stream pipeline: counts the stream on its connection and logs, when it closes,
/// why (finished, reset by the peer, session failure, negotiation failure).
final class StreamLifecycleHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let direction: Libp2pDirection
    /// The negotiated protocol, once known (the proposals before that).
    var protocolID: String
    private let connection: Libp2pConnection?
    private let logger: Logger
    private var error: (any Error)?
    private var inputClosed = false
    private var counted = false
    private let opened = NIODeadline.now()

    init(direction: Libp2pDirection, protocolID: String, connection: Libp2pConnection?, logger: Logger) {
        self.direction = direction
        self.protocolID = protocolID
        self.connection = connection
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.connection?.activity.value.streamOpened()
        self.counted = true
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { self.inputClosed = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.error == nil { self.error = error }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish(context: context)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.finish(context: context)
    }

    private func finish(context: ChannelHandlerContext) {
        guard self.counted else { return }
        self.counted = false
        self.connection?.activity.value.streamClosed()
        let reason: String
        if let error = self.error {
            reason = error is MuxedStreamResetError ? "reset by the peer" : "\(error)"
        } else if self.inputClosed {
            reason = "closed after the peer's FIN"
        } else {
            reason = "closed locally"
        }
        let elapsed = (NIODeadline.now() - self.opened).nanoseconds / 1_000_000
        self.logger.debug("stream closed", metadata: [
            "protocol": "\(self.protocolID)", "direction": "\(self.direction.rawValue)",
            "reason": "\(reason)", "ms": "\(elapsed)",
        ])
    }
}
