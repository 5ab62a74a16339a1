import Multiformats

/// A multihash as a dictionary key. Lists such as badbits hold hundreds of thousands of 32-byte digests;
/// keeping those inline (four words) spares one heap allocation per rule and per lookup. Other digest
/// lengths keep their bytes.
struct HashKey: Hashable, Sendable {
    let code: UInt64
    let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64
    /// The digest when it is not 32 bytes long.
    let other: [UInt8]?

    init(code: UInt64, digest: [UInt8]) {
        self.code = code
        if digest.count == 32 {
            (w0, w1, w2, w3) = digest.withUnsafeBytes { raw in
                (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                 raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                 raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
                 raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            }
            other = nil
        } else {
            (w0, w1, w2, w3) = (0, 0, 0, 0)
            other = digest
        }
    }

    init(_ multihash: Multihash) {
        self.init(code: multihash.code, digest: multihash.digest)
    }
}
