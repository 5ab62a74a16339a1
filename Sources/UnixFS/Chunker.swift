/// Splits a byte stream into fixed-size chunks: kubo's default `size-262144` splitter.
///
/// Bytes may arrive in pieces of any size; every chunk but the last is exactly `chunkSize` bytes (boxo's
/// `sizeSplitterv2` fills each chunk with `io.ReadFull`, so the cut points depend only on the byte offsets,
/// never on how the input was read).
public struct FixedSizeChunker: Sendable {
    /// kubo's default chunk size, 256 KiB (`chunker.DefaultBlockSize = 1024 * 256`).
    public static let defaultChunkSize = 262_144

    public let chunkSize: Int
    private var buffer: [UInt8] = []

    /// - Precondition: `chunkSize > 0`.
    public init(chunkSize: Int = FixedSizeChunker.defaultChunkSize) {
        precondition(chunkSize > 0, "chunk size must be positive")
        self.chunkSize = chunkSize
        buffer.reserveCapacity(chunkSize)
    }

    /// Adds bytes; returns every chunk they completed, in order.
    public mutating func push(_ bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
        var chunks: [[UInt8]] = []
        var offset = 0
        while offset < bytes.count {
            let take = min(chunkSize - buffer.count, bytes.count - offset)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + take]))
            offset += take
            if buffer.count == chunkSize {
                chunks.append(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        return chunks
    }

    /// Ends the stream: returns the final short chunk, or nil if the data ended on a chunk boundary.
    public mutating func finish() -> [UInt8]? {
        guard !buffer.isEmpty else { return nil }
        defer { buffer = [] }
        return buffer
    }

    /// The chunks of an in-memory buffer (slices, no copies). Empty input gives no chunks.
    public static func chunks(of bytes: [UInt8], chunkSize: Int = defaultChunkSize) -> [ArraySlice<UInt8>] {
        precondition(chunkSize > 0, "chunk size must be positive")
        return stride(from: 0, to: bytes.count, by: chunkSize).map { bytes[$0..<min($0 + chunkSize, bytes.count)] }
    }
}
