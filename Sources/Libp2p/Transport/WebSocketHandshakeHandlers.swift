import Logging
import NIOCore
import NIOHTTP1

/// Guards the TLS + HTTP upgrade phase of one connection; removed as soon as the upgrade completes.
///
/// - Closes the connection when the upgrade has not completed within the handshake timeout (go-libp2p:
///   15 s), so half-open or idle sockets cannot pile up.
/// - Dialer only: sends the upgrade request once connected and fails the dial promise with the first
///   error seen (TLS failure, rejected upgrade, timeout) when the connection closes before the upgrade.
final class WebSocketHandshakeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = HTTPClientRequestPart

    /// What the dialer needs: the request to send and the promise to fail if the upgrade never happens.
    struct Dialer {
        var request: HTTPRequestHead
        var result: EventLoopPromise<any Channel>
    }

    private let timeout: TimeAmount
    private let logger: Logger
    private let dialer: Dialer?
    private var timer: Scheduled<Void>?
    private var firstError: (any Error)?

    init(timeout: TimeAmount, logger: Logger, dialer: Dialer?) {
        self.timeout = timeout
        self.logger = logger
        self.dialer = dialer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) { [self] in
            self.logger.notice(
                "websocket handshake timed out",
                metadata: ["remote": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"]
            )
            self.record(WebSocketTransportError.handshakeTimedOut)
            context.close(promise: nil)
        }
        if context.channel.isActive {
            self.sendRequest(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.sendRequest(context: context)
        context.fireChannelActive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.record(error)
        if self.dialer != nil {
            // Dialer: any error before the upgrade (TLS, bad HTTP, refused upgrade) ends the attempt.
            context.close(promise: nil)
        } else {
            // Listener: NIO's HTTP error handler already answered malformed requests with 400 and
            // closes; a refused upgrade falls through to the fallback handler, which answers and closes.
            self.logger.debug("websocket handshake error", metadata: ["error": "\(error)"])
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        self.dialer?.result.fail(self.firstError ?? WebSocketTransportError.closedDuringHandshake)
        context.fireChannelInactive()
    }

    private var requestSent = false

    private func sendRequest(context: ChannelHandlerContext) {
        guard let dialer = self.dialer, !self.requestSent else { return }
        self.requestSent = true
        context.write(Self.wrapOutboundOut(.head(dialer.request)), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func record(_ error: any Error) {
        if self.firstError == nil {
            self.firstError = error
        }
    }
}

@available(*, unavailable)
extension WebSocketHandshakeHandler: Sendable {}

/// Answers plain HTTP requests that are not WebSocket upgrades, then closes: `200 text/plain` with the
/// banner for `GET /` when a banner is configured, `400` for a malformed upgrade attempt, else `404`.
final class WebSocketHTTPFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let banner: String?
    private var response: (status: HTTPResponseStatus, body: String)?

    init(banner: String?) {
        self.banner = banner
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.response = self.respond(to: head)
        case .body:
            break
        case .end:
            guard let (status, body) = self.response else { return }
            self.response = nil
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            headers.add(name: "Content-Length", value: "\(body.utf8.count)")
            headers.add(name: "Connection", value: "close")
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }

    private func respond(to head: HTTPRequestHead) -> (status: HTTPResponseStatus, body: String) {
        if head.headers["Upgrade"].contains(where: { $0.lowercased().contains("websocket") }) {
            // Reaching here means the upgrader refused it (wrong method, version or missing key).
            return (.badRequest, "bad websocket upgrade request\n")
        }
        if let banner = self.banner, head.method == .GET, head.uri == "/" {
            return (.ok, banner.hasSuffix("\n") ? banner : banner + "\n")
        }
        return (.notFound, "not found\n")
    }
}

@available(*, unavailable)
extension WebSocketHTTPFallbackHandler: Sendable {}
