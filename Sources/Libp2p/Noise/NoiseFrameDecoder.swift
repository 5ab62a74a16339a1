// edgeswap: libp2p Noise framing (libp2p/specs noise/README.md § Wire Format).

import NIOCore

/// Splits an incoming byte stream into Noise messages framed as `u16be noise_message_len ‖ noise_message`.
///
/// noise/README.md: "The `noise_message_len` field stores the length in bytes of the `noise_message`
/// field, encoded as a 16-bit big-endian unsigned integer." Bytes accumulate in one buffer; `nextFrame()`
/// returns nil until a whole frame is present. The announced length is checked against
/// `minimumFrameLength...maximumFrameLength` as soon as the two length bytes arrive, before any of the body
/// is waited for. Frames are handed out as `readSlice`s (no copy); their storage is reused once the caller
/// has dropped them.
public struct NoiseFrameDecoder: Sendable {
    /// The shortest acceptable frame body (16 for transport messages: the AEAD tag).
    public let minimumFrameLength: Int
    /// The longest acceptable frame body (at most 65535, the Noise maximum message length).
    public let maximumFrameLength: Int
    private var buffer: ByteBuffer

    /// Read bytes are discarded once at least this many have accumulated and they are more than half the
    /// buffer, so a long-lived connection neither grows its buffer forever nor memmoves on every frame.
    private static let reclaimThreshold = 64 * 1024

    /// - Parameters:
    ///   - minimumFrameLength: frames announcing fewer bytes are an error.
    ///   - maximumFrameLength: frames announcing more bytes are an error (≤ 65535).
    public init(minimumFrameLength: Int = 0, maximumFrameLength: Int = 65535) {
        precondition(minimumFrameLength >= 0 && minimumFrameLength <= maximumFrameLength)
        precondition(maximumFrameLength <= 65535)
        self.minimumFrameLength = minimumFrameLength
        self.maximumFrameLength = maximumFrameLength
        self.buffer = ByteBuffer()
    }

    /// The number of received bytes not yet returned as frames.
    public var bufferedByteCount: Int { self.buffer.readableBytes }

    /// Takes all readable bytes of `bytes` (its reader index moves to its writer index).
    public mutating func append(_ bytes: inout ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        if self.buffer.readableBytes == 0 {
            // The common case: each read holds whole frames. Adopting the caller's buffer costs no copy.
            self.buffer = bytes
        } else {
            if self.buffer.readerIndex >= Self.reclaimThreshold
                && self.buffer.readerIndex > self.buffer.capacity / 2
            {
                self.buffer.discardReadBytes()
            }
            self.buffer.writeBuffer(&bytes)
        }
        bytes.moveReaderIndex(to: bytes.writerIndex)
    }

    /// Takes the remaining bytes of another decoder (used when the handshake hands over to the transport).
    mutating func append(contentsOf other: NoiseFrameDecoder) {
        var rest = other.buffer
        self.append(&rest)
    }

    /// The next complete frame body, or nil if more bytes are needed.
    public mutating func nextFrame() throws(NoiseError) -> ByteBuffer? {
        guard let length = self.buffer.getInteger(at: self.buffer.readerIndex, as: UInt16.self) else {
            return nil
        }
        let frameLength = Int(length)
        guard frameLength >= self.minimumFrameLength else {
            throw .frameTooShort(length: frameLength, minimum: self.minimumFrameLength)
        }
        guard frameLength <= self.maximumFrameLength else {
            throw .frameTooLong(length: frameLength, maximum: self.maximumFrameLength)
        }
        guard self.buffer.readableBytes >= 2 + frameLength else { return nil }
        self.buffer.moveReaderIndex(forwardBy: 2)
        return self.buffer.readSlice(length: frameLength)
    }

    /// Calls `body` with the next complete frame body's bytes in place (no slice, no copy); returns false
    /// if more bytes are needed.
    mutating func withNextFrame(
        _ body: (UnsafeRawBufferPointer) throws(NoiseError) -> Void
    ) throws(NoiseError) -> Bool {
        guard let length = self.buffer.getInteger(at: self.buffer.readerIndex, as: UInt16.self) else {
            return false
        }
        let frameLength = Int(length)
        guard frameLength >= self.minimumFrameLength else {
            throw .frameTooShort(length: frameLength, minimum: self.minimumFrameLength)
        }
        guard frameLength <= self.maximumFrameLength else {
            throw .frameTooLong(length: frameLength, maximum: self.maximumFrameLength)
        }
        guard self.buffer.readableBytes >= 2 + frameLength else { return false }
        var failure: NoiseError?
        self.buffer.withUnsafeReadableBytes { raw in
            do throws(NoiseError) {
                try body(UnsafeRawBufferPointer(rebasing: raw[2..<(2 + frameLength)]))
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        self.buffer.moveReaderIndex(forwardBy: 2 + frameLength)
        return true
    }

    /// Call at end of input (the connection closed): throws if a partial frame is buffered.
    public func finish() throws(NoiseError) {
        guard self.buffer.readableBytes == 0 else { throw .truncatedFrame(buffered: self.buffer.readableBytes) }
    }
}
