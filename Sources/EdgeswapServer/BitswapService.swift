import Bitswap
import Libp2p
import Logging
import Multiformats
import NIOConcurrencyHelpers
import NIOCore

/// Serves Bitswap on a `Libp2pHost`: the I/O owner of one `BitswapEngine` per connection.
///
/// Per connection there is ONE engine, fed by every inbound want stream the peer opens on that connection
/// (kubo and boxo open a fresh stream per message burst and may keep several), and ONE outbound stream that
/// this service opens itself to carry the answers. The spec: a server "answers on a stream it opens itself";
/// kubo reads responses only from streams the remote opened, never from its own want streams. The outbound
/// stream uses the protocol version the peer negotiated on its first want stream, is kept open for the life
/// of the connection, and is reopened if the peer resets it.
///
/// `.lookup` actions run against the `BlockSource` concurrently; the engine bounds how many batches are
/// outstanding (`Configuration.maxConcurrentLookups`) and how many looked-up bytes may wait to be sent
/// (`maxBufferedBytes`), and keeps at most one message in flight to the writer.
public final class BitswapService: Sendable {
    /// Where blocks come from.
    public let source: any BlockSource
    /// The engine tunables used for every connection.
    public let configuration: BitswapEngine.Configuration
    private let logger: Logger
    private let registry = SessionRegistry()
    private let totals = NIOLockedValueBox(BitswapEngine.Statistics())

    public init(source: any BlockSource, configuration: BitswapEngine.Configuration = .init(),
                logger: Logger = Logger(label: "edgeswap.bitswap")) {
        self.source = source
        self.configuration = configuration
        self.logger = logger
    }

    /// Registers `/ipfs/bitswap/1.2.0`, `/1.1.0`, `/1.0.0` and the bare `/ipfs/bitswap` on `host`.
    public func register(on host: Libp2pHost) {
        for (protocolID, version) in BitswapProtocolVersion.protocolIDs {
            host.register(protocol: protocolID) { [self] stream in
                try await self.serveInbound(stream, version: version)
            }
        }
    }

    /// Connections with a live engine (for diagnostics and tests).
    public func activeConnections() async -> Int { await registry.count }

    /// What every engine of this service has done so far (live and ended sessions), for metrics.
    public var statistics: BitswapEngine.Statistics { totals.withLockedValue { $0 } }

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

    /// Reads one inbound want stream: uvarint-delimited messages, decoded here so a bad message resets
    /// exactly the stream that carried it (boxo resets an inbound stream whose message fails to decode).
    private func serveInbound(_ stream: Libp2pStream, version: BitswapProtocolVersion) async throws {
        let connection = stream.connection
        let session = await registry.session(for: connection, version: version, service: self)
        var decoder = BitswapFrameDecoder(maxMessageSize: configuration.maxMessageSize)
        let maxEntries = configuration.maxWantsPerMessage
        let logger = self.logger
        try await stream.executeThenClose { inbound, _ in
            do {
                for try await chunk in inbound {
                    decoder.append(chunk)
                    while let body = try decoder.nextMessage() {
                        let message = try BitswapMessage(decoding: body, maxWantlistEntries: maxEntries)
                        session.events.yield(.message(message))
                    }
                }
            } catch let error as BitswapDecodeError {
                logger.warning("resetting bitswap stream: bad message", metadata: [
                    "connection": "\(connection.id)", "peer": "\(connection.remotePeerID)", "reason": "\(error)",
                ])
                // Reset here, inside the stream's scope. `executeThenClose` closes the stream (a FIN) when
                // the body returns or throws, so a reset issued after it came too late: the peer saw a clean
                // end of stream, not the reset that tells it the message was refused.
                stream.reset()
            }
        }
    }

    fileprivate func sessionEnded(_ connectionID: UInt64) async {
        await registry.remove(connectionID)
    }

    fileprivate var sessionLogger: Logger { logger }
}

/// The live sessions, keyed by connection id.
private actor SessionRegistry {
    private var sessions: [UInt64: ConnectionSession] = [:]

    var count: Int { sessions.count }

    /// The connection's session, made on its first want stream: the engine and the outbound stream
    /// use the version that stream negotiated.
    func session(for connection: Libp2pConnection, version: BitswapProtocolVersion,
                 service: BitswapService) -> ConnectionSession {
        if let existing = sessions[connection.id] { return existing }
        let session = ConnectionSession(connection: connection, version: version, service: service)
        sessions[connection.id] = session
        session.start()
        return session
    }

    func remove(_ id: UInt64) { sessions.removeValue(forKey: id) }
}

/// One connection's engine and its outbound stream.
private final class ConnectionSession: Sendable {
    enum Event: Sendable {
        case message(BitswapMessage)
        case lookupCompleted(id: UInt64, results: [CID: BlockLookupResult])
        case lookupFailed(id: UInt64, reason: String)
        case outboundWritable
    }

    let connection: Libp2pConnection
    let version: BitswapProtocolVersion
    let service: BitswapService
    let events: AsyncStream<Event>.Continuation
    private let eventStream: AsyncStream<Event>

    init(connection: Libp2pConnection, version: BitswapProtocolVersion, service: BitswapService) {
        self.connection = connection
        self.version = version
        self.service = service
        (self.eventStream, self.events) = AsyncStream.makeStream(of: Event.self)
    }

    /// Starts the session task; it ends when the connection closes.
    func start() {
        let events = self.events
        connection.closeFuture.whenComplete { _ in events.finish() }
        Task { await self.run() }
    }

    private var protocolID: String {
        BitswapProtocolVersion.protocolIDs.first { $0.version == version }?.id ?? "/ipfs/bitswap/1.2.0"
    }

    private func run() async {
        let peer = PeerContext(peerID: connection.remotePeerID.multihash.bytes, connectionID: connection.id,
                               protocolVersion: version)
        var engine = BitswapEngine(peer: peer, configuration: service.configuration)
        let logger = service.sessionLogger
        let source = service.source
        let events = self.events
        let connection = self.connection
        let (frames, frameSink) = AsyncStream.makeStream(of: ByteBuffer.self)
        var reported = engine.statistics
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.writeFrames(frames) }
            for await event in eventStream {
                let actions: [BitswapEngine.Action]
                switch event {
                case .message(let message): actions = engine.receive(message)
                case .lookupCompleted(let id, let results): actions = engine.lookupCompleted(id: id, results: results)
                case .lookupFailed(let id, let reason): actions = engine.lookupFailed(id: id, reason: reason)
                case .outboundWritable: actions = engine.outboundWritable()
                }
                // Entries the decoder set aside (unknown want type, over-long CID, over the per-message cap)
                // are the peer's doing, unlike misses: one notice per message names them, so an operator at
                // the default level sees why wants went unanswered without a line per entry.
                var setAside: [BitswapMessage.RejectedEntry] = []
                for action in actions {
                    switch action {
                    case .lookup(let id, let batch):
                        group.addTask {
                            do {
                                events.yield(.lookupCompleted(id: id, results: try await source.lookup(batch)))
                            } catch let error as any ConnectionClosingError {
                                // No answer for these wants (a DONT_HAVE could still race out before the close
                                // and read as an ordinary miss): the connection goes, and the session ends with it.
                                logger.notice("closing connection", metadata: [
                                    "connection": "\(connection.id)", "peer": "\(connection.remotePeerID)",
                                    "reason": "\(error)",
                                ])
                                await connection.close(reason: "\(error)")
                            } catch {
                                events.yield(.lookupFailed(id: id, reason: "\(error)"))
                            }
                        }
                    case .send(let frame):
                        frameSink.yield(frame)
                    case .refused(.rejectedEntry(let rejected)):
                        setAside.append(rejected)
                    case .refused(let refusal):
                        logger.debug("bitswap want refused", metadata: [
                            "connection": "\(connection.id)", "refusal": "\(refusal)",
                        ])
                    }
                }
                if !setAside.isEmpty {
                    let shown = setAside.prefix(8).map { "\($0)" }.joined(separator: ", ")
                    logger.notice("bitswap wantlist entries set aside", metadata: [
                        "connection": "\(connection.id)", "peer": "\(connection.remotePeerID)",
                        "count": "\(setAside.count)",
                        "reasons": "\(shown)\(setAside.count > 8 ? ", …" : "")",
                    ])
                }
                if engine.statistics != reported {
                    service.add(engine.statistics, since: reported)
                    reported = engine.statistics
                }
            }
            frameSink.finish()
            group.cancelAll()
        }
        let statistics = engine.statistics
        logger.debug("bitswap session ended", metadata: [
            "connection": "\(connection.id)", "blocks": "\(statistics.blocksSent)",
            "bytes": "\(statistics.blockBytesSent)", "dontHaves": "\(statistics.dontHavesSent)",
        ])
        await service.sessionEnded(connection.id)
    }

    /// Writes every frame to the outbound stream, opening it on first use and reopening it when a write
    /// fails (the peer reset it). A frame whose write failed is sent again on the new stream; after
    /// `maxFailures` consecutive failures the session stops answering (the wants stay unanswered, as
    /// they would be had the peer gone).
    private func writeFrames(_ frames: AsyncStream<ByteBuffer>) async {
        let maxFailures = 3
        let logger = service.sessionLogger
        let events = self.events
        var iterator = frames.makeAsyncIterator()
        var pending: ByteBuffer? = nil
        var failures = 0
        while true {
            if pending == nil { pending = await iterator.next() }
            guard pending != nil else { return }
            let stream: Libp2pStream
            do {
                stream = try await connection.openStream(protocolID)
            } catch {
                failures += 1
                logger.debug("cannot open bitswap response stream", metadata: [
                    "connection": "\(connection.id)", "reason": "\(error)",
                ])
                if failures >= maxFailures { return }
                continue
            }
            do {
                try await stream.executeThenClose { _, outbound in
                    while let frame = pending {
                        try await outbound.write(frame)
                        pending = nil
                        failures = 0
                        events.yield(.outboundWritable)
                        pending = await iterator.next()
                    }
                    outbound.finish()
                }
                return
            } catch {
                failures += 1
                logger.debug("bitswap response stream failed; reopening", metadata: [
                    "connection": "\(connection.id)", "reason": "\(error)",
                ])
                if failures >= maxFailures { return }
            }
        }
    }
}
