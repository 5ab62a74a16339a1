import Crypto

/// Computing and checking multihash digests over raw bytes.
///
/// Callers pass `UnsafeRawBufferPointer`s (from `ByteBuffer.withUnsafeReadableBytes` or
/// `Array.withUnsafeBytes`): swift-crypto over a `ByteBufferView` takes a generic path that is 9x
/// slower here, so the hot path never hands it anything else.
public enum Hashing {
    /// Hash functions edgeswap computes. Anything else is refused (boxo's `verifcid` allowlist is the
    /// model: a server should not touch storage for hashes it cannot check).
    public static let supported: Set<UInt64> = [
        Multicodec.identity, Multicodec.sha2_256, Multicodec.sha2_512, Multicodec.blake3, Multicodec.blake2b_256,
    ]

    /// The default (and only accepted) digest length for each supported function; identity has none.
    public static func digestLength(of code: UInt64) -> Int? {
        switch code {
        case Multicodec.sha2_256, Multicodec.blake3, Multicodec.blake2b_256: return 32
        case Multicodec.sha2_512: return 64
        default: return nil
        }
    }

    /// The digest of `data` under hash function `code` (for identity, the data itself).
    public static func digest(code: UInt64, of data: UnsafeRawBufferPointer) throws(MultiformatsError) -> [UInt8] {
        switch code {
        case Multicodec.identity:
            return Array(data)
        case Multicodec.sha2_256:
            return SHA256.hash(data: data).withUnsafeBytes { Array($0) }
        case Multicodec.sha2_512:
            return SHA512.hash(data: data).withUnsafeBytes { Array($0) }
        case Multicodec.blake3:
            return BLAKE3.hash(data)
        case Multicodec.blake2b_256:
            return BLAKE2b.hash(data, outputLength: 32)
        default:
            throw .unsupportedHashFunction(code)
        }
    }

    /// Whether the digest of `data` under `code` is `expected`. The per-block check on every cold read:
    /// sha2-256 and blake3 are compared from stack storage, without building the digest as an array.
    static func digest(
        code: UInt64, of data: UnsafeRawBufferPointer, equals expected: [UInt8]
    ) throws(MultiformatsError) -> Bool {
        switch code {
        case Multicodec.sha2_256:
            return SHA256.hash(data: data).withUnsafeBytes { $0.elementsEqual(expected) }
        case Multicodec.blake3 where expected.count == BLAKE3.defaultOutputLength:
            var hasher = BLAKE3.Hasher()
            hasher.update(data)
            return withUnsafeTemporaryAllocation(byteCount: BLAKE3.defaultOutputLength, alignment: 8) { out in
                hasher.finalize(into: out)
                return UnsafeRawBufferPointer(out).elementsEqual(expected)
            }
        default:
            return try digest(code: code, of: data) == expected
        }
    }
}

extension Multihash {
    /// The multihash of `data` under hash function `code`.
    public static func compute(code: UInt64, of data: UnsafeRawBufferPointer) throws(MultiformatsError) -> Multihash {
        Multihash(code: code, digest: try Hashing.digest(code: code, of: data))
    }

    /// Whether `data` hashes to this multihash. Throws for a hash function edgeswap does not compute, or a
    /// digest length that function never produces (truncated digests are not accepted).
    public func verify(_ data: UnsafeRawBufferPointer) throws(MultiformatsError) -> Bool {
        if let expected = Hashing.digestLength(of: code), expected != digest.count {
            throw .digestLengthMismatch(code: code, expected: expected, actual: digest.count)
        }
        return try Hashing.digest(code: code, of: data, equals: digest)
    }
}
