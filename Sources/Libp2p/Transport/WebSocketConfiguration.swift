import Logging
import NIOCore
import NIOSSL

/// Settings shared by the WebSocket listener and dialer.
public struct WebSocketTransportConfiguration: Sendable {
    /// Largest inbound frame accepted, in bytes; a larger frame closes the connection with 1009.
    ///
    /// go-libp2p's Noise writes one WebSocket message per Noise frame, up to 2 + 65535 bytes, so the
    /// swift-nio default of 16 KiB breaks interop. The default here is 1 MiB.
    public var maxFrameSize: Int
    /// Time allowed from TCP accept/connect until the WebSocket upgrade completes, TLS handshake
    /// included. go-libp2p uses 15 s (`p2p/transport/websocket/listener.go`).
    public var handshakeTimeout: TimeAmount
    /// Body of the `200 text/plain` answer to a plain `GET /` (e.g. `"edgeswap 0.1 /ip4/…/wss/p2p/…"`);
    /// when nil, `GET /` gets 404 like every other non-upgrade request.
    public var banner: String?
    /// Receives connection-level events (protocol violations, oversize frames, timeouts).
    public var logger: Logger
    /// TCP keepalive on accepted connections: the kernel probes a connection silent for this long (then every
    /// 10 s, 3 probes) and closes it when the peer's machine is gone. A peer that vanished without a FIN (a
    /// laptop closed, a NAT mapping dropped) would otherwise hold its connection and its Bitswap reply stream
    /// until the connection limit runs out. nil leaves the system default (keepalive off).
    public var tcpKeepaliveIdle: TimeAmount?

    public init(
        maxFrameSize: Int = 1 << 20,
        handshakeTimeout: TimeAmount = .seconds(15),
        banner: String? = nil,
        tcpKeepaliveIdle: TimeAmount? = .seconds(60),
        logger: Logger = Logger(label: "edgeswap.libp2p.websocket")
    ) {
        precondition(maxFrameSize > 0 && maxFrameSize <= Int(UInt32.max), "maxFrameSize out of range")
        self.maxFrameSize = maxFrameSize
        self.handshakeTimeout = handshakeTimeout
        self.banner = banner
        self.tcpKeepaliveIdle = tcpKeepaliveIdle
        self.logger = logger
    }
}

/// TLS settings for a `wss` listener.
public struct WebSocketServerTLS: Sendable {
    /// The server TLS context (certificate chain and key).
    public let context: NIOSSLContext

    /// Wraps an existing context.
    public init(context: NIOSSLContext) {
        self.context = context
    }

    /// Loads a PEM certificate chain (leaf first) and a PEM private key.
    public init(certificateChainFile: String, privateKeyFile: String) throws {
        let chain = try NIOSSLCertificate.fromPEMFile(certificateChainFile).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: privateKeyFile, format: .pem)
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        self.context = try NIOSSLContext(configuration: configuration)
    }
}

/// TLS settings for a `wss` dialer.
public struct WebSocketClientTLS: Sendable {
    /// The client TLS context (trust roots).
    public let context: NIOSSLContext
    /// Name sent in SNI and checked against the certificate. When nil the dialed host is used if it is a
    /// DNS name; for an IP address no SNI is sent and the certificate must list that IP.
    public var serverName: String?

    /// Wraps an existing context.
    public init(context: NIOSSLContext, serverName: String? = nil) {
        self.context = context
        self.serverName = serverName
    }

    /// Full certificate and hostname verification against the PEM roots in `trustRootsFile`, or the
    /// system roots when it is nil.
    public init(trustRootsFile: String? = nil, serverName: String? = nil) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let trustRootsFile {
            configuration.trustRoots = .file(trustRootsFile)
        }
        self.context = try NIOSSLContext(configuration: configuration)
        self.serverName = serverName
    }
}
