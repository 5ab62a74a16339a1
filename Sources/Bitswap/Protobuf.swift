import NIOCore
import ProtobufWire

/// Why a Bitswap message or frame could not be decoded. Each case names the field, so a log line
/// (and a test) says exactly what was wrong.
public enum BitswapDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ended inside a varint.
    case truncatedVarint(field: String)
    /// A varint ran past 10 bytes, or its 10th byte carried bits beyond 64.
    case overlongVarint(field: String)
    /// A length-delimited field claims more bytes than remain.
    case truncatedField(field: String, declared: Int, available: Int)
    /// A fixed32/fixed64 field is cut short.
    case truncatedFixed(field: String)
    /// A known field arrived with a wire type its declaration does not allow.
    case wrongWireType(field: String, expected: UInt8, actual: UInt8)
    /// Wire types 3/4 (groups, unused by proto3) and 6/7 (undefined).
    case unsupportedWireType(field: UInt64, wireType: UInt8)
    /// Field number 0 is reserved in protobuf.
    case invalidFieldNumber(UInt64)
    /// A wantlist entry or presence names a CID that does not parse.
    case invalidCID(field: String, reason: String)
    /// A wantlist entry has no `block` field.
    case missingCID(field: String)
    /// A block presence has a type other than Have (0) or DontHave (1).
    case unknownPresenceType(Int32)
    /// A frame's declared length is over the 4 MiB `network.MessageSizeMax` (checked before buffering).
    case messageTooLarge(declared: UInt64, limit: Int)

    public var description: String {
        switch self {
        case .truncatedVarint(let f): return "input ends inside a varint in \(f)"
        case .overlongVarint(let f): return "varint longer than 10 bytes (or over 64 bits) in \(f)"
        case .truncatedField(let f, let d, let a): return "\(f) declares \(d) bytes but only \(a) remain"
        case .truncatedFixed(let f): return "fixed-width value cut short in \(f)"
        case .wrongWireType(let f, let e, let a): return "\(f) must have wire type \(e), got \(a)"
        case .unsupportedWireType(let n, let w): return "field \(n) uses unsupported wire type \(w)"
        case .invalidFieldNumber(let n): return "invalid protobuf field number \(n)"
        case .invalidCID(let f, let r): return "invalid CID in \(f): \(r)"
        case .missingCID(let f): return "\(f) has no CID"
        case .unknownPresenceType(let t): return "unknown block presence type \(t)"
        case .messageTooLarge(let d, let l): return "message of \(d) bytes is over the \(l)-byte limit"
        }
    }
}

/// A cursor over one protobuf message held in a `ByteBuffer` (the hot-path flavour of `ProtobufWire`'s reader,
/// with errors that name the Bitswap field). Length-delimited fields come back
/// as slices sharing the buffer's storage (no copy of block bytes).
struct BitswapProtoReader {
    var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) { self.buffer = buffer }

    var isAtEnd: Bool { buffer.readableBytes == 0 }

    /// Reads a base-128 varint of at most 10 bytes ("varints can be at most 10 bytes").
    mutating func readVarint(field: @autoclosure () -> String) throws(BitswapDecodeError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var index = buffer.readerIndex
        let end = buffer.writerIndex
        for count in 0..<10 {
            guard index < end, let byte = buffer.getInteger(at: index, as: UInt8.self) else {
                throw .truncatedVarint(field: field())
            }
            index += 1
            if count == 9 && byte > 1 { throw .overlongVarint(field: field()) }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 {
                buffer.moveReaderIndex(to: index)
                return result
            }
            shift += 7
        }
        throw .overlongVarint(field: field())
    }

    /// Reads a tag; nil at the end of the message.
    mutating func readTag(in message: String) throws(BitswapDecodeError) -> (field: UInt64, wireType: UInt8)? {
        if isAtEnd { return nil }
        let key = try readVarint(field: "\(message) tag")
        let field = key >> 3
        let wireType = UInt8(key & 7)
        guard field != 0 else { throw .invalidFieldNumber(field) }
        return (field, wireType)
    }

    /// Reads a length-delimited field as a slice of the underlying buffer.
    mutating func readLengthDelimited(field: String) throws(BitswapDecodeError) -> ByteBuffer {
        let length = try readVarint(field: field)
        guard length <= UInt64(buffer.readableBytes) else {
            throw .truncatedField(field: field, declared: Int(clamping: length), available: buffer.readableBytes)
        }
        // The bound check above makes this non-nil.
        return buffer.readSlice(length: Int(length))!
    }

    /// Skips an unknown field per protobuf rules (proto3 keeps unknown fields; a server ignores them).
    mutating func skip(field: UInt64, wireType: UInt8, in message: String) throws(BitswapDecodeError) {
        let name = "\(message) field \(field)"
        switch wireType {
        case ProtoWire.varint: _ = try readVarint(field: name)
        case ProtoWire.fixed64:
            guard buffer.readableBytes >= 8 else { throw .truncatedFixed(field: name) }
            buffer.moveReaderIndex(forwardBy: 8)
        case ProtoWire.lengthDelimited: _ = try readLengthDelimited(field: name)
        case ProtoWire.fixed32:
            guard buffer.readableBytes >= 4 else { throw .truncatedFixed(field: name) }
            buffer.moveReaderIndex(forwardBy: 4)
        default: throw .unsupportedWireType(field: field, wireType: wireType)
        }
    }

    static func expect(_ wireType: UInt8, _ expected: UInt8, field: String) throws(BitswapDecodeError) {
        guard wireType == expected else { throw .wrongWireType(field: field, expected: expected, actual: wireType) }
    }
}

/// Protobuf writing helpers over `ByteBuffer`.
enum Proto {
    @inline(__always)
    static func writeVarint(_ value: UInt64, into buffer: inout ByteBuffer) {
        var v = value
        while v >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.writeInteger(UInt8(v))
    }

    /// The tag byte(s) for a field; all our field numbers are < 16, so one byte.
    @inline(__always)
    static func tag(_ field: UInt64, _ wireType: UInt8) -> UInt64 { field << 3 | UInt64(wireType) }

    /// int32 on the wire: sign-extended to 64 bits, so negatives take 10 bytes.
    @inline(__always)
    static func int32Wire(_ value: Int32) -> UInt64 { UInt64(bitPattern: Int64(value)) }

    /// Size of a length-delimited field with a one-byte tag carrying `length` bytes.
    @inline(__always)
    static func delimitedSize(_ length: Int) -> Int { 1 + ProtoWire.varintLength(UInt64(length)) + length }
}
