/// A self-describing hash: `uvarint code ‖ uvarint digest length ‖ digest` (multiformats/multihash).
public struct Multihash: Hashable, Sendable {
    /// The multicodec code of the hash function (0x12 sha2-256, 0x1e blake3, …).
    public let code: UInt64
    /// The digest bytes (for identity, the data itself).
    public let digest: [UInt8]

    public init(code: UInt64, digest: [UInt8]) {
        self.code = code
        self.digest = digest
    }

    /// Parses a whole multihash; trailing bytes are an error.
    public init(bytes: some Collection<UInt8>) throws(MultiformatsError) {
        let array = Array(bytes)
        let (mh, used) = try array.withUnsafeBytes { raw in
            Result { () throws(MultiformatsError) in try Multihash.parse(raw) }
        }.get()
        guard used == array.count else { throw .trailingBytes(what: "multihash", count: array.count - used) }
        self = mh
    }

    /// Parses a multihash at the start of `raw`; returns it and the number of bytes it used.
    public static func parse(_ raw: UnsafeRawBufferPointer) throws(MultiformatsError) -> (Multihash, Int) {
        let code: (value: UInt64, length: Int)
        let length: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) {
            code = try Varint.decode(raw)
            length = try Varint.decode(UnsafeRawBufferPointer(rebasing: raw[code.length...]))
        } catch { throw .varint(error) }
        let start = code.length + length.length
        guard length.value <= UInt64(raw.count - start) else { throw .truncated(what: "multihash digest") }
        let end = start + Int(length.value)
        return (Multihash(code: code.value, digest: Array(raw[start..<end])), end)
    }

    /// The binary multihash.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(encodedLength)
        write(into: &out)
        return out
    }

    /// Length of `bytes` without building it.
    public var encodedLength: Int {
        Varint.encodedLength(code) + Varint.encodedLength(UInt64(digest.count)) + digest.count
    }

    public func write(into out: inout [UInt8]) {
        Varint.encode(code, into: &out)
        Varint.encode(UInt64(digest.count), into: &out)
        out.append(contentsOf: digest)
    }
}

/// Multicodec codes used across edgeswap (multiformats/multicodec `table.csv`).
public enum Multicodec {
    public static let identity: UInt64 = 0x00
    public static let sha2_256: UInt64 = 0x12
    public static let sha2_512: UInt64 = 0x13
    public static let blake3: UInt64 = 0x1e
    public static let blake2b_256: UInt64 = 0xb220
    public static let raw: UInt64 = 0x55
    public static let dagPB: UInt64 = 0x70
    public static let dagCBOR: UInt64 = 0x71
    public static let libp2pKey: UInt64 = 0x72
    public static let dagJSON: UInt64 = 0x0129
    public static let car: UInt64 = 0x0202
    public static let carIndexSorted: UInt64 = 0x0400
    public static let carMultihashIndexSorted: UInt64 = 0x0401

    /// A short human name for logs and `inspect`; the hex code for anything not listed.
    public static func name(of code: UInt64) -> String {
        switch code {
        case identity: return "identity"
        case sha2_256: return "sha2-256"
        case sha2_512: return "sha2-512"
        case blake3: return "blake3"
        case blake2b_256: return "blake2b-256"
        case raw: return "raw"
        case dagPB: return "dag-pb"
        case dagCBOR: return "dag-cbor"
        case libp2pKey: return "libp2p-key"
        case dagJSON: return "dag-json"
        case car: return "car"
        case carIndexSorted: return "car-index-sorted"
        case carMultihashIndexSorted: return "car-multihash-index-sorted"
        default: return "0x" + String(code, radix: 16)
        }
    }
}
