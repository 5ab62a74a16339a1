import NIOCore
import NIOWebSocket

/// The sans-IO core of ``WebSocketStreamHandler``: turns decoded RFC 6455 frames and local requests into
/// actions, and tracks the little state a byte-stream WebSocket needs.
///
/// libp2p's WebSocket transport (`libp2p/specs: websockets`) carries one byte stream: go-libp2p writes
/// every `Write` as one binary message and reads messages of any type as bytes, treating close codes
/// 1000 and 1005 as EOF. So data frames of any data opcode are just bytes here and message boundaries
/// carry no meaning; the only message-level state kept is whether a fragmented message is open, because
/// RFC 6455 § 5.4 makes interleaving data messages a protocol error.
///
/// ```
///   open(inMessage: false) ──text/binary FIN=0──▶ open(inMessage: true)
///          ▲                                           │
///          └──────────── continuation FIN=1 ───────────┘
///   open(*) ──close received / failure / local close──▶ closed
/// ```
struct WebSocketStreamStateMachine {
    /// Which side of the connection we are; it decides which direction is masked.
    enum Role: Sendable {
        /// We accepted the connection: inbound frames must be masked, outbound frames must not.
        case server
        /// We dialed: outbound frames are masked, inbound frames must not be.
        case client
    }

    /// What the handler must do with an inbound frame.
    enum InboundAction: Equatable {
        /// Forward the (unmasked) payload up the pipeline as stream bytes.
        case deliver
        /// Deliver nothing (empty data frame, or a pong).
        case ignore
        /// Answer a ping with a pong carrying the same application data.
        case sendPong
        /// The peer closed: send `replyCode` (nil = empty close body), then close the channel. `error` is
        /// nil for a clean EOF (1000/1005) and set when the peer closed with any other status.
        case replyCloseAndClose(replyCode: UInt16?, error: WebSocketTransportError?)
        /// The peer misbehaved: send a close frame with `code`, then close the channel and report `error`.
        case failConnection(code: UInt16, error: WebSocketTransportError)
    }

    /// What the handler must do with a local write.
    enum WriteAction: Equatable {
        case sendBinary
        case fail(WebSocketTransportError)
    }

    /// What the handler must do when the upper layer closes the channel.
    enum CloseAction: Equatable {
        /// Send a close frame with status 1000, then close the socket.
        case sendCloseThenClose
        /// The close handshake is already under way: just close the socket.
        case close
    }

    private enum State {
        case open(inMessage: Bool)
        case closed
    }

    /// RFC 6455 § 7.4.1 status codes used here.
    enum CloseCode {
        static let normal: UInt16 = 1000
        static let protocolError: UInt16 = 1002
        static let noStatusReceived: UInt16 = 1005
        static let messageTooBig: UInt16 = 1009
    }

    let role: Role
    let maxFrameSize: Int
    private var state: State = .open(inMessage: false)

    init(role: Role, maxFrameSize: Int) {
        self.role = role
        self.maxFrameSize = maxFrameSize
    }

    /// Whether the connection may still carry data.
    var isOpen: Bool {
        if case .open = self.state { return true }
        return false
    }

    /// Handles one decoded frame. `closePayload` is the unmasked application data, only read for close
    /// frames (status code and reason).
    mutating func receivedFrame(
        opcode: WebSocketOpcode,
        fin: Bool,
        reservedBitsSet: Bool,
        masked: Bool,
        closePayload: ByteBuffer?
    ) -> InboundAction {
        guard case .open(let inMessage) = self.state else {
            // After our close frame went out nothing the peer sends matters.
            return .ignore
        }
        // RFC 6455 § 5.2 RSV1-3: "MUST be 0 unless an extension is negotiated that defines meanings for
        // non-zero values." We never negotiate extensions.
        if reservedBitsSet {
            return self.fail(.protocolError, "reserved bit set without a negotiated extension")
        }
        // RFC 6455 § 5.1: "The server MUST close the connection upon receiving a frame that is not
        // masked" and "A client MUST close a connection if it detects a masked frame."
        switch (self.role, masked) {
        case (.server, false):
            return self.fail(.protocolError, "client frame is not masked")
        case (.client, true):
            return self.fail(.protocolError, "server frame is masked")
        default:
            break
        }

        switch opcode {
        case .text, .binary:
            // RFC 6455 § 5.4: "the fragments of one message MUST NOT be interleaved between the fragments
            // of another message". Text is accepted as bytes: this is a byte stream, not UTF-8.
            if inMessage {
                return self.fail(.protocolError, "new data message started inside a fragmented message")
            }
            self.state = .open(inMessage: !fin)
            return .deliver
        case .continuation:
            if !inMessage {
                return self.fail(.protocolError, "continuation frame without a message to continue")
            }
            self.state = .open(inMessage: !fin)
            return .deliver
        case .ping:
            // RFC 6455 § 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            // response … The Pong frame MUST have identical Application data."
            return .sendPong
        case .pong:
            // RFC 6455 § 5.5.3: "A response to an unsolicited Pong frame is not expected."
            return .ignore
        case .connectionClose:
            return self.receivedClose(payload: closePayload)
        default:
            // RFC 6455 § 5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
            // WebSocket Connection_."
            return self.fail(.protocolError, "unknown opcode \(Int(webSocketOpcode: opcode))")
        }
    }

    /// The frame decoder rejected the input (its checks run before the payload is buffered).
    mutating func decoderFailed(_ error: NIOWebSocketError) -> InboundAction {
        guard self.isOpen else { return .ignore }
        switch error {
        case .invalidFrameLength:
            self.state = .closed
            // RFC 6455 § 7.4.1: "1009 indicates that an endpoint is terminating the connection because it
            // has received a message that is too big for it to process."
            return .failConnection(code: CloseCode.messageTooBig, error: .frameTooLarge(limit: self.maxFrameSize))
        case .fragmentedControlFrame:
            return self.fail(.protocolError, "fragmented control frame")
        case .multiByteControlFrameLength:
            return self.fail(.protocolError, "control frame payload longer than 125 bytes")
        }
    }

    /// A local write of stream bytes.
    func write() -> WriteAction {
        self.isOpen ? .sendBinary : .fail(.writeAfterClose)
    }

    /// The upper layer asked to close the whole channel.
    mutating func closeRequested() -> CloseAction {
        guard self.isOpen else { return .close }
        self.state = .closed
        return .sendCloseThenClose
    }

    /// The socket went away.
    mutating func channelInactive() {
        self.state = .closed
    }

    private enum Failure { case protocolError }

    private mutating func fail(_ kind: Failure, _ rule: String) -> InboundAction {
        self.state = .closed
        return .failConnection(code: CloseCode.protocolError, error: .protocolViolation(rule))
    }

    private mutating func receivedClose(payload: ByteBuffer?) -> InboundAction {
        self.state = .closed
        guard var payload, payload.readableBytes > 0 else {
            // RFC 6455 § 7.1.5: no status code present means 1005; go-libp2p reads that as EOF.
            return .replyCloseAndClose(replyCode: nil, error: nil)
        }
        guard let code = payload.readInteger(as: UInt16.self) else {
            // RFC 6455 § 5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
            // unsigned integer".
            return .failConnection(code: CloseCode.protocolError, error: .protocolViolation("close frame body of 1 byte"))
        }
        let reason = payload.readString(length: payload.readableBytes) ?? ""
        if code == CloseCode.normal {
            return .replyCloseAndClose(replyCode: CloseCode.normal, error: nil)
        }
        // RFC 6455 § 5.5.1: "When sending a Close frame in response, the endpoint typically echos the
        // status code it received." 1005/1006/1015 must never be sent; echo only codes that may be.
        let echo: UInt16? = (code == 1005 || code == 1006 || code == 1015) ? nil : code
        return .replyCloseAndClose(replyCode: echo, error: .closedByPeer(code: code, reason: reason))
    }
}
