// edgeswap: the libp2p connection upgrade (libp2p/specs connections/README.md § Upgrading connections):
// raw byte stream → multistream-select `/noise` → Noise XX → multistream-select muxer → stream muxer.

import Logging
import NIOCore

/// Sets up the libp2p upgrade on a channel that carries a raw byte stream (a WebSocket connection after
/// its HTTP upgrade, or an in-memory channel in tests) and reports the upgraded connection.
///
/// ```
///  ConnectionUpgradeTailHandler stays last and records why the connection closed.
///  MultistreamSelectHandler("/noise")  ── selected ──▶ NoiseHandler (XX)
///  NoiseHandler ── authenticated ──▶ MultistreamSelectHandler("/yamux/1.0.0", "/mplex/6.7.0")
///  muxer mss ── selected ──▶ StreamMuxerHandler<YamuxSession | MplexSession>  → `onUpgraded`
/// ```
///
/// Security: "/noise" is the only protocol offered or accepted; a listener answers `na` to everything else,
/// including `/libp2p/simultaneous-connect` and `/tls/1.0.0` (kubo offers those first or instead, and falls
/// back to `/noise`). Muxer: yamux first, mplex for old js peers; Noise early muxer negotiation is not sent
/// and therefore never used, so both sides always run multistream-select after Noise (go-libp2p's
/// fallback when "the responder sends none").
///
/// The whole upgrade (all three stages) must finish within `handshakeTimeout`, or the connection closes.
public enum ConnectionUpgrade {
    /// Which end of the connection we are.
    public enum Role: Sendable {
        /// We accepted the connection: multistream listener, Noise responder, yamux server (even stream ids).
        case listener
        /// We dialed: multistream dialer, Noise initiator, yamux client (odd stream ids). When
        /// `expectedPeer` is set, a different remote identity fails the Noise handshake.
        case dialer(expectedPeer: PeerID?)
    }

    /// Protocol ids the upgrade speaks.
    public static let yamuxProtocolID = "/yamux/1.0.0"
    public static let mplexProtocolID = "/mplex/6.7.0"

    /// What the upgrade needs to know.
    public struct Settings: Sendable {
        /// Our identity and Noise static key.
        public var identity: NoiseIdentity
        /// Time for the three stages together.
        public var handshakeTimeout: TimeAmount
        /// Muxers to offer (dialer, in order) or accept (listener).
        public var muxers: [String]
        /// yamux limits and window.
        public var yamux: YamuxSettings
        /// mplex limits.
        public var mplex: MplexSettings
        /// Per-stream bytes queued in the muxer above which a stream channel turns unwritable.
        public var streamWriteHighWatermark: Int
        /// Remote identity key types to accept.
        public var acceptedKeyTypes: Set<KeyType>
        /// Connection-level logs.
        public var logger: Logger

        public init(identity: NoiseIdentity, handshakeTimeout: TimeAmount = .seconds(10),
                    muxers: [String] = [ConnectionUpgrade.yamuxProtocolID, ConnectionUpgrade.mplexProtocolID],
                    yamux: YamuxSettings = YamuxSettings(), mplex: MplexSettings = MplexSettings(),
                    streamWriteHighWatermark: Int = 256 * 1024,
                    acceptedKeyTypes: Set<KeyType> = Set(KeyType.allCases),
                    logger: Logger = Logger(label: "edgeswap.libp2p.connection")) {
            self.identity = identity
            self.handshakeTimeout = handshakeTimeout
            self.muxers = muxers
            self.yamux = yamux
            self.mplex = mplex
            self.streamWriteHighWatermark = streamWriteHighWatermark
            self.acceptedKeyTypes = acceptedKeyTypes
            self.logger = logger
        }
    }

    /// The result of a finished upgrade: whom we talk to and how to open streams. Loop-bound parts must be
    /// used on the connection's event loop.
    public struct Upgraded: Sendable {
        /// The authenticated remote peer.
        public let remotePeerID: PeerID
        /// The remote identity key.
        public let remotePublicKey: PublicKey
        /// The negotiated muxer protocol id.
        public let muxerProtocol: String
        /// Opens streams on the connection (`streams.value`, on the connection's event loop only).
        public let streams: NIOLoopBound<MuxedStreamOpener>
    }

    /// Adds the upgrade handlers to `channel` (on its event loop, synchronously) and returns a future for the
    /// upgraded connection.
    ///
    /// - Parameters:
    ///   - inboundStreamInitializer: configures every stream the peer opens (typically a multistream
    ///     listener over the host's protocols).
    ///   - onUpgraded: called on the event loop as soon as the muxer is in place and before any muxed byte is
    ///     processed, so inbound streams already see its side effects (e.g. a registered connection object).
    public static func configure(
        channel: any Channel,
        role: Role,
        settings: Settings,
        inboundStreamInitializer: @escaping StreamMuxerStreamInitializer,
        onUpgraded: ((Upgraded) throws -> Void)? = nil
    ) throws -> EventLoopFuture<Upgraded> {
        channel.eventLoop.preconditionInEventLoop()
        let promise = channel.eventLoop.makePromise(of: Upgraded.self)
        let logger = settings.logger
        let tail = ConnectionUpgradeTailHandler(logger: logger, timeout: settings.handshakeTimeout, upgraded: promise)
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(tail)

        let onNoise: NoiseHandler.OnHandshakeComplete = { completed, channel in
            tail.stage = "muxer negotiation"
            let muxerSelected: MultistreamSelectHandler.OnSelected = { muxer, channel in
                let handler: any ChannelHandler
                let opener: MuxedStreamOpener
                switch muxer {
                case Self.yamuxProtocolID:
                    let yamuxRole: YamuxRole
                    if case .listener = role { yamuxRole = .server } else { yamuxRole = .client }
                    let h = StreamMuxerHandler(muxer: YamuxSession(role: yamuxRole, settings: settings.yamux),
                                               writeBufferHighWatermark: settings.streamWriteHighWatermark,
                                               inboundStreamInitializer: inboundStreamInitializer)
                    handler = h
                    opener = MuxedStreamOpener(open: { h.openStream(initializer: $0) }, goAway: { h.goAway() })
                case Self.mplexProtocolID:
                    let h = StreamMuxerHandler(muxer: MplexSession(settings: settings.mplex),
                                               writeBufferHighWatermark: settings.streamWriteHighWatermark,
                                               inboundStreamInitializer: inboundStreamInitializer)
                    handler = h
                    opener = MuxedStreamOpener(open: { h.openStream(initializer: $0) }, goAway: { h.goAway() })
                default:
                    throw MultistreamHandlerError.nextStageFailed(protocol: muxer, reason: "not a known muxer")
                }
                try channel.pipeline.syncOperations.addHandler(handler, position: .before(tail))
                let upgraded = Upgraded(remotePeerID: completed.remotePeerID,
                                        remotePublicKey: completed.remotePublicKey,
                                        muxerProtocol: muxer,
                                        streams: NIOLoopBound(opener, eventLoop: channel.eventLoop))
                try onUpgraded?(upgraded)
                tail.upgradeFinished(upgraded)
            }
            let mss: MultistreamSelectHandler
            switch role {
            case .listener:
                mss = MultistreamSelectHandler(listening: settings.muxers, stage: "muxer", logger: logger,
                                               onSelected: muxerSelected)
            case .dialer:
                mss = try MultistreamSelectHandler(proposing: settings.muxers, stage: "muxer", logger: logger,
                                                   onSelected: muxerSelected)
            }
            try channel.pipeline.syncOperations.addHandler(mss, position: .before(tail))
        }

        let securitySelected: MultistreamSelectHandler.OnSelected = { _, channel in
            tail.stage = "Noise handshake"
            let noiseRole: NoiseRole
            let expected: PeerID?
            switch role {
            case .listener:
                noiseRole = .responder
                expected = nil
            case .dialer(let peer):
                noiseRole = .initiator
                expected = peer
            }
            // The tail's timer covers the whole upgrade, so the Noise handler needs none of its own.
            let noise = NoiseHandler(role: noiseRole, identity: settings.identity, expectedRemotePeerID: expected,
                                     acceptedKeyTypes: settings.acceptedKeyTypes, handshakeTimeout: nil,
                                     logger: logger, onHandshakeComplete: onNoise)
            try channel.pipeline.syncOperations.addHandler(noise, position: .before(tail))
        }
        let security: MultistreamSelectHandler
        switch role {
        case .listener:
            security = MultistreamSelectHandler(listening: [NoiseHandshakeStateMachine.protocolID],
                                                stage: "security", logger: logger, onSelected: securitySelected)
        case .dialer:
            security = try MultistreamSelectHandler(proposing: [NoiseHandshakeStateMachine.protocolID],
                                                    stage: "security", logger: logger, onSelected: securitySelected)
        }
        try sync.addHandler(security, position: .before(tail))
        return promise.futureResult
    }
}

/// Sets up a stream channel's pipeline (same shape as `StreamMuxerHandler.StreamInitializer`).
public typealias StreamMuxerStreamInitializer = (any Channel) -> EventLoopFuture<Void>

/// Opens streams on an upgraded connection and ends its session. Use only on the connection's event loop.
public struct MuxedStreamOpener {
    private let openClosure: (StreamMuxerStreamInitializer?) -> EventLoopFuture<any Channel>
    private let goAwayClosure: () -> Void

    init(open: @escaping (StreamMuxerStreamInitializer?) -> EventLoopFuture<any Channel>,
         goAway: @escaping () -> Void) {
        self.openClosure = open
        self.goAwayClosure = goAway
    }

    /// Opens a stream whose pipeline `initializer` sets up before the stream is activated.
    public func openStream(initializer: StreamMuxerStreamInitializer?) -> EventLoopFuture<any Channel> {
        self.openClosure(initializer)
    }

    /// Ends the session politely (yamux GoAway normal): the peer opens no new streams, running ones finish.
    public func goAway() {
        self.goAwayClosure()
    }
}

/// Why a libp2p connection closed, recorded by ``ConnectionUpgradeTailHandler``.
public enum ConnectionCloseReason: Sendable, CustomStringConvertible {
    /// A local decision (shutdown, idle timeout, limit), with its explanation.
    case local(String)
    /// An error from some layer (WebSocket, multistream-select, Noise, muxer).
    case error(String)
    /// The peer closed the connection.
    case remoteClosed

    public var description: String {
        switch self {
        case .local(let why): return why
        case .error(let why): return why
        case .remoteClosed: return "closed by the peer"
        }
    }
}

/// The last handler of every libp2p connection pipeline: enforces the upgrade timeout, remembers the first
/// error or local reason, closes the connection on errors that reach it, and logs one line with the reason
/// when the connection ends.
final class ConnectionUpgradeTailHandler: ChannelInboundHandler {
    typealias InboundIn = Any

    /// Connection logger; gains the remote peer once the upgrade is done.
    var logger: Logger
    private let timeout: TimeAmount
    private var upgradePromise: EventLoopPromise<ConnectionUpgrade.Upgraded>?
    private var timeoutTask: Scheduled<Void>?
    private(set) var reason: ConnectionCloseReason?
    /// The stage in progress, for timeout and failure messages.
    var stage = "security negotiation"

    init(logger: Logger, timeout: TimeAmount, upgraded: EventLoopPromise<ConnectionUpgrade.Upgraded>) {
        self.logger = logger
        self.timeout = timeout
        self.upgradePromise = upgraded
    }

    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let timeout = self.timeout
        self.timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            guard self.upgradePromise != nil else { return }
            self.close(.local("upgrade timed out after \(timeout.nanoseconds / 1_000_000) ms in \(self.stage)"),
                       context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.timeoutTask?.cancel()
        self.upgradePromise?.fail(ChannelError.ioOnClosedChannel)
        self.upgradePromise = nil
    }

    func upgradeFinished(_ upgraded: ConnectionUpgrade.Upgraded) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.stage = "upgraded"
        self.logger[metadataKey: "peer"] = "\(upgraded.remotePeerID)"
        let promise = self.upgradePromise
        self.upgradePromise = nil
        promise?.succeed(upgraded)
    }

    /// Records `reason` (unless one is already known) and closes the connection.
    func close(_ reason: ConnectionCloseReason, context: ChannelHandlerContext) {
        if self.reason == nil { self.reason = reason }
        context.close(promise: nil)
    }

    /// Records `reason` (unless one is already known) and closes the connection, from outside the pipeline.
    func close(_ reason: ConnectionCloseReason) {
        guard let context = self.context else { return }
        self.close(reason, context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Nothing should reach the tail: every stage consumes its bytes. Dropping them is harmless.
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The muxer reports streams it reset without accepting them (a stream flood past the limit).
        if let event = event as? StreamMuxerEvent, case .streamRefused(let id, let reason) = event {
            self.logger.notice("stream refused", metadata: ["stream": "\(id.rawValue)", "reason": "\(reason)"])
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.reason == nil { self.reason = .error("\(error)") }
        self.upgradePromise?.fail(error)
        self.upgradePromise = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        let reason = self.reason ?? .remoteClosed
        if let promise = self.upgradePromise {
            self.upgradePromise = nil
            promise.fail(ConnectionUpgradeError.closed(stage: self.stage, reason: reason.description))
        }
        let level: Logger.Level
        if case .remoteClosed = reason { level = .debug } else { level = .info }
        self.logger.log(level: level, "connection closed", metadata: [
            "reason": "\(reason)", "stage": "\(self.stage)",
        ])
        context.fireChannelInactive()
    }
}

/// Why an upgrade did not produce a connection.
public enum ConnectionUpgradeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The connection closed during `stage`.
    case closed(stage: String, reason: String)

    public var description: String {
        switch self {
        case .closed(let stage, let reason): return "connection closed during \(stage): \(reason)"
        }
    }
}
