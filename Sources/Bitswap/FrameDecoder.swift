import NIOCore

/// Bitswap stream framing limits.
public enum BitswapLimits {
    /// go-libp2p `network.MessageSizeMax` (`1 << 22`): boxo's inbound `msgio` reader refuses longer
    /// messages, and the spec says "every message ≤4 MiB".
    public static let maxMessageSize = 4 << 20
    /// Spec: "blocks ≤2 MiB MUST be supported"; larger blocks are refused.
    public static let maxBlockSize = 2 << 20
}

/// Incremental `uvarint(length) ‖ message` decoder over one accumulating buffer.
///
/// Feed bytes as they arrive with `append`; `nextMessage()` returns a whole message body (a slice
/// of the accumulated buffer, no copy) or nil until one is complete. The declared length is
/// checked against the cap as soon as its varint is complete, before any body is buffered.
public struct BitswapFrameDecoder: Sendable {
    private var buffer: ByteBuffer
    private let maxMessageSize: Int

    public init(maxMessageSize: Int = BitswapLimits.maxMessageSize) {
        self.buffer = ByteBuffer()
        self.maxMessageSize = maxMessageSize
    }

    /// Bytes received but not yet returned as a message.
    public var bufferedBytes: Int { buffer.readableBytes }

    /// Adds received bytes.
    public mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        if buffer.readableBytes == 0 {
            // Nothing pending: adopt the inbound buffer instead of copying it.
            buffer = bytes
            return
        }
        // Reclaim consumed space before growing.
        if buffer.readerIndex > 0 && buffer.readerIndex >= buffer.readableBytes { buffer.discardReadBytes() }
        buffer.writeBuffer(&bytes)
    }

    /// The next complete message body, or nil if more bytes are needed.
    public mutating func nextMessage() throws(BitswapDecodeError) -> ByteBuffer? {
        var length: UInt64 = 0
        var shift: UInt64 = 0
        var index = buffer.readerIndex
        let end = buffer.writerIndex
        var complete = false
        for count in 0..<10 {
            guard index < end, let byte = buffer.getInteger(at: index, as: UInt8.self) else { return nil }
            index += 1
            if count == 9 && byte > 1 { throw .overlongVarint(field: "frame length") }
            length |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { complete = true; break }
            shift += 7
            // Any varint past 4 bytes already exceeds 4 MiB once complete; refuse early.
            if length > UInt64(maxMessageSize) { throw .messageTooLarge(declared: length, limit: maxMessageSize) }
        }
        guard complete else { throw .overlongVarint(field: "frame length") }
        guard length <= UInt64(maxMessageSize) else {
            throw .messageTooLarge(declared: length, limit: maxMessageSize)
        }
        let headerLength = index - buffer.readerIndex
        guard buffer.readableBytes - headerLength >= Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: headerLength)
        return buffer.readSlice(length: Int(length))
    }
}
