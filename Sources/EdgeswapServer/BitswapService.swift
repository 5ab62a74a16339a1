import Bitswap
import Libp2p
import Logging
import Multiformats
import NIOConcurrencyHelpers
import NIOCore
import ObjectStorage

/// Serves Bitswap on a `Libp2pHost`: one `BitswapEngine` per connection, run on the connection's event loop.
///
/// Per connection there is ONE engine, fed by every inbound want stream the peer opens on that connection
/// (kubo and boxo open a fresh stream per message burst and may keep several), and ONE outbound stream that
/// this service opens itself to carry the answers. The spec: a server "answers on a stream it opens itself";
/// kubo reads responses only from streams the remote opened, never from its own want streams. The outbound
/// stream uses the protocol version the peer negotiated on its first want stream, is kept open for the life
/// of the connection, and is reopened if the peer resets it.
///
/// Where things run: the want streams' bytes are decoded by a channel handler on the connection's loop and go
/// straight into the engine (`ConnectionSession`, bound to that loop); answers are written from there to the
/// outbound stream's channel. Only lookups leave the loop, one task per `.lookup` batch, and their results
/// come back to it. Backpressure runs from the socket to the engine: the outbound stream turns unwritable when
/// the muxer holds more than its high watermark behind the peer's window, the engine then sends nothing more
/// and, once `maxBufferedBytes` of looked-up blocks wait, starts no more lookups; the peer's wants wait.
///
/// Everything a connection starts ends with it: when the connection closes (FIN, reset, timeout, server
/// close) its session drops the engine and every buffered answer, cancels its lookup tasks, and leaves the
/// registry; `liveSessions`, `sessionObjects` and `lookupTasks` count what is left, for tests and metrics.
public final class BitswapService: Sendable {
    /// Where blocks come from.
    public let source: any BlockSource
    /// The engine tunables used for every connection.
    public let configuration: BitswapEngine.Configuration
    /// Asked before every lookup batch (quotas); nil admits everything.
    public let gate: (any LookupGate)?
    /// Consecutive failures to open or write the outbound stream after which a session stops answering (the
    /// wants stay unanswered, as they would be had the peer gone).
    public let maxOutboundFailures: Int
    private let logger: Logger
    private let registry = NIOLockedValueBox([UInt64: NIOLoopBound<ConnectionSession>]())
    private let totals = NIOLockedValueBox(BitswapEngine.Statistics())
    private let denialCounts = NIOLockedValueBox([String: Int]())
    fileprivate let liveCounters = NIOLockedValueBox(LiveCounters())

    fileprivate struct LiveCounters {
        var sessionObjects = 0
        var lookupTasks = 0
    }

    public init(source: any BlockSource, configuration: BitswapEngine.Configuration = .init(),
                gate: (any LookupGate)? = nil, maxOutboundFailures: Int = 3,
                logger: Logger = Logger(label: "edgeswap.bitswap")) {
        precondition(maxOutboundFailures > 0, "maxOutboundFailures must be positive")
        self.source = source
        self.configuration = configuration
        self.gate = gate
        self.maxOutboundFailures = maxOutboundFailures
        self.logger = logger
    }

    /// Registers `/ipfs/bitswap/1.2.0`, `/1.1.0`, `/1.0.0` and the bare `/ipfs/bitswap` on `host`.
    public func register(on host: Libp2pHost) {
        for (protocolID, version) in BitswapProtocolVersion.protocolIDs {
            host.register(protocol: protocolID) { [self] connection, channel in
                let session = self.session(for: connection, version: version)
                try channel.pipeline.syncOperations.addHandler(
                    BitswapWantStreamHandler(session: session, maxMessageSize: configuration.maxMessageSize,
                                             maxEntries: configuration.maxWantsPerMessage, logger: logger))
            }
        }
    }

    /// Connections with a live session (for diagnostics, metrics and tests).
    public func activeConnections() async -> Int { liveSessions }

    /// Sessions in the registry: one per connection that has sent a want and has not closed.
    public var liveSessions: Int { registry.withLockedValue { $0.count } }

    /// Session objects still in memory (a session outliving its connection would show here).
    public var sessionObjects: Int { liveCounters.withLockedValue { $0.sessionObjects } }

    /// Lookup tasks not yet finished, over every session.
    public var lookupTasks: Int { liveCounters.withLockedValue { $0.lookupTasks } }

    /// What every engine of this service has done so far (live and ended sessions), for metrics.
    public var statistics: BitswapEngine.Statistics { totals.withLockedValue { $0 } }

    /// What each live session holds now, read on each connection's loop.
    public func sessionSnapshots() async -> [SessionSnapshot] {
        let sessions = registry.withLockedValue { Array($0.values) }
        var snapshots: [SessionSnapshot] = []
        for session in sessions {
            if let snapshot = try? await session.eventLoop.submit({ session.value.snapshot }).get() {
                snapshots.append(snapshot)
            }
        }
        return snapshots.sorted { $0.connectionID < $1.connectionID }
    }

    /// One session's state, for diagnostics and tests.
    public struct SessionSnapshot: Sendable, Equatable {
        public var connectionID: UInt64
        /// Wants held (queued, being looked up, or answered and waiting to be sent).
        public var wants: Int
        /// Looked-up block bytes waiting to be sent.
        public var bufferedBytes: Int
        /// Lookup batches running.
        public var lookupsInFlight: Int
        /// Bytes written to the outbound stream and not yet sent (behind the peer's window).
        public var outboundQueuedBytes: Int
    }

    // MARK: - Sessions

    /// The connection's session, made on its first want stream (on the connection's loop): the engine and the
    /// outbound stream use the version that stream negotiated.
    private func session(for connection: Libp2pConnection, version: BitswapProtocolVersion) -> ConnectionSession {
        connection.eventLoop.preconditionInEventLoop()
        if let existing = registry.withLockedValue({ $0[connection.id] }) { return existing.value }
        let session = ConnectionSession(connection: connection, version: version, service: self)
        registry.withLockedValue { $0[connection.id] = NIOLoopBound(session, eventLoop: connection.eventLoop) }
        let id = connection.id
        connection.closeFuture.assumeIsolated().whenComplete { _ in
            session.connectionClosed()
            _ = self.registry.withLockedValue { $0.removeValue(forKey: id) }
        }
        return session
    }

    /// Wants denied by the engine's want filter (the denylist), by the filter's reason label.
    public var denials: [String: Int] { denialCounts.withLockedValue { $0 } }

    fileprivate func countDenial(_ reason: String) {
        denialCounts.withLockedValue { $0[reason, default: 0] += 1 }
    }

    fileprivate func add(_ delta: BitswapEngine.Statistics, since last: BitswapEngine.Statistics) {
        totals.withLockedValue { t in
            t.messagesSent += delta.messagesSent - last.messagesSent
            t.blocksSent += delta.blocksSent - last.blocksSent
            t.blockBytesSent += delta.blockBytesSent - last.blockBytesSent
            t.havesSent += delta.havesSent - last.havesSent
            t.dontHavesSent += delta.dontHavesSent - last.dontHavesSent
            t.refusals += delta.refusals - last.refusals
            t.staleResults += delta.staleResults - last.staleResults
        }
    }

    fileprivate var sessionLogger: Logger { logger }
}

/// One connection's engine, its outbound stream and its lookup tasks. Bound to the connection's event loop:
/// every method runs there.
///
/// ```
///            first want stream                      connection closes
///   (made) ──────────────────────▶ serving ─────────────────────────────▶ closed
///                                    │  ▲                                    ▲
///                 gate says close    │  │                                    │
///                                    ▼  │                                    │
///                                  closing (connection being closed) ────────┘
/// ```
private final class ConnectionSession {
    /// The session's phase. Only `serving` runs the engine's actions.
    enum Phase {
        case serving
        /// A `.close` action was taken; the close is under way.
        case closing
        /// The connection has closed; nothing is kept.
        case closed
    }

    /// The outbound (answer) stream.
    enum Outbound {
        /// None open yet, or the last one closed; the next frame opens one.
        case none
        /// Open; frames are written to it.
        case open(any Channel)
        /// `maxOutboundFailures` consecutive failures: answers are dropped.
        case gaveUp
    }

    /// The outcome of one lookup task, delivered on the loop.
    enum LookupOutcome: Sendable {
        case results([CID: BlockLookupResult])
        case failed(String)
        case notAdmitted(BitswapEngine.Admission)
    }

    let connection: Libp2pConnection
    let version: BitswapProtocolVersion
    unowned let service: BitswapService
    private let loop: any EventLoop
    private let logger: Logger
    private let protocolID: String
    private var engine: BitswapEngine
    private var phase = Phase.serving
    private var outbound = Outbound.none
    private var outboundFailures = 0
    /// The frame being written: kept until the stream has taken it, so a reset stream's frame is sent again on
    /// the next one.
    private var pendingFrame: BitswapFrame?
    private var lookups: [UInt64: Task<Void, Never>] = [:]
    private var reported = BitswapEngine.Statistics()
    /// Re-entrancy guard: actions produced while running actions are queued, not nested.
    private var running = false
    private var queued: [BitswapEngine.Action] = []

    init(connection: Libp2pConnection, version: BitswapProtocolVersion, service: BitswapService) {
        self.connection = connection
        self.version = version
        self.service = service
        self.loop = connection.eventLoop
        self.logger = service.sessionLogger
        self.protocolID = BitswapProtocolVersion.protocolIDs.first { $0.version == version }?.id
            ?? "/ipfs/bitswap/1.2.0"
        let peer = PeerContext(peerID: connection.remotePeerID.multihash.bytes, connectionID: connection.id,
                               protocolVersion: version)
        self.engine = BitswapEngine(peer: peer, configuration: service.configuration)
        service.liveCounters.withLockedValue { $0.sessionObjects += 1 }
    }

    deinit {
        service.liveCounters.withLockedValue { $0.sessionObjects -= 1 }
    }

    var snapshot: BitswapService.SessionSnapshot {
        var queuedBytes = 0
        if case .open(let channel) = outbound, let stream = channel as? MuxedStreamChannel {
            queuedBytes = stream.queuedOutboundBytes
        }
        return .init(connectionID: connection.id, wants: engine.wantCount, bufferedBytes: engine.bufferedBytes,
                     lookupsInFlight: lookups.count, outboundQueuedBytes: queuedBytes)
    }

    // MARK: Events

    func received(_ message: BitswapMessage) {
        guard case .serving = phase else { return }
        run(engine.receive(message))
    }

    func lookupFinished(_ id: UInt64, _ outcome: LookupOutcome) {
        guard lookups.removeValue(forKey: id) != nil, case .serving = phase else { return }
        switch outcome {
        case .results(let results): run(engine.lookupCompleted(id: id, results: results))
        case .failed(let reason): run(engine.lookupFailed(id: id, reason: reason))
        case .notAdmitted(let decision): run(engine.admission(decision, for: id))
        }
    }

    func outboundWritable(_ channel: any Channel) {
        guard case .serving = phase, case .open(let current) = outbound, current === channel,
              channel.isWritable, pendingFrame == nil else { return }
        run(engine.outboundWritable())
    }

    /// The outbound stream closed (the peer reset it, or the muxer failed it) while the session lives.
    func outboundClosed(_ channel: any Channel) {
        guard case .open(let current) = outbound, current === channel else { return }
        outbound = .none
        guard case .serving = phase else { return }
        outboundFailed("response stream closed")
    }

    func connectionClosed() {
        phase = .closed
        for task in lookups.values { task.cancel() }
        lookups.removeAll()
        // Drop every want and buffered answer now: nothing of this connection outlives it, whatever still
        // holds a reference to the session (a lookup task finishing its last await).
        engine = BitswapEngine(peer: engine.peer, configuration: engine.configuration)
        pendingFrame = nil
        queued.removeAll()
        outbound = .none
        let statistics = reported
        logger.debug("bitswap session ended", metadata: [
            "connection": "\(connection.id)", "blocks": "\(statistics.blocksSent)",
            "bytes": "\(statistics.blockBytesSent)", "dontHaves": "\(statistics.dontHavesSent)",
        ])
    }

    // MARK: Actions

    private func run(_ actions: [BitswapEngine.Action]) {
        queued.append(contentsOf: actions)
        guard !running else { return }
        running = true
        defer { running = false }
        // Entries the decoder set aside (unknown want type, over-long CID, over the per-message cap) are the
        // peer's doing, unlike misses: one notice per batch of actions names them, so an operator at the default
        // level sees why wants went unanswered without a line per entry.
        var setAside: [BitswapMessage.RejectedEntry] = []
        while !queued.isEmpty {
            let action = queued.removeFirst()
            guard case .serving = phase else { break }
            switch action {
            case .lookup(let id, let batch):
                startLookup(id, batch)
            case .send(let frame):
                send(frame)
            case .refused(.rejectedEntry(let rejected)):
                setAside.append(rejected)
            case .refused(.denied(let cid, let reason)):
                service.countDenial(reason)
                logger.debug("bitswap want denied", metadata: [
                    "connection": "\(connection.id)", "cid": "\(cid)", "reason": "\(reason)",
                ])
            case .refused(let refusal):
                logger.debug("bitswap want refused", metadata: [
                    "connection": "\(connection.id)", "refusal": "\(refusal)",
                ])
            case .close(let reason):
                close(reason)
            }
        }
        queued.removeAll()
        if !setAside.isEmpty {
            let shown = setAside.prefix(8).map { "\($0)" }.joined(separator: ", ")
            logger.notice("bitswap wantlist entries set aside", metadata: [
                "connection": "\(connection.id)", "peer": "\(connection.remotePeerID)",
                "count": "\(setAside.count)", "reasons": "\(shown)\(setAside.count > 8 ? ", …" : "")",
            ])
        }
        if engine.statistics != reported {
            service.add(engine.statistics, since: reported)
            reported = engine.statistics
        }
    }

    private func close(_ reason: String) {
        phase = .closing
        for task in lookups.values { task.cancel() }
        lookups.removeAll()
        logger.notice("closing connection", metadata: [
            "connection": "\(connection.id)", "peer": "\(connection.remotePeerID)", "reason": "\(reason)",
        ])
        let connection = self.connection
        Task { await connection.close(reason: reason) }
    }

    /// Runs one lookup batch in a task: the gate, then the source with a storage meter in scope, then the
    /// charge; the outcome comes back to the loop. The task is the session's: cancelled when the connection
    /// closes, and its result then dropped.
    private func startLookup(_ id: UInt64, _ batch: BlockLookupBatch) {
        let source = service.source
        let gate = service.gate
        let counters = service.liveCounters
        let session = NIOLoopBound(self, eventLoop: loop)
        let loop = self.loop
        counters.withLockedValue { $0.lookupTasks += 1 }
        let task = Task {
            defer { counters.withLockedValue { $0.lookupTasks -= 1 } }
            let outcome: LookupOutcome
            if let gate, case let decision = await gate.admit(batch), decision != .admit {
                outcome = .notAdmitted(decision)
            } else {
                let meter = StorageMeter()
                do {
                    let results = try await StorageMeter.$current.withValue(meter) { try await source.lookup(batch) }
                    if let gate {
                        var bytes = 0
                        for result in results.values {
                            if case .block(let data) = result { bytes += data.readableBytes }
                        }
                        await gate.charge(batch, subrequests: meter.count, bytes: bytes)
                    }
                    outcome = .results(results)
                } catch {
                    outcome = .failed("\(error)")
                }
            }
            guard !Task.isCancelled else { return }
            loop.execute { session.value.lookupFinished(id, outcome) }
        }
        lookups[id] = task
    }

    // MARK: Outbound stream

    private func send(_ frame: BitswapFrame) {
        precondition(pendingFrame == nil, "the engine keeps at most one message outstanding")
        pendingFrame = frame
        writePending()
    }

    /// Writes the pending frame, opening the outbound stream first when there is none.
    private func writePending() {
        guard let frame = pendingFrame, case .serving = phase else { return }
        switch outbound {
        case .gaveUp:
            pendingFrame = nil
        case .none:
            let opened = connection.openStreamOnLoop(protocolID) { [self] channel in
                try channel.pipeline.syncOperations.addHandler(BitswapAnswerStreamHandler(session: self))
            }
            opened.assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard case .serving = phase else {
                        channel.close(promise: nil)
                        return
                    }
                    outbound = .open(channel)
                    writePending()
                case .failure(let error):
                    guard case .serving = phase else { return }
                    logger.debug("cannot open bitswap response stream", metadata: [
                        "connection": "\(connection.id)", "reason": "\(error)",
                    ])
                    outboundFailed("\(error)")
                }
            }
        case .open(let channel):
            // The frame's parts go out as they are: the blocks are not copied into the frame (the muxer queues
            // them, the Noise handler seals them from their own storage).
            let written = channel.eventLoop.makePromise(of: Void.self)
            for (index, part) in frame.parts.enumerated() {
                channel.write(part, promise: index == frame.parts.count - 1 ? written : nil)
            }
            if frame.parts.isEmpty { written.succeed() }
            channel.flush()
            written.futureResult.assumeIsolated().whenComplete { [self] result in
                guard case .serving = phase else { return }
                switch result {
                case .success:
                    pendingFrame = nil
                    outboundFailures = 0
                    if channel.isWritable { run(engine.outboundWritable()) }
                    // else: `outboundWritable` when the channel's writability comes back.
                case .failure(let error):
                    logger.debug("bitswap response stream failed; reopening", metadata: [
                        "connection": "\(connection.id)", "reason": "\(error)",
                    ])
                    if case .open(let current) = outbound, current === channel {
                        outbound = .none
                        channel.close(promise: nil)
                    }
                    outboundFailed("\(error)")
                }
            }
        }
    }

    /// One more consecutive failure of the outbound stream: try again on a new stream, or give up.
    private func outboundFailed(_ reason: String) {
        outboundFailures += 1
        if outboundFailures >= service.maxOutboundFailures {
            outbound = .gaveUp
            pendingFrame = nil
            logger.debug("bitswap response stream failed too often; not answering", metadata: [
                "connection": "\(connection.id)", "reason": "\(reason)", "failures": "\(outboundFailures)",
            ])
            return
        }
        // The pending frame (if any) goes out on the next stream; with none pending, the next send opens one.
        if pendingFrame != nil {
            let session = NIOLoopBound(self, eventLoop: loop)
            loop.execute { session.value.writePending() }
        }
    }
}

@available(*, unavailable)
extension ConnectionSession: Sendable {}

/// Reads one inbound want stream: uvarint-delimited messages, decoded here so a bad message resets exactly the
/// stream that carried it (boxo resets an inbound stream whose message fails to decode), and handed to the
/// connection's session on the same loop.
private final class BitswapWantStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let session: ConnectionSession
    private var decoder: BitswapFrameDecoder
    private let maxEntries: Int
    private let logger: Logger
    private var failed = false

    init(session: ConnectionSession, maxMessageSize: Int, maxEntries: Int, logger: Logger) {
        self.session = session
        self.decoder = BitswapFrameDecoder(maxMessageSize: maxMessageSize)
        self.maxEntries = maxEntries
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        decoder.append(unwrapInboundIn(data))
        do {
            while let body = try decoder.nextMessage() {
                let message = try BitswapMessage(decoding: body, maxWantlistEntries: maxEntries)
                session.received(message)
            }
        } catch {
            failed = true
            logger.warning("resetting bitswap stream: bad message", metadata: [
                "connection": "\(session.connection.id)", "peer": "\(session.connection.remotePeerID)",
                "reason": "\(error)",
            ])
            context.channel.triggerUserOutboundEvent(MuxedStreamResetEvent(), promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The peer finished this want stream (yamux FIN): nothing more will come on it, so close our side too.
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset by the peer, or the session failing: the stream closes; the connection's session goes on.
        context.close(promise: nil)
    }
}

/// The handler on the session's own outbound stream: tells the session when the stream can take more and when
/// it has gone. The peer sends nothing on it; anything it does send is dropped.
private final class BitswapAnswerStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// Weak: the stream's pipeline may outlive the session by an event loop tick after the connection closed, and
    /// nothing it delivers then matters.
    private weak var session: ConnectionSession?

    init(session: ConnectionSession) {
        self.session = session
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        session?.outboundWritable(context.channel)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session?.outboundClosed(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
