import Logging
import NIOCore
import NIOWebSocket

/// Turns an upgraded WebSocket connection into a plain byte stream for the libp2p layers above
/// (multistream-select, then Noise).
///
/// Sits right after swift-nio's `WebSocketFrameDecoder`. Inbound: the payload of every text, binary or
/// continuation frame is forwarded as a `ByteBuffer` (unmasked when we are the server); ping is answered
/// with pong; a close is answered with a close and the channel is closed (1000/1005 are a clean EOF, any
/// other status is reported with `fireErrorCaught`); a frame above `maxFrameSize` closes with 1009.
/// Outbound: every `ByteBuffer` written becomes one final binary frame, masked with a fresh random key
/// when we are the client (RFC 6455 § 5.3: "The masking key … MUST be derived from a strong source of
/// entropy"), unmasked when we are the server. The handler encodes frames itself (no
/// `WebSocketFrameEncoder`) so that client masking is one fused copy-and-XOR pass into a per-connection
/// scratch buffer, and server frames are the untouched payload behind a small header buffer.
///
/// All decisions are made by ``WebSocketStreamStateMachine``; this class only performs I/O.
final class WebSocketStreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var stateMachine: WebSocketStreamStateMachine
    private let logger: Logger
    /// Client role: reused for header + masked payload whenever the previous frame's write has completed
    /// (the buffer is then uniquely owned again and `clear` keeps its storage).
    private var scratch: ByteBuffer?
    /// Frames larger than this are not kept in `scratch`, so one burst does not pin memory.
    private static let maximumRetainedScratch = 256 * 1024

    init(role: WebSocketStreamStateMachine.Role, maxFrameSize: Int, logger: Logger) {
        self.stateMachine = WebSocketStreamStateMachine(role: role, maxFrameSize: maxFrameSize)
        self.logger = logger
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        let opcode = frame.opcode
        var closePayload: ByteBuffer? = nil
        if opcode == .connectionClose {
            closePayload = self.unmasked(frame, allocator: context.channel.allocator)
        }
        let action = self.stateMachine.receivedFrame(
            opcode: opcode,
            fin: frame.fin,
            reservedBitsSet: frame.rsv1 || frame.rsv2 || frame.rsv3,
            masked: frame.maskKey != nil,
            closePayload: closePayload
        )
        switch action {
        case .deliver:
            guard frame.length > 0 else { return }
            context.fireChannelRead(Self.wrapInboundOut(self.unmasked(frame, allocator: context.channel.allocator)))
        case .ignore:
            break
        case .sendPong:
            let payload = self.unmasked(frame, allocator: context.channel.allocator)
            self.writeFrame(opcode: .pong, payload: payload, context: context, promise: nil)
            context.flush()
        case .replyCloseAndClose(let replyCode, let error):
            self.logger.debug("websocket close received", metadata: ["error": "\(error.map { "\($0)" } ?? "none")"])
            if let error {
                context.fireErrorCaught(error)
            }
            self.sendCloseThenClose(code: replyCode, reason: "", context: context, promise: nil)
        case .failConnection(let code, let error):
            self.fail(code: code, error: error, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Errors thrown by WebSocketFrameDecoder arrive here, wrapped by ByteToMessageHandler or not.
        if let decoderError = error as? NIOWebSocketError {
            let action = self.stateMachine.decoderFailed(decoderError)
            if case .failConnection(let code, let transportError) = action {
                self.fail(code: code, error: transportError, context: context)
            }
            return
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stateMachine.channelInactive()
        self.scratch = nil
        context.fireChannelInactive()
    }

    // MARK: - Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let payload = Self.unwrapOutboundIn(data)
        switch self.stateMachine.write() {
        case .sendBinary:
            // An empty write would become an empty frame that carries nothing; skip it.
            guard payload.readableBytes > 0 else {
                promise?.succeed()
                return
            }
            self.writeFrame(opcode: .binary, payload: payload, context: context, promise: promise)
        case .fail(let error):
            promise?.fail(error)
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch self.stateMachine.closeRequested() {
        case .sendCloseThenClose:
            self.sendCloseThenClose(code: WebSocketStreamStateMachine.CloseCode.normal, reason: "", context: context, promise: promise)
        case .close:
            context.close(mode: mode, promise: promise)
        }
    }

    // MARK: - I/O helpers

    /// The frame payload with the client's mask removed. Unmasked frames are returned as the decoder's
    /// slice (no copy); masked ones are copied once while unmasking (the slice shares storage with the
    /// decoder's buffer, so masking in place would copy anyway).
    private func unmasked(_ frame: WebSocketFrame, allocator: ByteBufferAllocator) -> ByteBuffer {
        let data = frame.data
        guard let key = frame.maskKey else { return data }
        var out = allocator.buffer(capacity: data.readableBytes)
        WebSocketMasking.appendMasked(data, key: key, to: &out)
        return out
    }

    private func writeFrame(
        opcode: WebSocketOpcode,
        payload: ByteBuffer,
        context: ChannelHandlerContext,
        promise: EventLoopPromise<Void>?
    ) {
        let length = payload.readableBytes
        switch self.stateMachine.role {
        case .server:
            var header = context.channel.allocator.buffer(capacity: WebSocketFrameHeader.maximumLength)
            WebSocketFrameHeader.write(opcode: opcode, payloadLength: length, maskKey: nil, into: &header)
            if length == 0 {
                context.write(Self.wrapOutboundOut(header), promise: promise)
            } else {
                context.write(Self.wrapOutboundOut(header), promise: nil)
                context.write(Self.wrapOutboundOut(payload), promise: promise)
            }
        case .client:
            let key = WebSocketMaskingKey.random()
            let needed = WebSocketFrameHeader.length(payloadLength: length, masked: true) + length
            var out: ByteBuffer
            if var reused = self.scratch {
                self.scratch = nil
                // Keeps the storage when no earlier write still holds it; otherwise allocates.
                reused.clear(minimumCapacity: needed)
                out = reused
            } else {
                out = context.channel.allocator.buffer(capacity: needed)
            }
            WebSocketFrameHeader.write(opcode: opcode, payloadLength: length, maskKey: key, into: &out)
            WebSocketMasking.appendMasked(payload, key: key, to: &out)
            if out.capacity <= Self.maximumRetainedScratch {
                self.scratch = out
            }
            context.write(Self.wrapOutboundOut(out), promise: promise)
        }
    }

    private func sendCloseThenClose(
        code: UInt16?,
        reason: String,
        context: ChannelHandlerContext,
        promise: EventLoopPromise<Void>?
    ) {
        var body = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        if let code {
            body.writeInteger(code)
            body.writeString(reason)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        self.writeFrame(opcode: .connectionClose, payload: body, context: context, promise: written)
        context.flush()
        // RFC 6455 § 7.1.1: after the close frames the server closes TCP first; we close once our close
        // frame is on the wire, as go-libp2p does, rather than waiting for the peer.
        written.futureResult.assumeIsolated().whenComplete { _ in
            context.close(mode: .all, promise: promise)
        }
    }

    private func fail(code: UInt16, error: WebSocketTransportError, context: ChannelHandlerContext) {
        self.logger.notice(
            "closing websocket connection",
            metadata: [
                "code": "\(code)", "reason": "\(error)",
                "remote": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")",
            ]
        )
        context.fireErrorCaught(error)
        // Close reasons are limited to 123 bytes (125-byte control payload minus the code).
        let reason = String(decoding: String(describing: error).utf8.prefix(123), as: UTF8.self)
        self.sendCloseThenClose(code: code, reason: reason, context: context, promise: nil)
    }
}

@available(*, unavailable)
extension WebSocketStreamHandler: Sendable {}
