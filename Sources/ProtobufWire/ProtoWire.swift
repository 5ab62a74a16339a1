/// The protobuf wire format, by hand, for the small fixed schemas edgeswap reads and writes: dag-pb and
/// UnixFS, libp2p keys, the Noise handshake payload, identify. (Bitswap keeps its own ByteBuffer codec on the
/// hot path, built on `varintLength` from here.) A generated runtime would cost build time for nothing.
///
/// protobuf encoding (https://protobuf.dev/programming-guides/encoding/): "each key in the streamed message
/// is a varint with the value `(field_number << 3) | wire_type`"; wire type 0 is varint, 1 is 64-bit, 2 is
/// length-delimited, 5 is 32-bit; 3 and 4 are the deprecated groups.
public enum ProtoWire {
    public static let varint: UInt8 = 0
    public static let fixed64: UInt8 = 1
    public static let lengthDelimited: UInt8 = 2
    public static let fixed32: UInt8 = 5

    /// Protobuf wire types.
    public enum WireType: UInt8, Sendable {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case startGroup = 3
        case endGroup = 4
        case fixed32 = 5
    }

    /// Why bytes are not a well-formed protobuf message.
    public enum DecodeError: Error, Equatable, Sendable {
        case truncated
        case badVarint
        case badWireType(UInt8)
        case badFieldNumber
    }

    /// One field as read from the wire: its number, wire type and, for varint fields, the value; for
    /// length-delimited and fixed fields, the byte range of the content inside the message.
    public struct Field: Sendable {
        public var number: UInt64
        public var wireType: WireType
        public var varint: UInt64
        public var bytes: Range<Int>
        /// Whether the tag and (for varints and lengths) the value used their minimal encodings.
        public var isMinimallyEncoded: Bool
    }

    /// Reads the fields of one message from `bytes`, in wire order. Groups are refused: they appear in none
    /// of the schemas read this way and have no length prefix to skip by.
    public static func fields(_ bytes: [UInt8]) throws(DecodeError) -> [Field] {
        var out: [Field] = []
        var index = 0
        while index < bytes.count {
            let (tag, tagLength, tagMinimal) = try readVarint(bytes, at: index)
            index += tagLength
            guard let wireType = WireType(rawValue: UInt8(tag & 7)) else { throw .badWireType(UInt8(tag & 7)) }
            let number = tag >> 3
            guard number != 0 else { throw .badFieldNumber }
            var field = Field(number: number, wireType: wireType, varint: 0, bytes: index..<index,
                              isMinimallyEncoded: tagMinimal)
            switch wireType {
            case .varint:
                let (value, length, minimal) = try readVarint(bytes, at: index)
                index += length
                field.varint = value
                field.isMinimallyEncoded = field.isMinimallyEncoded && minimal
            case .fixed64:
                guard bytes.count - index >= 8 else { throw .truncated }
                field.bytes = index..<(index + 8)
                index += 8
            case .fixed32:
                guard bytes.count - index >= 4 else { throw .truncated }
                field.bytes = index..<(index + 4)
                index += 4
            case .lengthDelimited:
                let (length, lengthLength, minimal) = try readVarint(bytes, at: index)
                index += lengthLength
                guard length <= UInt64(bytes.count - index) else { throw .truncated }
                field.bytes = index..<(index + Int(length))
                field.isMinimallyEncoded = field.isMinimallyEncoded && minimal
                index += Int(length)
            case .startGroup, .endGroup:
                throw .badWireType(wireType.rawValue)
            }
            out.append(field)
        }
        return out
    }

    /// Reads a base-128 varint (at most 10 bytes) at `index`; reports whether it was minimally encoded.
    private static func readVarint(_ bytes: [UInt8], at index: Int) throws(DecodeError) -> (UInt64, Int, Bool) {
        var reader = Cursor(bytes: bytes, index: index)
        do throws(ProtoReader.ReadError) {
            let value = try ProtoReader.varint(from: &reader)
            let length = reader.index - index
            // A final 0x00 byte after the first one means a longer than necessary encoding.
            return (value, length, !(length > 1 && bytes[reader.index - 1] == 0))
        } catch {
            throw error == .truncated ? .truncated : .badVarint
        }
    }

    /// Appends a protobuf (base-128, up to 10 bytes) varint. (Multiformats' `Varint` is the
    /// multiformats flavour, capped at 9 bytes.)
    @inlinable
    public static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// Bytes `appendVarint` writes for `value`: one per started group of 7 significant bits.
    @inlinable @inline(__always)
    public static func varintLength(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    public static func appendTag(field: UInt64, wireType: UInt8, to out: inout [UInt8]) {
        appendVarint(field << 3 | UInt64(wireType), to: &out)
    }

    /// Appends a length-delimited field.
    public static func appendBytesField(field: UInt64, _ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        appendTag(field: field, wireType: lengthDelimited, to: &out)
        appendVarint(UInt64(bytes.count), to: &out)
        out.append(contentsOf: bytes)
    }

    /// Appends a varint field.
    public static func appendVarintField(field: UInt64, _ value: UInt64, to out: inout [UInt8]) {
        appendTag(field: field, wireType: varint, to: &out)
        appendVarint(value, to: &out)
    }
}

/// Byte access for the shared varint decoder: an array cursor or a raw-buffer cursor.
protocol VarintInput {
    var index: Int { get set }
    var count: Int { get }
    subscript(_ i: Int) -> UInt8 { get }
}

struct Cursor: VarintInput {
    let bytes: [UInt8]
    var index: Int
    var count: Int { bytes.count }
    subscript(_ i: Int) -> UInt8 { bytes[i] }
}

/// A cursor over protobuf bytes. Every read checks the remaining length first, so no input can make it
/// read out of bounds.
public struct ProtoReader {
    public enum ReadError: Error, Equatable, Sendable {
        case truncated
        /// A varint longer than 10 bytes or whose value does not fit in 64 bits.
        case varintOverflow
    }

    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int = 0

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var isAtEnd: Bool { offset >= bytes.count }

    private struct RawInput: VarintInput {
        let bytes: UnsafeRawBufferPointer
        var index: Int
        var count: Int { bytes.count }
        subscript(_ i: Int) -> UInt8 { bytes[i] }
    }

    /// The one varint decoder of this module.
    static func varint(from input: inout some VarintInput) throws(ReadError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard input.index < input.count else { throw .truncated }
            let byte = input[input.index]
            input.index += 1
            // The tenth byte may only carry the top bit of a 64-bit value.
            if shift == 63 && byte > 1 { throw .varintOverflow }
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            guard shift <= 63 else { throw .varintOverflow }
        }
    }

    public mutating func readVarint() throws(ReadError) -> UInt64 {
        var input = RawInput(bytes: bytes, index: offset)
        defer { offset = input.index }
        return try Self.varint(from: &input)
    }

    /// Reads a tag; returns the field number and the wire type.
    public mutating func readTag() throws(ReadError) -> (field: UInt64, wireType: UInt8) {
        let key = try readVarint()
        return (key >> 3, UInt8(truncatingIfNeeded: key & 7))
    }

    /// Reads a length-delimited payload, returned as a slice of the input (no copy).
    public mutating func readLengthDelimited() throws(ReadError) -> UnsafeRawBufferPointer {
        let length = try readVarint()
        guard length <= UInt64(bytes.count - offset) else { throw .truncated }
        let start = offset
        offset += Int(length)
        return UnsafeRawBufferPointer(rebasing: bytes[start..<offset])
    }

    /// Skips a field of a known wire type; returns false for wire types that cannot be skipped
    /// (groups 3/4 and the undefined 6/7).
    public mutating func skip(wireType: UInt8) throws(ReadError) -> Bool {
        switch wireType {
        case ProtoWire.varint: _ = try readVarint()
        case ProtoWire.fixed64:
            guard bytes.count - offset >= 8 else { throw .truncated }
            offset += 8
        case ProtoWire.lengthDelimited: _ = try readLengthDelimited()
        case ProtoWire.fixed32:
            guard bytes.count - offset >= 4 else { throw .truncated }
            offset += 4
        default: return false
        }
        return true
    }
}
