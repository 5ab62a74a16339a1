import Crypto
import Logging
import Multiformats
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// RFC 6455 § 4.2.2 / § 1.3 handshake key derivation.
enum WebSocketHandshake {
    /// RFC 6455 § 1.3: "the server has to take the value … and concatenate this with the Globally
    /// Unique Identifier (GUID, [RFC4122]) "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" … A SHA-1 hash
    /// (160 bits) [FIPS.180-3], base64-encoded (see Section 4 of [RFC4648]), of this concatenation is then
    /// returned in the server's handshake."
    static func acceptValue(forKey key: String) -> String {
        let digest = Insecure.SHA1.hash(data: Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
        // A 20-byte digest is 27 base64 characters plus one "=" of padding (multibase base64 is unpadded).
        return Multibase.base64.encodeWithoutPrefix(Array(digest)) + "="
    }
}

/// Names of the per-connection helper handlers, so the upgrade can remove them.
enum WebSocketHandlerName {
    static let handshake = "edgeswap.websocket.handshake"
    static let fallback = "edgeswap.websocket.http-fallback"
}

/// Adds the byte-stream pipeline after a completed upgrade: frame decoder, ``WebSocketStreamHandler``,
/// then the caller's handlers.
func addWebSocketStreamHandlers(
    to channel: any Channel,
    role: WebSocketStreamStateMachine.Role,
    configuration: WebSocketTransportConfiguration,
    initializer: @escaping WebSocketTransport.ChannelInitializer
) -> EventLoopFuture<Void> {
    channel.eventLoop.makeCompletedFuture {
        let sync = channel.pipeline.syncOperations
        // The handshake timer and HTTP fallback have done their job; the peer may already have sent
        // frames, which the upgrade handler buffers and replays once we return.
        for name in [WebSocketHandlerName.handshake, WebSocketHandlerName.fallback] {
            if let context = try? sync.context(name: name) {
                sync.removeHandler(context: context, promise: nil)
            }
        }
        try sync.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: configuration.maxFrameSize)))
        try sync.addHandler(
            WebSocketStreamHandler(role: role, maxFrameSize: configuration.maxFrameSize, logger: configuration.logger)
        )
    }.flatMap {
        initializer(channel)
    }
}

/// Server side of the upgrade. Unlike `NIOWebSocketServerUpgrader` it accepts every path (go-libp2p
/// dials `/`, Hoverboard's clients `/p2p/<id>`) and installs our own stream handler instead of
/// swift-nio's frame encoder.
final class WebSocketServerUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let supportedProtocol = "websocket"
    let requiredUpgradeHeaders: [String] = []
    private let configuration: WebSocketTransportConfiguration
    private let initializer: WebSocketTransport.ChannelInitializer

    init(configuration: WebSocketTransportConfiguration, initializer: @escaping WebSocketTransport.ChannelInitializer) {
        self.configuration = configuration
        self.initializer = initializer
    }

    func buildUpgradeResponse(
        channel: any Channel,
        upgradeRequest: HTTPRequestHead,
        initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        // RFC 6455 § 4.2.1: the request is "An HTTP/1.1 or higher GET request" with "A
        // |Sec-WebSocket-Key| header field" and "A |Sec-WebSocket-Version| header field, with a value of 13".
        let keys = upgradeRequest.headers["Sec-WebSocket-Key"]
        let versions = upgradeRequest.headers["Sec-WebSocket-Version"]
        guard upgradeRequest.method == .GET, keys.count == 1, !keys[0].isEmpty,
            versions.count == 1, versions[0] == "13"
        else {
            return channel.eventLoop.makeFailedFuture(NIOWebSocketUpgradeError.invalidUpgradeHeader)
        }
        var headers = initialResponseHeaders
        headers.replaceOrAdd(name: "Upgrade", value: "websocket")
        headers.replaceOrAdd(name: "Connection", value: "Upgrade")
        headers.add(name: "Sec-WebSocket-Accept", value: WebSocketHandshake.acceptValue(forKey: keys[0]))
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        self.configuration.logger.trace("websocket upgrade", metadata: ["uri": "\(upgradeRequest.uri)"])
        return addWebSocketStreamHandlers(
            to: context.channel,
            role: .server,
            configuration: self.configuration,
            initializer: self.initializer
        )
    }
}

/// Client side of the upgrade: adds the key and version headers, checks `Sec-WebSocket-Accept`.
final class WebSocketClientUpgrader: NIOHTTPClientProtocolUpgrader, Sendable {
    let supportedProtocol = "websocket"
    let requiredUpgradeHeaders: [String] = []
    private let requestKey: String
    private let configuration: WebSocketTransportConfiguration
    private let onUpgrade: @Sendable (any Channel) -> EventLoopFuture<Void>

    init(configuration: WebSocketTransportConfiguration, onUpgrade: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) {
        // RFC 6455 § 4.1: "a nonce consisting of a randomly selected 16-byte value that has been
        // base64-encoded".
        self.requestKey = NIOWebSocketClientUpgrader.randomRequestKey()
        self.configuration = configuration
        self.onUpgrade = onUpgrade
    }

    func addCustom(upgradeRequestHeaders: inout HTTPHeaders) {
        upgradeRequestHeaders.add(name: "Sec-WebSocket-Key", value: self.requestKey)
        upgradeRequestHeaders.add(name: "Sec-WebSocket-Version", value: "13")
    }

    func shouldAllowUpgrade(upgradeResponse: HTTPResponseHead) -> Bool {
        // RFC 6455 § 4.1: "If the |Sec-WebSocket-Accept| contains a value other than the base64-encoded
        // SHA-1 of the concatenation of the |Sec-WebSocket-Key| … the client MUST _Fail the WebSocket
        // Connection_."
        let accept = upgradeResponse.headers["Sec-WebSocket-Accept"]
        return accept.count == 1 && accept[0] == WebSocketHandshake.acceptValue(forKey: self.requestKey)
    }

    func upgrade(context: ChannelHandlerContext, upgradeResponse: HTTPResponseHead) -> EventLoopFuture<Void> {
        self.onUpgrade(context.channel)
    }
}
