import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// libp2p's WebSocket transport (`/ws`, `/wss`) on SwiftNIO: a listener and a dialer that hand the layers
/// above a plain byte stream.
///
/// After the HTTP/1.1 upgrade each channel carries `WebSocketFrameDecoder` and a stream handler;
/// upper handlers (multistream-select, then Noise) read and write `ByteBuffer`s and never see frames.
/// Inbound frames of any data type arrive as reads with no meaning attached to their boundaries;
/// each outbound `ByteBuffer` becomes one binary frame. Closing the channel sends a close frame (1000)
/// first. A peer's clean close (1000/1005) simply makes the channel inactive; any other close status,
/// or a protocol error, is fired as a ``WebSocketTransportError`` through `errorCaught` before that.
///
/// The upper handlers are added by the caller's ``ChannelInitializer`` once the upgrade is done, when
/// the channel is already active: a listener that must speak first (multistream-select's header) should
/// write from `handlerAdded`, not `channelActive`.
public enum WebSocketTransport {
    /// Adds the upper-layer handlers (working on `ByteBuffer`) to an upgraded channel. Runs on the
    /// channel's event loop.
    public typealias ChannelInitializer = @Sendable (any Channel) -> EventLoopFuture<Void>

    /// SO_KEEPALIVE with TCP_KEEPIDLE = `idle`, TCP_KEEPINTVL = 10 s, TCP_KEEPCNT = 3 (Linux names; other
    /// systems get SO_KEEPALIVE alone).
    static func enableKeepalive(_ options: any NIOSynchronousChannelOptions, idle: TimeAmount) throws {
        try options.setOption(.socketOption(.so_keepalive), value: 1)
        #if os(Linux)
        let tcp = NIOBSDSocket.OptionLevel(rawValue: CInt(IPPROTO_TCP))
        let seconds = max(1, Int(idle.nanoseconds / 1_000_000_000))
        try options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: TCP_KEEPIDLE)),
                              value: seconds)
        try options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: TCP_KEEPINTVL)),
                              value: 10)
        try options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: TCP_KEEPCNT)),
                              value: 3)
        #endif
    }

    /// Binds a WebSocket listener (`ws`, or `wss` when `tls` is given) and returns the server channel;
    /// its `localAddress` tells the real port when `port` was 0. Call twice for `ws` and `wss` at once.
    ///
    /// Upgrades are accepted on any path with no subprotocol; other HTTP requests get a short text
    /// answer (see ``WebSocketTransportConfiguration/banner``) and are closed.
    public static func listen(
        host: String,
        port: Int,
        tls: WebSocketServerTLS? = nil,
        configuration: WebSocketTransportConfiguration = .init(),
        group: any EventLoopGroup,
        initializer: @escaping ChannelInitializer
    ) -> EventLoopFuture<any Channel> {
        ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let idle = configuration.tcpKeepaliveIdle, let options = channel.syncOptions {
                        try Self.enableKeepalive(options, idle: idle)
                    }
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        try sync.addHandler(NIOSSLServerHandler(context: tls.context))
                    }
                    let upgrader = WebSocketServerUpgrader(configuration: configuration, initializer: initializer)
                    try sync.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
                        withErrorHandling: true
                    )
                    try sync.addHandler(
                        WebSocketHandshakeHandler(
                            timeout: configuration.handshakeTimeout,
                            logger: configuration.logger,
                            dialer: nil
                        ),
                        name: WebSocketHandlerName.handshake
                    )
                    try sync.addHandler(
                        WebSocketHTTPFallbackHandler(banner: configuration.banner),
                        name: WebSocketHandlerName.fallback
                    )
                }
            }
            .bind(host: host, port: port)
    }

    /// Dials `ws://host:port/path` (or `wss://` when `tls` is given), performs the upgrade, runs
    /// `initializer` and returns the channel. Fails with the TLS error, a
    /// ``WebSocketTransportError/upgradeRejected(_:)``-style error, or
    /// ``WebSocketTransportError/handshakeTimedOut``.
    public static func dial(
        host: String,
        port: Int,
        tls: WebSocketClientTLS? = nil,
        path: String = "/",
        configuration: WebSocketTransportConfiguration = .init(),
        group: any EventLoopGroup,
        initializer: @escaping ChannelInitializer
    ) -> EventLoopFuture<any Channel> {
        let loop = group.next()
        let result = loop.makePromise(of: (any Channel).self)
        let isIPAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        // RFC 6455 § 4.1: the Host header carries the host and, when not the default, the port.
        let hostHeader: String
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let defaultPort = tls == nil ? 80 : 443
        hostHeader = port == defaultPort ? hostPart : "\(hostPart):\(port)"

        ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(configuration.handshakeTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        let sni = tls.serverName ?? (isIPAddress ? nil : host)
                        try sync.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: sni))
                    }
                    let upgrader = WebSocketClientUpgrader(configuration: configuration) { channel in
                        let added = addWebSocketStreamHandlers(
                            to: channel,
                            role: .client,
                            configuration: configuration,
                            initializer: initializer
                        )
                        added.whenComplete { outcome in
                            switch outcome {
                            case .success: result.succeed(channel)
                            case .failure(let error):
                                result.fail(error)
                                channel.close(promise: nil)
                            }
                        }
                        return added
                    }
                    try sync.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                    )
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: hostHeader)
                    headers.add(name: "User-Agent", value: "edgeswap")
                    let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                    try sync.addHandler(
                        WebSocketHandshakeHandler(
                            timeout: configuration.handshakeTimeout,
                            logger: configuration.logger,
                            dialer: .init(request: request, result: result)
                        ),
                        name: WebSocketHandlerName.handshake
                    )
                }
            }
            .connect(host: host, port: port)
            .whenFailure { error in result.fail(error) }
        return result.futureResult
    }
}
