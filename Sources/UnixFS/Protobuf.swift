/// The few protobuf wire-format pieces dag-pb and UnixFS need, written by hand: the messages are
/// small and fixed, and a generated runtime would cost build time for nothing (see notes/swift-stack.md).
///
/// protobuf encoding: "each key in the streamed message is a varint with the value
/// `(field_number << 3) | wire_type`"; wire type 0 is varint, 2 is length-delimited.
enum ProtoWire {
    static let varint: UInt8 = 0
    static let fixed64: UInt8 = 1
    static let lengthDelimited: UInt8 = 2
    static let fixed32: UInt8 = 5

    /// Appends a protobuf (base-128, up to 10 bytes) varint.
    @inlinable
    static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func varintLength(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    static func appendTag(field: UInt64, wireType: UInt8, to out: inout [UInt8]) {
        appendVarint(field << 3 | UInt64(wireType), to: &out)
    }

    static func appendBytesField(field: UInt64, _ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        appendTag(field: field, wireType: lengthDelimited, to: &out)
        appendVarint(UInt64(bytes.count), to: &out)
        out.append(contentsOf: bytes)
    }

    static func appendVarintField(field: UInt64, _ value: UInt64, to out: inout [UInt8]) {
        appendTag(field: field, wireType: varint, to: &out)
        appendVarint(value, to: &out)
    }
}

/// A cursor over protobuf bytes. Every read checks the remaining length first, so no input can make it
/// read out of bounds; failures are reported as `ProtoReadError` and mapped to the caller's error type.
struct ProtoReader {
    enum ReadError: Error, Equatable {
        case truncated
        /// A varint longer than 10 bytes or whose value does not fit in 64 bits.
        case varintOverflow
    }

    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func readVarint() throws(ReadError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < bytes.count else { throw .truncated }
            let byte = bytes[offset]
            offset += 1
            // The tenth byte may only carry the top bit of a 64-bit value.
            if shift == 63 && byte > 1 { throw .varintOverflow }
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            guard shift <= 63 else { throw .varintOverflow }
        }
    }

    /// Reads a tag; returns the field number and the wire type.
    mutating func readTag() throws(ReadError) -> (field: UInt64, wireType: UInt8) {
        let key = try readVarint()
        return (key >> 3, UInt8(truncatingIfNeeded: key & 7))
    }

    /// Reads a length-delimited payload, returned as a slice of the input (no copy).
    mutating func readLengthDelimited() throws(ReadError) -> UnsafeRawBufferPointer {
        let length = try readVarint()
        guard length <= UInt64(bytes.count - offset) else { throw .truncated }
        let start = offset
        offset += Int(length)
        return UnsafeRawBufferPointer(rebasing: bytes[start..<offset])
    }

    /// Skips a field of a known wire type; returns false for wire types that cannot be skipped
    /// (groups 3/4 and the undefined 6/7).
    mutating func skip(wireType: UInt8) throws(ReadError) -> Bool {
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
