import NIOCore

// multistream-select 1.0 framing (multiformats/multistream-select README, libp2p/specs connections/README.md):
//
//     message = uvarint(len(msg) + 1) ‖ msg ‖ '\n'
//
// go-multistream caps a token at 1024 bytes ("ErrTooLarge") and rejects a token that does not end
// in '\n'; this file applies both rules before any byte of the token body is buffered.

/// Well-known multistream-select tokens.
public enum Multistream {
    /// The multistream-select 1.0 header: "/multistream/1.0.0".
    public static let header = "/multistream/1.0.0"
    /// "not available": the listener's answer to a protocol it does not speak.
    public static let notAvailable = "na"
    /// The optional listing request.
    public static let list = "ls"
    /// go-multistream's cap on one token, including the trailing newline.
    public static let defaultMaxTokenLength = 1024

    /// Appends one framed message (`uvarint(len+1) ‖ token ‖ '\n'`) to `buffer`.
    public static func writeMessage(_ token: String, into buffer: inout ByteBuffer) {
        let length = token.utf8.count + 1
        writeUVarint(UInt64(length), into: &buffer)
        buffer.writeString(token)
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    /// Appends an unsigned LEB128 varint to `buffer` without intermediate arrays.
    static func writeUVarint(_ value: UInt64, into buffer: inout ByteBuffer) {
        var v = value
        while v >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.writeInteger(UInt8(v))
    }
}

/// Errors of multistream-select negotiation. Every case aborts the negotiation; the caller closes
/// the connection or stream.
public enum MultistreamError: Error, Equatable, Sendable {
    /// A token's length prefix exceeds the cap (go-multistream: `ErrTooLarge`, 1024 bytes).
    case tokenTooLarge(length: UInt64, limit: Int)
    /// A token of length zero: it cannot even hold the mandatory newline.
    case emptyToken
    /// The length prefix is not a minimal varint.
    case nonMinimalLengthPrefix
    /// The token does not end in '\n' (go-multistream: "message did not have trailing newline").
    case missingTrailingNewline
    /// The first message was not "/multistream/1.0.0" ("anything other than the header aborts").
    case unexpectedHeader(String)
    /// The listener answered a proposal with something other than the echo or "na".
    case unexpectedResponse(proposed: String, received: String)
    /// Every protocol the dialer proposed was answered with "na".
    case allProtocolsRejected([String])
    /// A lazy dialer sent data with its only proposal and the listener answered "na".
    case lazyProtocolRejected(String)
    /// The dialer was created with no protocol to propose.
    case noProtocolsToPropose
    /// An event arrived after negotiation had finished or failed.
    case negotiationFinished
}

/// Incremental reader of multistream tokens over one accumulating buffer.
///
/// The length prefix is checked against the cap as soon as its bytes are known, so a peer cannot
/// make us buffer more than `maxTokenLength + 2` bytes per token.
struct MultistreamTokenReader {
    /// Bytes received but not yet consumed.
    var buffer: ByteBuffer
    let maxTokenLength: Int

    init(maxTokenLength: Int) {
        self.buffer = ByteBuffer()
        self.maxTokenLength = maxTokenLength
    }

    /// Adds received bytes, without copying when nothing is pending.
    mutating func append(_ bytes: ByteBuffer) {
        self.buffer.accumulate(bytes)
    }

    /// The next whole token without its newline, or nil if more bytes are needed.
    mutating func nextToken() throws(MultistreamError) -> String? {
        // Decode the varint byte by byte so an oversized prefix fails before the body arrives.
        var value: UInt64 = 0
        var shift: UInt64 = 0
        var index = self.buffer.readerIndex
        let end = self.buffer.writerIndex
        var prefixLength = 0
        while true {
            guard index < end else { return nil }
            let byte = self.buffer.getInteger(at: index, as: UInt8.self)!
            index += 1
            prefixLength += 1
            value |= UInt64(byte & 0x7f) << shift
            if value > UInt64(self.maxTokenLength) {
                throw .tokenTooLarge(length: value, limit: self.maxTokenLength)
            }
            if byte & 0x80 == 0 {
                if byte == 0 && prefixLength > 1 { throw .nonMinimalLengthPrefix }
                break
            }
            shift += 7
        }
        guard value > 0 else { throw .emptyToken }
        let length = Int(value)
        guard end - index >= length else { return nil }
        guard self.buffer.getInteger(at: index + length - 1, as: UInt8.self) == UInt8(ascii: "\n") else {
            throw .missingTrailingNewline
        }
        let token = self.buffer.getString(at: index, length: length - 1) ?? ""
        self.buffer.moveReaderIndex(to: index + length)
        return token
    }

    /// Everything not yet consumed (application bytes that followed the final token).
    mutating func takeRemaining() -> ByteBuffer {
        let rest = self.buffer
        self.buffer = ByteBuffer()
        return rest
    }
}

/// What a negotiation step asks the caller to do.
public enum MultistreamAction: Equatable, Sendable {
    /// Keep reading; write `write` (if non-nil) to the peer first.
    case needMoreData(write: ByteBuffer?)
    /// Negotiation finished. Write `write` (if non-nil) to the peer, then speak `protocol`;
    /// `leftover` holds bytes the peer sent after the final token (pipelined application data),
    /// handed over untouched and possibly empty.
    case selected(protocol: String, write: ByteBuffer?, leftover: ByteBuffer)
}
