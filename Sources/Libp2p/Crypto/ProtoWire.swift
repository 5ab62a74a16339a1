// edgeswap: libp2p keys and Noise. Minimal protobuf wire helpers for the few small messages this folder reads
// and writes (PublicKey, PrivateKey, NoiseHandshakePayload). They are not on a per-frame hot path.

import Multiformats

/// Protobuf wire-format primitives (https://protobuf.dev/programming-guides/encoding/) for the small,
/// fixed schemas of libp2p keys and the Noise handshake payload.
///
/// Only the two wire types those schemas use are written: varint (0) and length-delimited (2). The
/// reader can skip every wire type, because proto2 parsers ignore unknown fields.
enum ProtoWire {
    /// Protobuf wire types.
    enum WireType: UInt8 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case startGroup = 3
        case endGroup = 4
        case fixed32 = 5
    }

    /// Why bytes are not a well-formed protobuf message.
    enum DecodeError: Error, Equatable, Sendable {
        case truncated
        case badVarint
        case badWireType(UInt8)
        case badFieldNumber
    }

    /// One field as read from the wire: its number, wire type and, for varint fields, the value; for
    /// length-delimited fields, the byte range of the content inside the message.
    struct Field {
        var number: UInt64
        var wireType: WireType
        var varint: UInt64
        var bytes: Range<Int>
        /// Whether the tag and (for varints) the value used their minimal encodings.
        var isMinimallyEncoded: Bool
    }

    /// Reads the fields of one message from `bytes`, in wire order.
    static func fields(_ bytes: [UInt8]) throws(DecodeError) -> [Field] {
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
                // Groups are deprecated and appear in none of the libp2p schemas; refusing them keeps the
                // reader simple (a group has no length prefix to skip by).
                throw .badWireType(wireType.rawValue)
            }
            out.append(field)
        }
        return out
    }

    /// Reads a base-128 varint (at most 10 bytes) at `index`; reports whether it was minimally encoded.
    private static func readVarint(_ bytes: [UInt8], at index: Int) throws(DecodeError) -> (UInt64, Int, Bool) {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        var i = index
        while true {
            guard i < bytes.count else { throw .truncated }
            let byte = bytes[i]
            i += 1
            if shift == 63 && byte > 1 { throw .badVarint }
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 {
                // A final 0x00 byte after the first one means a longer than necessary encoding.
                let minimal = !(byte == 0 && i - index > 1)
                return (value, i - index, minimal)
            }
            shift += 7
            guard shift <= 63 else { throw .badVarint }
        }
    }

    /// Appends a varint field.
    static func appendVarintField(_ number: UInt64, _ value: UInt64, to out: inout [UInt8]) {
        appendVarint(number << 3 | UInt64(WireType.varint.rawValue), to: &out)
        appendVarint(value, to: &out)
    }

    /// Appends a length-delimited field.
    static func appendBytesField(_ number: UInt64, _ value: some Collection<UInt8>, to out: inout [UInt8]) {
        appendVarint(number << 3 | UInt64(WireType.lengthDelimited.rawValue), to: &out)
        appendVarint(UInt64(value.count), to: &out)
        out.append(contentsOf: value)
    }

    /// Appends a minimal base-128 varint (protobuf allows 10 bytes; multiformats' `Varint` caps at 9).
    static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}
