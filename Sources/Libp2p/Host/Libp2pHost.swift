// edgeswap: the running libp2p host: WebSocket listeners and dialer, the connection upgrade, the protocol
// registry that inbound streams are negotiated against, connection tracking and graceful shutdown.

import Logging
import Multiformats
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Named limits of a ``Libp2pHost``, with defaults chosen for an edge server.
public struct Libp2pHostLimits: Sendable, Equatable {
    /// Time from the WebSocket upgrade until the connection is ready (multistream-select, Noise and the muxer
    /// negotiation together). Default 10 s (go-libp2p allows 15 s for the WebSocket upgrade alone and 60 s
    /// for the whole upgrade; a server can be stricter).
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Time allowed for the WebSocket (and TLS) handshake itself. Default 15 s, go-libp2p's value.
    public var webSocketHandshakeTimeout: TimeAmount = .seconds(15)
    /// Connections open at once, inbound and outbound. Further inbound connections are closed right after
    /// the WebSocket upgrade; further dials fail. Default 4096.
    public var maxConnections: Int = 4096
    /// Streams open at once per connection in each direction; further inbound streams are reset (yamux RST).
    /// Default 256 (go-yamux allows 1000, kubo's resource manager about 64 Bitswap streams per peer).
    public var maxStreamsPerConnection: Int = 256
    /// The yamux receive window we grant each stream, in bytes. Default 256 KiB, the spec's initial window;
    /// larger values are announced in the SYN/ACK.
    public var yamuxStreamWindow: UInt32 = YamuxSettings.initialStreamWindow
    /// Largest inbound WebSocket frame. Default 1 MiB ("raise it to at least 64 KiB + 2, or better 1 MiB").
    public var webSocketMaxFrameSize: Int = 1 << 20
    /// A connection with no open stream for this long is closed. Default 120 s (js-libp2p's yamux inactivity
    /// timeout).
    public var idleTimeout: TimeAmount = .seconds(120)
    /// On shutdown, running stream handlers get this long to finish after GoAway before connections close.
    public var shutdownGracePeriod: TimeAmount = .seconds(5)
    /// TCP keepalive on accepted connections: probes start after this much silence, and a peer whose machine
    /// is gone is dropped about 30 s later. nil turns keepalive off. Default 60 s.
    public var tcpKeepaliveIdle: TimeAmount? = .seconds(60)

    public init() {}
}

/// Configuration of a ``Libp2pHost``.
public struct Libp2pHostConfiguration: Sendable {
    /// Our identity. Every instance of a fleet can share one key (one peer id).
    public var identity: PrivateKey
    /// WebSocket multiaddrs to listen on: `/ip4|ip6|dns4/<host>/tcp/<port>/ws`, `…/wss` or `…/tls/ws`
    /// (the TLS forms need ``tlsCertificateChainFile`` and ``tlsPrivateKeyFile``). Port 0 picks a free port.
    public var listenAddresses: [Multiaddr]
    /// Public addresses to tell peers in identify instead of the bound ones (e.g. `/dns4/edge.example/tcp/443/wss`).
    public var announceAddresses: [Multiaddr]
    /// PEM certificate chain (leaf first) for TLS listeners.
    public var tlsCertificateChainFile: String?
    /// PEM private key for TLS listeners.
    public var tlsPrivateKeyFile: String?
    /// Trust settings for dialing `wss` addresses; system roots when nil.
    public var dialTLS: WebSocketClientTLS?
    /// Limits and timeouts.
    public var limits: Libp2pHostLimits
    /// identify's `agentVersion`.
    public var agentVersion: String
    /// Remote identity key types accepted in Noise.
    public var acceptedKeyTypes: Set<KeyType>
    /// Where the host logs (connections, streams, listeners).
    public var logger: Logger

    public init(identity: PrivateKey, listenAddresses: [Multiaddr] = [], announceAddresses: [Multiaddr] = [],
                tlsCertificateChainFile: String? = nil, tlsPrivateKeyFile: String? = nil,
                dialTLS: WebSocketClientTLS? = nil, limits: Libp2pHostLimits = Libp2pHostLimits(),
                agentVersion: String = "edgeswap/0.1.0", acceptedKeyTypes: Set<KeyType> = Set(KeyType.allCases),
                logger: Logger = Logger(label: "edgeswap.libp2p")) {
        self.identity = identity
        self.listenAddresses = listenAddresses
        self.announceAddresses = announceAddresses
        self.tlsCertificateChainFile = tlsCertificateChainFile
        self.tlsPrivateKeyFile = tlsPrivateKeyFile
        self.dialTLS = dialTLS
        self.limits = limits
        self.agentVersion = agentVersion
        self.acceptedKeyTypes = acceptedKeyTypes
        self.logger = logger
    }
}

/// Errors of the host API.
public enum Libp2pHostError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A multiaddr the host cannot listen on or dial, and why.
    case unsupportedAddress(String, reason: String)
    /// A TLS listen address without certificate and key files.
    case tlsCertificateMissing(String)
    /// The TLS certificate or key could not be loaded.
    case tlsConfigurationFailed(String)
    /// `start()` was called twice, or after `shutdown()`.
    case alreadyStarted
    /// The host is shutting down or shut down.
    case shutDown
    /// ``Libp2pHostLimits/maxConnections`` connections are open.
    case tooManyConnections(limit: Int)
    /// A stream was negotiated for a protocol that has no handler any more.
    case protocolNotRegistered(String)

    public var description: String {
        switch self {
        case .unsupportedAddress(let a, let why): return "unsupported address \(a): \(why)"
        case .tlsCertificateMissing(let a): return "\(a) needs a TLS certificate and key (--tls-cert, --tls-key)"
        case .tlsConfigurationFailed(let why): return "TLS configuration failed: \(why)"
        case .alreadyStarted: return "the host was already started"
        case .shutDown: return "the host is shut down"
        case .tooManyConnections(let limit): return "connection limit (\(limit)) reached"
        case .protocolNotRegistered(let p): return "no handler for \(p)"
        }
    }
}

/// A libp2p host over WebSocket: listens, dials, upgrades every connection (multistream-select → Noise →
/// yamux/mplex) and runs a registered handler for every inbound stream.
///
/// ```swift
/// let host = try Libp2pHost(configuration: .init(identity: key, listenAddresses: [try Multiaddr("/ip4/0.0.0.0/tcp/0/ws")]))
/// host.register(protocol: "/ipfs/bitswap/1.2.0") { stream in
///     try await stream.executeThenClose { inbound, outbound in
///         for try await chunk in inbound { … }          // the peer's bytes, with backpressure
///         let reply = try await stream.connection.openStream("/ipfs/bitswap/1.2.0")  // answer on our own stream
///         …
///     }
/// }
/// let addresses = try await host.start()    // e.g. /ip4/0.0.0.0/tcp/41234/ws/p2p/12D3KooW…
/// …
/// await host.shutdown()
/// ```
///
/// identify (`/ipfs/id/1.0.0`) and ping (`/ipfs/ping/1.0.0`) are registered by default. Each inbound stream
/// runs multistream-select against the protocols registered at the time it opens; the chosen handler runs
/// in its own task. Logging: one line per closed connection with its reason (info, debug when the peer
/// closed it), one per closed stream (debug).
public final class Libp2pHost: Sendable {
    /// The configuration the host was made with.
    public let configuration: Libp2pHostConfiguration
    /// Our peer id.
    public let peerID: PeerID
    /// The event loops connections run on.
    public let group: any EventLoopGroup

    let noiseIdentity: NoiseIdentity
    private let ownsGroup: Bool
    private let serverTLS: WebSocketServerTLS?
    private let logger: Logger
    private let state: NIOLockedValueBox<State>
    /// Connection objects of this host still in memory (closed or not): see ``connectionObjects``.
    private let liveConnectionObjects = NIOLockedValueBox(0)

    private enum Lifecycle {
        case idle, running, shuttingDown, shutDown
    }

    /// How a registered protocol runs: as an async handler in a task of its own, or as channel handlers
    /// installed on the stream's pipeline, on the connection's event loop.
    private enum ProtocolHandler {
        case task(Libp2pStreamHandler)
        case onLoop(Libp2pStreamChannelInitializer)
    }

    private struct State {
        var lifecycle = Lifecycle.idle
        var protocolOrder: [String] = []
        var handlers: [String: ProtocolHandler] = [:]
        var connections: [UInt64: Libp2pConnection] = [:]
        /// Connections counted against the limit: upgrading or upgraded.
        var connectionSlots = 0
        var listeners: [any Channel] = []
        var boundAddresses: [Multiaddr] = []
        var handlerTasks: [UInt64: Task<Void, Never>?] = [:]
        var nextID: UInt64 = 1
    }

    /// Creates a host; nothing listens until ``start()``.
    ///
    /// - Parameter group: event loops to use; by default the host creates one loop per core and shuts it
    ///   down in ``shutdown()``.
    public init(configuration: Libp2pHostConfiguration, group: (any EventLoopGroup)? = nil) throws {
        // Validate every listen address and the TLS files first, so a typo fails before anything starts.
        var needsTLS: String?
        for address in configuration.listenAddresses {
            let parsed = try WebSocketMultiaddr(address)
            if parsed.isSecure && needsTLS == nil { needsTLS = address.description }
        }
        if let needsTLS {
            guard let chain = configuration.tlsCertificateChainFile, let key = configuration.tlsPrivateKeyFile else {
                throw Libp2pHostError.tlsCertificateMissing(needsTLS)
            }
            do {
                self.serverTLS = try WebSocketServerTLS(certificateChainFile: chain, privateKeyFile: key)
            } catch {
                throw Libp2pHostError.tlsConfigurationFailed("\(error)")
            }
        } else {
            self.serverTLS = nil
        }
        self.configuration = configuration
        self.peerID = configuration.identity.peerID
        self.noiseIdentity = try NoiseIdentity(identityKey: configuration.identity)
        if let group {
            self.group = group
            self.ownsGroup = false
        } else {
            self.group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
            self.ownsGroup = true
        }
        var logger = configuration.logger
        logger[metadataKey: "self"] = "\(configuration.identity.peerID)"
        self.logger = logger
        self.state = NIOLockedValueBox(State())
        // identify and ping, always (Protocols/HostProtocols.swift).
        self.registerIdentifyAndPing()
    }

    // MARK: - Protocols

    /// Registers (or replaces) the handler for `protocolID`. Streams opened from now on can negotiate it.
    public func register(protocol protocolID: String, handler: @escaping Libp2pStreamHandler) {
        self.register(protocolID, .task(handler))
    }

    /// Registers (or replaces) `protocolID` with an initializer that installs channel handlers on each
    /// inbound stream, on the connection's event loop, once multistream-select has chosen the protocol. No
    /// task is started: the stream's pipeline is the protocol's whole life, and it ends when the stream
    /// closes. For protocols whose state belongs on the connection's loop (Bitswap's engine), where a task per
    /// stream would add two thread hops per message. The initializer throwing resets the stream.
    public func register(protocol protocolID: String, channelInitializer: @escaping Libp2pStreamChannelInitializer) {
        self.register(protocolID, .onLoop(channelInitializer))
    }

    private func register(_ protocolID: String, _ handler: ProtocolHandler) {
        self.state.withLockedValue { state in
            if state.handlers.updateValue(handler, forKey: protocolID) == nil {
                state.protocolOrder.append(protocolID)
            }
        }
    }

    /// Removes a protocol; streams already running it continue.
    public func unregister(protocol protocolID: String) {
        self.state.withLockedValue { state in
            if state.handlers.removeValue(forKey: protocolID) != nil {
                state.protocolOrder.removeAll { $0 == protocolID }
            }
        }
    }

    /// The registered protocol ids, in registration order (identify lists these).
    public var protocols: [String] {
        self.state.withLockedValue { $0.protocolOrder }
    }

    private func handler(for protocolID: String) -> ProtocolHandler? {
        self.state.withLockedValue { $0.handlers[protocolID] }
    }

    // MARK: - Addresses

    /// The bound listen addresses with their real ports and `/p2p/<our peer id>` (empty before ``start()``).
    public var listenAddresses: [Multiaddr] {
        self.state.withLockedValue { $0.boundAddresses }
    }

    /// What identify announces: the configured announce addresses, or else the bound listen addresses
    /// (without `/p2p`).
    public var advertisedAddresses: [Multiaddr] {
        if !self.configuration.announceAddresses.isEmpty {
            return self.configuration.announceAddresses.map(\.withoutPeerID)
        }
        return self.listenAddresses.map(\.withoutPeerID)
    }

    // MARK: - Lifecycle

    /// Binds every listen address and returns them as bound: the real port for port 0, and
    /// `/p2p/<our peer id>` appended. Fails (and closes what was bound) if any address cannot be bound.
    @discardableResult
    public func start() async throws -> [Multiaddr] {
        try self.state.withLockedValue { state in
            guard case .idle = state.lifecycle else { throw Libp2pHostError.alreadyStarted }
            state.lifecycle = .running
        }
        var bound: [(any Channel, Multiaddr)] = []
        do {
            for address in self.configuration.listenAddresses {
                let parsed = try WebSocketMultiaddr(address)
                let channel = try await WebSocketTransport.listen(
                    host: parsed.host, port: parsed.port, tls: parsed.isSecure ? self.serverTLS : nil,
                    configuration: self.webSocketConfiguration(), group: self.group,
                    initializer: { [self] channel in
                        self.acceptInbound(channel, secure: parsed.isSecure)
                    }
                ).get()
                let port = channel.localAddress?.port ?? parsed.port
                let multiaddr = parsed.multiaddr(port: port, peerID: self.peerID)
                bound.append((channel, multiaddr))
                self.logger.info("listening", metadata: ["address": "\(multiaddr)"])
            }
        } catch {
            for (channel, _) in bound { try? await channel.close() }
            self.state.withLockedValue { $0.lifecycle = .shutDown }
            throw error
        }
        self.state.withLockedValue { state in
            state.listeners = bound.map(\.0)
            state.boundAddresses = bound.map(\.1)
        }
        return bound.map(\.1)
    }

    /// Stops listening, sends GoAway on every connection, gives running stream handlers
    /// ``Libp2pHostLimits/shutdownGracePeriod`` to finish, then closes every connection (reason "host
    /// shutdown") and, if the host created its event loops, shuts them down.
    public func shutdown() async {
        let (listeners, connections) = self.state.withLockedValue { state -> ([any Channel], [Libp2pConnection]) in
            switch state.lifecycle {
            case .shuttingDown, .shutDown: return ([], [])
            case .idle, .running: break
            }
            state.lifecycle = .shuttingDown
            return (state.listeners, Array(state.connections.values))
        }
        self.logger.info("shutting down", metadata: ["connections": "\(connections.count)"])
        for listener in listeners { try? await listener.close() }
        for connection in connections { await connection.goAway() }
        // Let handlers finish what they were doing.
        let deadline = NIODeadline.now() + self.configuration.limits.shutdownGracePeriod
        while NIODeadline.now() < deadline {
            if self.state.withLockedValue({ $0.handlerTasks.isEmpty }) { break }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        let remaining = self.state.withLockedValue { state in
            (Array(state.connections.values), state.handlerTasks.values.compactMap { $0 })
        }
        for task in remaining.1 { task.cancel() }
        for connection in remaining.0 { await connection.close(reason: "host shutdown") }
        for task in remaining.1 { await task.value }
        self.state.withLockedValue { $0.lifecycle = .shutDown }
        if self.ownsGroup {
            try? await self.group.shutdownGracefully()
        }
        self.logger.info("shut down")
    }

    // MARK: - Connections

    /// `Libp2pConnection` objects this host made that are still in memory, open or closed. Once every connection
    /// has closed and nothing holds on to one, this is 0: a higher count is something a connection started (a
    /// task, a stream, a cached closure) that outlived it. For leak tests and diagnostics.
    public var connectionObjects: Int { self.liveConnectionObjects.withLockedValue { $0 } }

    /// Stream handler tasks running now (protocols registered with an async handler).
    public var handlerTaskCount: Int { self.state.withLockedValue { $0.handlerTasks.count } }

    /// The upgraded connections open now.
    public var connections: [Libp2pConnection] {
        self.state.withLockedValue { Array($0.connections.values) }.sorted { $0.id < $1.id }
    }

    /// The open connections to `peer`.
    public func connections(to peer: PeerID) -> [Libp2pConnection] {
        self.connections.filter { $0.remotePeerID == peer }
    }

    /// Dials a WebSocket multiaddr (`/ip4|ip6|dns4/…/tcp/N/ws`, `…/wss`, `…/tls/ws`, `…/tls/sni/<name>/ws`,
    /// optionally with `/p2p/<id>`), upgrades the connection and returns it. With `/p2p/<id>` the Noise
    /// handshake fails unless the remote proves that identity (``NoiseError/peerIDMismatch(expected:actual:)``).
    public func dial(_ address: Multiaddr) async throws -> Libp2pConnection {
        let target = try WebSocketMultiaddr(address)
        try self.reserveConnectionSlot()
        let loop = self.group.next()
        let ready = loop.makePromise(of: Libp2pConnection.self)
        var tls: WebSocketClientTLS?
        if target.isSecure {
            do {
                var client = try self.configuration.dialTLS ?? WebSocketClientTLS()
                if case .tlsWS(let name?) = target.security { client.serverName = name }
                tls = client
            } catch {
                self.releaseConnectionSlot()
                ready.fail(error)
                throw error
            }
        }
        // Whether the channel took over the connection slot (then its close releases it, not this function).
        let slotTransferred = NIOLockedValueBox(false)
        let dialed = WebSocketTransport.dial(
            host: target.host, port: target.port, tls: tls, configuration: self.webSocketConfiguration(),
            group: loop,
            initializer: { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = try self.configureConnection(
                        channel, role: .dialer(expectedPeer: target.peerID), secure: target.isSecure)
                    slotTransferred.withLockedValue { $0 = true }
                    ready.completeWith(connection)
                }
            })
        do {
            _ = try await dialed.get()
        } catch {
            if !slotTransferred.withLockedValue({ $0 }) { self.releaseConnectionSlot() }
            ready.fail(error)
            throw error
        }
        return try await ready.futureResult.get()
    }

    private func reserveConnectionSlot() throws {
        let limit = self.configuration.limits.maxConnections
        try self.state.withLockedValue { state in
            guard case .running = state.lifecycle else { throw Libp2pHostError.shutDown }
            guard state.connectionSlots < limit else { throw Libp2pHostError.tooManyConnections(limit: limit) }
            state.connectionSlots += 1
        }
    }

    private func releaseConnectionSlot() {
        self.state.withLockedValue { $0.connectionSlots -= 1 }
    }

    private func webSocketConfiguration() -> WebSocketTransportConfiguration {
        var logger = self.logger
        logger[metadataKey: "layer"] = "websocket"
        return WebSocketTransportConfiguration(
            maxFrameSize: self.configuration.limits.webSocketMaxFrameSize,
            handshakeTimeout: self.configuration.limits.webSocketHandshakeTimeout,
            tcpKeepaliveIdle: self.configuration.limits.tcpKeepaliveIdle,
            logger: logger)
    }

    /// The WebSocket listener's initializer: counts the connection and starts the upgrade.
    private func acceptInbound(_ channel: any Channel, secure: Bool) -> EventLoopFuture<Void> {
        do {
            try self.reserveConnectionSlot()
        } catch {
            self.logger.notice("refusing connection", metadata: [
                "remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")", "reason": "\(error)",
            ])
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        do {
            _ = try self.configureConnection(channel, role: .listener, secure: secure)
        } catch {
            self.releaseConnectionSlot()
            self.logger.notice("cannot set up connection", metadata: [
                "remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")", "reason": "\(error)",
            ])
            channel.close(promise: nil)
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }

    /// Adds the upgrade to a channel whose connection slot is reserved; the slot is released when it closes.
    /// Returns the future connection.
    func configureConnection(_ channel: any Channel, role: ConnectionUpgrade.Role, secure: Bool) throws
        -> EventLoopFuture<Libp2pConnection>
    {
        let id = self.state.withLockedValue { state -> UInt64 in
            defer { state.nextID += 1 }
            return state.nextID
        }
        let direction: Libp2pDirection
        if case .listener = role { direction = .inbound } else { direction = .outbound }
        var logger = self.logger
        logger[metadataKey: "conn"] = "\(id)"
        logger[metadataKey: "remote"] = "\(channel.remoteAddress.map { "\($0)" } ?? "memory")"
        logger[metadataKey: "direction"] = "\(direction.rawValue)"
        let limits = self.configuration.limits
        var yamux = YamuxSettings()
        yamux.streamReceiveWindow = limits.yamuxStreamWindow
        yamux.maxConcurrentStreams = limits.maxStreamsPerConnection
        // Data frames up to the initial window: a 256 KiB block leaves as one yamux frame whose payload the Noise
        // handler seals from the block's own storage (four full Noise frames), instead of four 64 KiB frames with
        // a small header frame sealed before each. The peer accepts any frame within its window (go-yamux's
        // 64 KiB `MaxMessageSize` bounds what it sends, not what it reads).
        yamux.maxFramePayload = Int(YamuxSettings.initialStreamWindow)
        var mplex = MplexSettings()
        mplex.maxConcurrentStreams = limits.maxStreamsPerConnection
        let settings = ConnectionUpgrade.Settings(
            identity: self.noiseIdentity, handshakeTimeout: limits.handshakeTimeout, yamux: yamux, mplex: mplex,
            acceptedKeyTypes: self.configuration.acceptedKeyTypes, logger: logger)
        let box = NIOLoopBoundBox<Libp2pConnection?>.makeEmptyBox(eventLoop: channel.eventLoop)
        let remoteMultiaddr = channel.remoteAddress.flatMap { WebSocketMultiaddr.multiaddr(for: $0, secure: secure) }
        // The tail handler is the one `configure` adds first; find it again to hand it to the connection.
        let upgraded = try ConnectionUpgrade.configure(
            channel: channel, role: role, settings: settings,
            inboundStreamInitializer: self.inboundStreamInitializer(connection: box, logger: logger),
            onUpgraded: { [self] upgraded in
                let tail = try channel.pipeline.syncOperations.handler(type: ConnectionUpgradeTailHandler.self)
                var connectionLogger = logger
                connectionLogger[metadataKey: "peer"] = "\(upgraded.remotePeerID)"
                let connection = Libp2pConnection(
                    id: id, upgraded: upgraded, direction: direction, channel: channel,
                    remoteMultiaddr: remoteMultiaddr, tail: tail, logger: connectionLogger,
                    liveObjects: self.liveConnectionObjects)
                box.value = connection
                let accepted = self.state.withLockedValue { state -> Bool in
                    guard case .running = state.lifecycle else { return false }
                    state.connections[id] = connection
                    return true
                }
                guard accepted else { throw Libp2pHostError.shutDown }
                connectionLogger.debug("connection ready", metadata: ["muxer": "\(upgraded.muxerProtocol)"])
                self.scheduleIdleCheck(connection)
            })
        // From here on the slot belongs to the channel: it is released when the channel closes, whatever stage
        // the upgrade reached.
        channel.closeFuture.whenComplete { _ in
            self.state.withLockedValue { state in
                state.connections.removeValue(forKey: id)
                state.connectionSlots -= 1
            }
            // The connection holds the muxer handler (to open streams), whose inbound stream initializer holds
            // this box: a cycle that outlives the channel's pipeline. Emptying the box on close breaks it, so the
            // connection, its muxer session and every buffer they hold are freed with the channel.
            channel.eventLoop.execute { box.value = nil }
        }
        return upgraded.flatMapThrowing { _ in
            guard let connection = box.value else { throw Libp2pHostError.shutDown }
            return connection
        }
    }

    /// Closes `connection` once it has had no stream for ``Libp2pHostLimits/idleTimeout``.
    private func scheduleIdleCheck(_ connection: Libp2pConnection) {
        let timeout = self.configuration.limits.idleTimeout
        let period = min(timeout, .seconds(5))
        let loop = connection.eventLoop
        let task = loop.scheduleRepeatedTask(initialDelay: period, delay: period) { task in
            guard connection.channel.isActive else {
                task.cancel()
                return
            }
            if connection.activity.value.isIdle(for: timeout) {
                task.cancel()
                connection.closeOnLoop(reason: .local("idle: no stream for \(timeout.nanoseconds / 1_000_000_000) s"))
            }
        }
        connection.channel.closeFuture.whenComplete { _ in
            loop.execute { task.cancel() }
        }
    }

    // MARK: - Streams

    /// Every inbound stream: multistream-select over the registered protocols, then the handler in a task (or,
    /// for a protocol registered with a channel initializer, its handlers on the stream's pipeline).
    private func inboundStreamInitializer(connection box: NIOLoopBoundBox<Libp2pConnection?>, logger: Logger)
        -> StreamMuxerStreamInitializer
    {
        { [self] channel in
            channel.eventLoop.makeCompletedFuture {
                let lifecycle = StreamLifecycleHandler(direction: .inbound, protocolID: "(negotiating)",
                                                       connection: box.value, logger: logger)
                try channel.pipeline.syncOperations.addHandler(lifecycle)
                let mss = MultistreamSelectHandler(
                    listening: self.protocols, stage: "stream", logger: logger,
                    onSelected: { [self] protocolID, channel in
                        lifecycle.protocolID = protocolID
                        guard let handler = self.handler(for: protocolID) else {
                            throw Libp2pHostError.protocolNotRegistered(protocolID)
                        }
                        guard let connection = box.value else { throw Libp2pHostError.shutDown }
                        switch handler {
                        case .task(let handler):
                            let stream = try connection.makeStream(channel: channel, protocolID: protocolID,
                                                                   direction: .inbound)
                            self.spawn(handler, for: stream, logger: logger)
                        case .onLoop(let initialize):
                            try initialize(connection, channel)
                        }
                    })
                try channel.pipeline.syncOperations.addHandler(mss)
            }
        }
    }

    /// Runs a protocol handler in its own task, tracked for shutdown.
    private func spawn(_ handler: @escaping Libp2pStreamHandler, for stream: Libp2pStream, logger: Logger) {
        let id = self.state.withLockedValue { state -> UInt64 in
            let id = state.nextID
            state.nextID += 1
            state.handlerTasks[id] = .some(nil)
            return id
        }
        let task = Task { [self] in
            do {
                try await handler(stream)
            } catch {
                logger.debug("stream handler failed; resetting the stream", metadata: [
                    "protocol": "\(stream.protocolID)", "reason": "\(error)",
                ])
                stream.reset()
            }
            // Whatever the handler did, the stream ends with it.
            stream.channel.channel.close(promise: nil)
            _ = self.state.withLockedValue { $0.handlerTasks.removeValue(forKey: id) }
        }
        self.state.withLockedValue { state in
            if state.handlerTasks[id] != nil { state.handlerTasks[id] = .some(task) }
        }
    }
}
