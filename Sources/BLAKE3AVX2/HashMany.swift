/// The BLAKE3 compression function over eight inputs at once, one input per SIMD lane ("the state words of
/// eight chunks transposed, so each lane of a 256-bit register holds one chunk's word"): the layout the
/// official AVX2 implementation uses, written here in Swift `SIMD8<UInt32>`.
///
/// This module is compiled with AVX2 enabled (Package.swift passes `-Xcc -mavx2`, which sets the target
/// features Swift's code generator uses), so nothing in it may run on a CPU without AVX2. Multiformats
/// calls `hashMany` only after it has checked the CPU (`BLAKE3.backend`); everything else about BLAKE3 (the
/// tree, the modes, the scalar path, the output) lives there.

#if arch(x86_64)
public typealias Words8 = SIMD8<UInt32>

/// "IV0–IV7 … are the same as in SHA-256": only IV0…IV3 enter the state of a compression.
private let iv0: UInt32 = 0x6A09_E667, iv1: UInt32 = 0xBB67_AE85
private let iv2: UInt32 = 0x3C6E_F372, iv3: UInt32 = 0xA54F_F53A

/// Compresses `blocks` consecutive 64-byte blocks of each of `lanes` inputs (1…8; input `i` starts at
/// `inputs + i * stride`), each input starting from `key`, and writes input `i`'s chaining value
/// (eight little-endian words) to `out + 32 * i`.
///
/// Input `i` uses counter `counter + i * counterStep` (chunks: their chunk index, step 1; parents: 0,
/// step 0). Every block gets `flags`, the first also `flagsStart` and the last also `flagsEnd` (a chunk's
/// `CHUNK_START` and `CHUNK_END`). All blocks are full (block length 64), so this never compresses a
/// chunk's last, possibly partial block that might be the root.
///
/// `out` may overlap the inputs when each output lies at or before its input (parents reduced in place):
/// every message word is read before the first output word is written.
public func hashMany(
    inputs: UnsafeRawPointer, stride: Int, lanes: Int, blocks: Int, key: Words8,
    counter: UInt64, counterStep: UInt64, flags: UInt32, flagsStart: UInt32, flagsEnd: UInt32,
    out: UnsafeMutableRawPointer
) {
    precondition(lanes >= 1 && lanes <= 8 && blocks >= 1)
    // Unused lanes repeat the last input (the work is done either way; only `lanes` outputs are stored).
    let last = lanes - 1
    let p0 = inputs, p1 = inputs + stride * min(1, last), p2 = inputs + stride * min(2, last)
    let p3 = inputs + stride * min(3, last), p4 = inputs + stride * min(4, last)
    let p5 = inputs + stride * min(5, last), p6 = inputs + stride * min(6, last)
    let p7 = inputs + stride * min(7, last)
    // "t0, t1: the 64-bit counter t, split into low and high words", one counter per lane.
    var counters = SIMD8<UInt64>(repeating: counter)
    counters &+= SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7) &* counterStep
    let counterLow = Words8(truncatingIfNeeded: counters)
    let counterHigh = Words8(truncatingIfNeeded: counters &>> 32)

    var h0 = Words8(repeating: key[0]), h1 = Words8(repeating: key[1])
    var h2 = Words8(repeating: key[2]), h3 = Words8(repeating: key[3])
    var h4 = Words8(repeating: key[4]), h5 = Words8(repeating: key[5])
    var h6 = Words8(repeating: key[6]), h7 = Words8(repeating: key[7])

    var offset = 0
    for block in 0..<blocks {
        var blockFlags = flags
        if block == 0 { blockFlags |= flagsStart }
        if block == blocks - 1 { blockFlags |= flagsEnd }

        // Message word j of every lane: a transposing load ("words are encoded little-endian"), eight
        // scalar loads into one vector (LLVM merges shuffle-based transposes back into such loads anyway).
        @inline(__always) func word(_ j: Int) -> Words8 {
            let o = offset + 4 * j
            return Words8(
                load(p0, o), load(p1, o), load(p2, o), load(p3, o), load(p4, o), load(p5, o), load(p6, o),
                load(p7, o))
        }
        var m = Message(
            word(0), word(1), word(2), word(3), word(4), word(5), word(6), word(7),
            word(8), word(9), word(10), word(11), word(12), word(13), word(14), word(15))

        // "The compression function … initializes the state v0…v15 as h0…h7, IV0…IV3, t0, t1, b, d."
        var v = State(
            h0, h1, h2, h3, h4, h5, h6, h7,
            Words8(repeating: iv0), Words8(repeating: iv1), Words8(repeating: iv2), Words8(repeating: iv3),
            counterLow, counterHigh, Words8(repeating: 64), Words8(repeating: blockFlags))
        // Seven rounds with the message permuted between them, written out so that the permutation is
        // only register renaming.
        round(&v, m); m.permute()
        round(&v, m); m.permute()
        round(&v, m); m.permute()
        round(&v, m); m.permute()
        round(&v, m); m.permute()
        round(&v, m); m.permute()
        round(&v, m)
        // The truncated output: "the first eight words … v_i ⊕ v_{i+8}" chain into the next block.
        h0 = v.v0 ^ v.v8; h1 = v.v1 ^ v.v9; h2 = v.v2 ^ v.v10; h3 = v.v3 ^ v.v11
        h4 = v.v4 ^ v.v12; h5 = v.v5 ^ v.v13; h6 = v.v6 ^ v.v14; h7 = v.v7 ^ v.v15
        offset += 64
    }

    // Transpose back: lane i's eight words are input i's chaining value. The vectors go through memory:
    // reading lanes straight out of them (`h0[i]`) makes LLVM scalarize the rounds above.
    withUnsafeTemporaryAllocation(byteCount: 256, alignment: 32) { t in
        let q = t.baseAddress!
        q.storeBytes(of: h0, toByteOffset: 0, as: Words8.self)
        q.storeBytes(of: h1, toByteOffset: 32, as: Words8.self)
        q.storeBytes(of: h2, toByteOffset: 64, as: Words8.self)
        q.storeBytes(of: h3, toByteOffset: 96, as: Words8.self)
        q.storeBytes(of: h4, toByteOffset: 128, as: Words8.self)
        q.storeBytes(of: h5, toByteOffset: 160, as: Words8.self)
        q.storeBytes(of: h6, toByteOffset: 192, as: Words8.self)
        q.storeBytes(of: h7, toByteOffset: 224, as: Words8.self)
        for i in 0..<lanes {
            for w in 0..<8 {
                store(out + 32 * i, 4 * w, q.load(fromByteOffset: 32 * w + 4 * i, as: UInt32.self))
            }
        }
    }
}

/// Sixteen words per lane: the compression state v0…v15, or a message block m0…m15.
struct State {
    var v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15: Words8

    @inline(__always)
    init(
        _ v0: Words8, _ v1: Words8, _ v2: Words8, _ v3: Words8, _ v4: Words8, _ v5: Words8, _ v6: Words8,
        _ v7: Words8, _ v8: Words8, _ v9: Words8, _ v10: Words8, _ v11: Words8, _ v12: Words8, _ v13: Words8,
        _ v14: Words8, _ v15: Words8
    ) {
        (self.v0, self.v1, self.v2, self.v3, self.v4, self.v5, self.v6, self.v7) = (v0, v1, v2, v3, v4, v5, v6, v7)
        (self.v8, self.v9, self.v10, self.v11) = (v8, v9, v10, v11)
        (self.v12, self.v13, self.v14, self.v15) = (v12, v13, v14, v15)
    }
}

typealias Message = State

extension State {
    /// "permute the message words … [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]": new word i is
    /// old word PERMUTATION[i].
    @inline(__always)
    mutating func permute() {
        self = State(v2, v6, v3, v10, v7, v0, v4, v13, v1, v11, v12, v5, v9, v14, v15, v8)
    }
}

/// One round: G on the four columns, then on the four diagonals, message words in order.
@inline(__always)
func round(_ s: inout State, _ m: Message) {
    g(&s.v0, &s.v4, &s.v8, &s.v12, m.v0, m.v1)
    g(&s.v1, &s.v5, &s.v9, &s.v13, m.v2, m.v3)
    g(&s.v2, &s.v6, &s.v10, &s.v14, m.v4, m.v5)
    g(&s.v3, &s.v7, &s.v11, &s.v15, m.v6, m.v7)
    g(&s.v0, &s.v5, &s.v10, &s.v15, m.v8, m.v9)
    g(&s.v1, &s.v6, &s.v11, &s.v12, m.v10, m.v11)
    g(&s.v2, &s.v7, &s.v8, &s.v13, m.v12, m.v13)
    g(&s.v3, &s.v4, &s.v9, &s.v14, m.v14, m.v15)
}

/// The quarter-round G (spec section 2.2) on eight lanes: rotations 16, 12, 8, 7.
@inline(__always)
func g(_ a: inout Words8, _ b: inout Words8, _ c: inout Words8, _ d: inout Words8, _ x: Words8, _ y: Words8) {
    a = a &+ b &+ x
    d = rotr(d ^ a, 16)
    c = c &+ d
    b = rotr(b ^ c, 12)
    a = a &+ b &+ y
    d = rotr(d ^ a, 8)
    c = c &+ d
    b = rotr(b ^ c, 7)
}

/// A right rotation by a constant: LLVM turns 16 and 8 into one byte shuffle (`vpshufb`) under AVX2.
@inline(__always)
func rotr(_ x: Words8, _ n: UInt32) -> Words8 { (x &>> n) | (x &<< (32 &- n)) }

@inline(__always)
func load(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
    UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

@inline(__always)
func store(_ p: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt32) {
    p.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
}
#endif
