/// Unsigned LEB128 varints as multiformats defines them.
///
/// multiformats/unsigned-varint: "the maximum length is 9 bytes" (63 bits of value) and
/// "varints MUST be minimally encoded" — a trailing `0x00` continuation group is rejected.
public enum Varint {
    /// The longest varint multiformats allows.
    public static let maxLength = 9

    public enum DecodeError: Error, Equatable, Sendable {
        /// The input ended inside the varint.
        case truncated
        /// More than nine bytes, or a value past 2^63-1.
        case overlong
        /// The last byte is zero after a continuation byte: a longer encoding than needed.
        case nonMinimal
    }

    /// Bytes needed to encode `value`.
    @inlinable
    public static func encodedLength(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    /// Appends the varint encoding of `value` to `out`.
    @inlinable
    public static func encode(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// The varint encoding of `value`.
    @inlinable
    public static func encode(_ value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(encodedLength(value))
        encode(value, into: &out)
        return out
    }

    /// Decodes a varint from the start of `bytes`; returns the value and the bytes it used.
    @inlinable
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> (value: UInt64, length: Int) {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        var index = 0
        while true {
            // Checked before the length: nine continuation bytes are overlong whatever follows them.
            guard index < maxLength else { throw .overlong }
            guard index < bytes.count else { throw .truncated }
            let byte = bytes[index]
            value |= UInt64(byte & 0x7f) << shift
            index += 1
            if byte & 0x80 == 0 {
                // Nine groups of seven bits hold at most 63 bits, so any ninth byte fits.
                if byte == 0 && index > 1 { throw .nonMinimal }
                return (value, index)
            }
            shift += 7
        }
    }

    /// Decodes a varint from the start of any byte collection.
    @inlinable
    public static func decode<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws(DecodeError) -> (value: UInt64, length: Int) {
        // Array.withUnsafeBytes rethrows untyped errors, so the typed result travels in a Result.
        let result = bytes.withContiguousStorageIfAvailable { buf in
            Result { () throws(DecodeError) in try decode(UnsafeRawBufferPointer(buf)) }
        } ?? Array(bytes).withUnsafeBytes { raw in Result { () throws(DecodeError) in try decode(raw) } }
        return try result.get()
    }
}
