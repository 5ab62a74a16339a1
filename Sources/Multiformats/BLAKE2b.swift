/// BLAKE2b as RFC 7693 specifies it, unkeyed, with any digest length from 1 to 64 bytes.
///
/// Multihash names BLAKE2b by digest size: `blake2b-8` (0xb201) … `blake2b-512` (0xb240), code
/// 0xb200 + bytes; the digest length is part of the parameter block, so a 32-byte BLAKE2b is not a
/// truncated 64-byte one.
public enum BLAKE2b {
    /// The largest digest (RFC 7693 §2.1: "nn … 1 <= nn <= 64").
    public static let maxOutputLength = 64
    static let blockLength = 128

    /// The BLAKE2b digest of `data`, `outputLength` bytes long.
    ///
    /// - Precondition: `1 <= outputLength <= 64`.
    public static func hash(_ data: UnsafeRawBufferPointer, outputLength: Int) -> [UInt8] {
        var hasher = Hasher(outputLength: outputLength)
        hasher.update(data)
        return hasher.finalize()
    }

    /// RFC 7693 §2.6: the initialization vector is SHA-512's.
    static let iv: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (
        0x6a09_e667_f3bc_c908, 0xbb67_ae85_84ca_a73b, 0x3c6e_f372_fe94_f82b, 0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1, 0x9b05_688c_2b3e_6c1f, 0x1f83_d9ab_fb41_bd6b, 0x5be0_cd19_137e_2179
    )

    /// An incremental, unkeyed BLAKE2b hasher.
    public struct Hasher: Sendable {
        var h: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
        /// Bytes compressed so far (RFC 7693's `t`; 128 bits in the spec, 64 are plenty here: 2^64 bytes).
        var compressed: UInt64 = 0
        var buffer: (Block, Block) = (Block(), Block())  // 128 bytes
        var bufferLength = 0
        /// The digest length in bytes (1...64), fixed at creation: it is part of the parameter block.
        public let outputLength: Int

        struct Block: Sendable {
            var b0: UInt64 = 0, b1: UInt64 = 0, b2: UInt64 = 0, b3: UInt64 = 0
            var b4: UInt64 = 0, b5: UInt64 = 0, b6: UInt64 = 0, b7: UInt64 = 0
        }

        /// A hasher for an unkeyed digest of `outputLength` bytes.
        ///
        /// - Precondition: `1 <= outputLength <= 64`.
        public init(outputLength: Int) {
            precondition(outputLength >= 1 && outputLength <= BLAKE2b.maxOutputLength, "BLAKE2b output is 1...64 bytes")
            self.outputLength = outputLength
            // RFC 7693 §3.3: "h[0] := h[0] ^ 0x01010000 ^ (kk << 8) ^ nn" (kk = 0: no key).
            h = BLAKE2b.iv
            h.0 ^= 0x0101_0000 ^ UInt64(outputLength)
        }

        /// Absorbs more input. A full block is compressed only once more input follows it, because the
        /// last block is compressed with the final-block flag.
        public mutating func update(_ data: UnsafeRawBufferPointer) {
            guard var p = data.baseAddress else { return }
            var n = data.count
            while n > 0 {
                if bufferLength == BLAKE2b.blockLength {
                    compressed &+= UInt64(BLAKE2b.blockLength)
                    let t = compressed
                    let block = buffer
                    var state = h
                    withUnsafeBytes(of: block) { b in BLAKE2b.compress(&state, b.baseAddress!, t, last: false) }
                    h = state
                    bufferLength = 0
                }
                while bufferLength == 0 && n > BLAKE2b.blockLength {
                    compressed &+= UInt64(BLAKE2b.blockLength)
                    BLAKE2b.compress(&h, UnsafeRawPointer(p), compressed, last: false)
                    p += BLAKE2b.blockLength
                    n -= BLAKE2b.blockLength
                }
                let take = min(BLAKE2b.blockLength - bufferLength, n)
                let offset = bufferLength
                withUnsafeMutableBytes(of: &buffer) { b in (b.baseAddress! + offset).copyMemory(from: p, byteCount: take) }
                bufferLength += take
                p += take
                n -= take
            }
        }

        /// The digest of everything absorbed so far.
        public func finalize() -> [UInt8] {
            var state = h
            var block = buffer
            // RFC 7693 §3.3: the last block is padded with zeros; t counts only real bytes.
            _ = withUnsafeMutableBytes(of: &block) { b in
                (b.baseAddress! + bufferLength).initializeMemory(as: UInt8.self, repeating: 0,
                                                                 count: BLAKE2b.blockLength - bufferLength)
            }
            let t = compressed &+ UInt64(bufferLength)
            withUnsafeBytes(of: block) { b in BLAKE2b.compress(&state, b.baseAddress!, t, last: true) }
            // "RETURN first nn bytes from little-endian word array h[]".
            var bytes = (state.0.littleEndian, state.1.littleEndian, state.2.littleEndian, state.3.littleEndian,
                         state.4.littleEndian, state.5.littleEndian, state.6.littleEndian, state.7.littleEndian)
            return withUnsafeBytes(of: &bytes) { Array($0.prefix(outputLength)) }
        }
    }

    struct State {
        var v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15: UInt64
    }

    /// RFC 7693 §3.1 mixing function G, rotations (R1, R2, R3, R4) = (32, 24, 16, 63).
    @inline(__always)
    static func g(_ a: inout UInt64, _ b: inout UInt64, _ c: inout UInt64, _ d: inout UInt64, _ x: UInt64, _ y: UInt64) {
        a = a &+ b &+ x
        d = rotr(d ^ a, 32)
        c = c &+ d
        b = rotr(b ^ c, 24)
        a = a &+ b &+ y
        d = rotr(d ^ a, 16)
        c = c &+ d
        b = rotr(b ^ c, 63)
    }

    @inline(__always)
    static func rotr(_ x: UInt64, _ n: UInt64) -> UInt64 { (x &>> n) | (x &<< (64 &- n)) }

    @inline(__always)
    static func round(
        _ v: inout State,
        _ m0: UInt64, _ m1: UInt64, _ m2: UInt64, _ m3: UInt64, _ m4: UInt64, _ m5: UInt64, _ m6: UInt64,
        _ m7: UInt64, _ m8: UInt64, _ m9: UInt64, _ m10: UInt64, _ m11: UInt64, _ m12: UInt64, _ m13: UInt64,
        _ m14: UInt64, _ m15: UInt64
    ) {
        g(&v.v0, &v.v4, &v.v8, &v.v12, m0, m1)
        g(&v.v1, &v.v5, &v.v9, &v.v13, m2, m3)
        g(&v.v2, &v.v6, &v.v10, &v.v14, m4, m5)
        g(&v.v3, &v.v7, &v.v11, &v.v15, m6, m7)
        g(&v.v0, &v.v5, &v.v10, &v.v15, m8, m9)
        g(&v.v1, &v.v6, &v.v11, &v.v12, m10, m11)
        g(&v.v2, &v.v7, &v.v8, &v.v13, m12, m13)
        g(&v.v3, &v.v4, &v.v9, &v.v14, m14, m15)
    }

    /// RFC 7693 §3.2 compression function F over the 128-byte block at `p`; `t` is the byte count
    /// including this block. The argument lists of the twelve rounds are the rows of SIGMA (rounds 10
    /// and 11 reuse rows 0 and 1), so message words are never indexed at run time.
    static func compress(
        _ h: inout (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64),
        _ p: UnsafeRawPointer, _ t: UInt64, last: Bool
    ) {
        @inline(__always) func w(_ i: Int) -> UInt64 {
            UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
        }
        let m0 = w(0), m1 = w(1), m2 = w(2), m3 = w(3), m4 = w(4), m5 = w(5), m6 = w(6), m7 = w(7)
        let m8 = w(8), m9 = w(9), m10 = w(10), m11 = w(11), m12 = w(12), m13 = w(13), m14 = w(14), m15 = w(15)
        var v = State(
            v0: h.0, v1: h.1, v2: h.2, v3: h.3, v4: h.4, v5: h.5, v6: h.6, v7: h.7,
            v8: iv.0, v9: iv.1, v10: iv.2, v11: iv.3,
            v12: iv.4 ^ t, v13: iv.5,  // "v[12] := v[12] ^ (t mod 2**w); v[13] := v[13] ^ (t >> w)" (t < 2^64)
            v14: last ? ~iv.6 : iv.6,  // "IF f = TRUE THEN v[14] := v[14] ^ 0xFF..FF"
            v15: iv.7)
        round(&v, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)
        round(&v, m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3)
        round(&v, m11, m8, m12, m0, m5, m2, m15, m13, m10, m14, m3, m6, m7, m1, m9, m4)
        round(&v, m7, m9, m3, m1, m13, m12, m11, m14, m2, m6, m5, m10, m4, m0, m15, m8)
        round(&v, m9, m0, m5, m7, m2, m4, m10, m15, m14, m1, m11, m12, m6, m8, m3, m13)
        round(&v, m2, m12, m6, m10, m0, m11, m8, m3, m4, m13, m7, m5, m15, m14, m1, m9)
        round(&v, m12, m5, m1, m15, m14, m13, m4, m10, m0, m7, m6, m3, m9, m2, m8, m11)
        round(&v, m13, m11, m7, m14, m12, m1, m3, m9, m5, m0, m15, m4, m8, m6, m2, m10)
        round(&v, m6, m15, m14, m9, m11, m3, m0, m8, m12, m2, m13, m7, m1, m4, m10, m5)
        round(&v, m10, m2, m8, m4, m7, m6, m1, m5, m15, m11, m9, m14, m3, m12, m13, m0)
        round(&v, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)
        round(&v, m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3)
        // "h[i] := h[i] ^ v[i] ^ v[i + 8]"
        h.0 ^= v.v0 ^ v.v8
        h.1 ^= v.v1 ^ v.v9
        h.2 ^= v.v2 ^ v.v10
        h.3 ^= v.v3 ^ v.v11
        h.4 ^= v.v4 ^ v.v12
        h.5 ^= v.v5 ^ v.v13
        h.6 ^= v.v6 ^ v.v14
        h.7 ^= v.v7 ^ v.v15
    }
}
