/// The fixed parts of a CARv2 file (ipld/ipld `specs/transport/car/carv2`):
/// `pragma (11 B) ‖ header (40 B) ‖ [padding] ‖ CARv1 payload ‖ [padding] ‖ [uvarint index codec ‖ index]`.
public enum CARv2 {
    /// "The pragma is a fixed 11 byte value": a CARv1 header `{version: 2}` with no roots.
    public static let pragma: [UInt8] = [0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02]
    /// Bytes in the header that follows the pragma.
    public static let headerLength = 40
    /// Where a payload starts when there is no padding: 11 + 40.
    public static let minimumDataOffset: UInt64 = 51
}

/// The 40-byte CARv2 header: "characteristics (16 B) ‖ data offset u64le ‖ data size u64le ‖ index offset u64le".
public struct CARv2Header: Hashable, Sendable {
    /// The 128-bit characteristics bitfield, as the two little-endian words go-car names `Hi` and `Lo`.
    public var characteristicsHi: UInt64
    public var characteristicsLo: UInt64
    /// Byte offset of the CARv1 payload from the start of the file.
    public var dataOffset: UInt64
    /// Byte length of the CARv1 payload.
    public var dataSize: UInt64
    /// Byte offset of the index from the start of the file; 0 means no index.
    public var indexOffset: UInt64

    public init(characteristicsHi: UInt64 = 0, characteristicsLo: UInt64 = 0, dataOffset: UInt64,
                dataSize: UInt64, indexOffset: UInt64) {
        self.characteristicsHi = characteristicsHi
        self.characteristicsLo = characteristicsLo
        self.dataOffset = dataOffset
        self.dataSize = dataSize
        self.indexOffset = indexOffset
    }

    /// The fully-indexed characteristic: carv2 spec "Fully indexed … bit 0 of the characteristics (the
    /// left-most bit)"; go-car stores it as bit 7 of the first little-endian word (`0x80` in byte 0).
    /// When set, the index also lists identity CIDs.
    public var isFullyIndexed: Bool {
        get { characteristicsHi & (1 << 7) != 0 }
        set { if newValue { characteristicsHi |= 1 << 7 } else { characteristicsHi &= ~(1 << 7) } }
    }

    /// Whether an index follows the payload ("a value of 0 indicates the absence of index data").
    public var hasIndex: Bool { indexOffset != 0 }

    /// Parses the 40 header bytes (after the pragma). Only the layout is read here; `validate` checks
    /// the offsets against a file size.
    public static func parse(_ raw: UnsafeRawBufferPointer) throws(CARError) -> CARv2Header {
        guard raw.count >= CARv2.headerLength else { throw .truncatedV2Header }
        return CARv2Header(characteristicsHi: raw.loadLE(at: 0), characteristicsLo: raw.loadLE(at: 8),
                           dataOffset: raw.loadLE(at: 16), dataSize: raw.loadLE(at: 24),
                           indexOffset: raw.loadLE(at: 32))
    }

    /// The 40 header bytes.
    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(CARv2.headerLength)
        for word in [characteristicsHi, characteristicsLo, dataOffset, dataSize, indexOffset] {
            out.appendLE(word)
        }
        return out
    }

    /// The payload's absolute byte range, checked as far as the header alone allows: carv2 spec "Data offset:
    /// the byte-offset from the beginning of the CARv2 to the first byte of the CARv1 data payload" (so at least
    /// the 51 bytes of pragma and header; go-car: "data payload offset … must be at least 51") and "Data size:
    /// the byte-length of the CARv1 data payload" (offset + size must not overflow a u64).
    public func payloadRange() throws(CARError) -> Range<UInt64> {
        guard dataOffset >= CARv2.minimumDataOffset else { throw .invalidDataOffset(dataOffset) }
        let (end, overflow) = dataOffset.addingReportingOverflow(dataSize)
        guard !overflow else { throw .dataSizeOverflow(offset: dataOffset, size: dataSize) }
        return dataOffset..<end
    }

    /// Checks the offsets against the file size, as go-car's `Header.ReadFrom` does ("data payload offset
    /// … must be at least 51", "data size … must be larger than zero") and further: the payload must lie
    /// inside the file, and a present index must start after the payload and inside the file.
    public func validate(fileSize: UInt64) throws(CARError) {
        guard dataOffset >= CARv2.minimumDataOffset, dataOffset <= fileSize else { throw .invalidDataOffset(dataOffset) }
        let (end, overflow) = dataOffset.addingReportingOverflow(dataSize)
        guard dataSize > 0, !overflow, end <= fileSize else {
            throw .invalidDataSize(offset: dataOffset, size: dataSize, fileSize: fileSize)
        }
        if hasIndex {
            guard indexOffset >= end, indexOffset < fileSize else { throw .invalidIndexOffset(indexOffset) }
        }
    }
}

/// Where the parts of a CAR file are, once its first bytes are read.
public struct CARLayout: Hashable, Sendable {
    /// 1 or 2.
    public var version: UInt64
    /// The CARv2 header (nil for a CARv1).
    public var v2Header: CARv2Header?
    /// The absolute byte range of the CARv1 payload (the whole file for a CARv1).
    public var payload: Range<UInt64>
    /// The absolute byte range of the index (codec varint included), if the CARv2 has one.
    public var index: Range<UInt64>?
}

/// Where a CAR's CARv1 payload lies, learnt from the CAR's first `CARv2.minimumDataOffset` bytes alone (no file
/// size, no further read): what a reader of sections at index offsets needs, since "the index … offsets are
/// relative to the CARv1 data payload" of a CARv2 (carv2 spec) and file offsets in a CARv1.
public enum CARPayload: Hashable, Sendable {
    /// A CARv1: the payload is the whole file, to its end.
    case carv1
    /// A CARv2: the payload is these absolute bytes of the file (the header's data offset and data size).
    case carv2(Range<UInt64>)

    /// Reads the payload position from `head`, the first bytes of a CAR (51 suffice; fewer only for a CARv1
    /// shorter than that). "The pragma is a fixed 11 byte value" (carv2 spec): a file starting with it is a
    /// CARv2 and must have the 40-byte header after it; anything else is taken as a CARv1 (its own header is
    /// checked by whoever reads its sections).
    public static func locate(head: UnsafeRawBufferPointer) throws(CARError) -> CARPayload {
        guard head.count >= CARv2.pragma.count,
              UnsafeRawBufferPointer(rebasing: head[0..<CARv2.pragma.count]).elementsEqual(CARv2.pragma)
        else { return .carv1 }
        let header = try CARv2Header.parse(UnsafeRawBufferPointer(rebasing: head[CARv2.pragma.count...]))
        return .carv2(try header.payloadRange())
    }

    /// The payload's first byte in the file.
    public var start: UInt64 {
        switch self {
        case .carv1: return 0
        case .carv2(let range): return range.lowerBound
        }
    }

    /// The end (exclusive) of a CARv2's payload; nil for a CARv1, whose payload runs to the end of the file.
    public var end: UInt64? {
        switch self {
        case .carv1: return nil
        case .carv2(let range): return range.upperBound
        }
    }
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func loadLE<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T {
        T(littleEndian: self.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        for _ in 0..<MemoryLayout<T>.size {
            append(UInt8(truncatingIfNeeded: v))
            v >>= 8
        }
    }

    /// `withUnsafeBytes` with a typed error (Array's own rethrows `any Error`).
    @inline(__always)
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(CARError) -> R) throws(CARError) -> R {
        try withUnsafeBytes { raw in Result { () throws(CARError) in try body(raw) } }.get()
    }
}
