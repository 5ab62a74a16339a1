import NIOCore
import NIOWebSocket

/// Serialises RFC 6455 § 5.2 frame headers.
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-------+-+-------------+-------------------------------+
/// |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
/// |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
/// |N|V|V|V|       |S|             |   (if payload len==126/127)   |
/// | |1|2|3|       |K|             |                               |
/// +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
/// |     Extended payload length continued, if payload len == 127  |
/// + - - - - - - - - - - - - - - - +-------------------------------+
/// |                               |Masking-key, if MASK set to 1  |
/// +-------------------------------+-------------------------------+
/// ```
///
/// We always send FIN=1 (one frame per write: the connection is a byte stream and go-libp2p reads
/// any message boundary) and RSV=0 (no extension is ever negotiated).
enum WebSocketFrameHeader {
    /// The largest header: 2 bytes + 8-byte length + 4-byte masking key.
    static let maximumLength = 14

    /// Length of the header for a payload of `payloadLength` bytes.
    static func length(payloadLength: Int, masked: Bool) -> Int {
        let lengthBytes: Int
        switch payloadLength {
        case 0...125: lengthBytes = 0
        case 126...0xFFFF: lengthBytes = 2
        default: lengthBytes = 8
        }
        return 2 + lengthBytes + (masked ? 4 : 0)
    }

    /// Appends a final (FIN=1) frame header for `opcode` to `buffer`.
    static func write(
        opcode: WebSocketOpcode,
        payloadLength: Int,
        maskKey: WebSocketMaskingKey?,
        into buffer: inout ByteBuffer
    ) {
        let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
        buffer.writeInteger(0x80 | UInt8(webSocketOpcode: opcode))
        switch payloadLength {
        case 0...125:
            buffer.writeInteger(maskBit | UInt8(payloadLength))
        case 126...0xFFFF:
            buffer.writeInteger(maskBit | 126)
            buffer.writeInteger(UInt16(payloadLength))
        default:
            // RFC 6455 § 5.2: "the most significant bit MUST be 0" (Int is never above Int64.max).
            buffer.writeInteger(maskBit | 127)
            buffer.writeInteger(UInt64(payloadLength))
        }
        if let maskKey {
            buffer.writeBytes(maskKey)
        }
    }
}
