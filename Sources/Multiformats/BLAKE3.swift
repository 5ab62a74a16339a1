/// BLAKE3 (the BLAKE3 paper, "BLAKE3: one function, fast everywhere", and its reference implementation's
/// specification), written from the spec:
///
/// - The input is split into 1024-byte chunks, each compressed block by block (64-byte blocks) starting
///   from the key words; chunk chaining values are merged pairwise into a binary tree whose left subtrees
///   are always complete powers of two ("the left subtree contains the largest power of 2 number of
///   chunks that leaves at least one byte for the right subtree").
/// - The root node is compressed again with the `ROOT` flag and an incrementing output block counter to
///   produce output of any length (the extendable output, XOF).
///
/// Three modes: `hash` (key = IV), `keyed_hash` (a 32-byte key, flag `KEYED_HASH`) and `derive_key`
/// (a context string hashed under `DERIVE_KEY_CONTEXT`, whose 32-byte output keys the hashing of the key
/// material under `DERIVE_KEY_MATERIAL`).
///
/// The hot path works on raw pointers: whole chunks are compressed straight from the caller's buffer,
/// the chaining-value stack lives inline in the hasher (no heap allocation at all until the output array),
/// and the compression function keeps its sixteen state words in locals so that they stay in registers.
/// Runs of whole chunks are hashed as complete subtrees of up to 64 chunks: on a CPU with AVX2 eight
/// chunks at a time, one per SIMD lane, then the subtree's parents level by level, eight at a time too
/// (BLAKE3Backend.swift and the module BLAKE3AVX2). The pending last chunk and the root stay scalar.
public enum BLAKE3 {
    /// The default output length in bytes (256 bits).
    public static let defaultOutputLength = 32
    /// The length of a `keyed_hash` key in bytes.
    public static let keyLength = 32

    /// The BLAKE3 hash of `data` (the `hash` mode), `outputLength` bytes long (any length; the first 32
    /// bytes of a longer output equal the default-length hash).
    public static func hash(_ data: UnsafeRawBufferPointer, outputLength: Int = defaultOutputLength) -> [UInt8] {
        var hasher = Hasher()
        hasher.update(data)
        return hasher.finalize(outputLength: outputLength)
    }

    /// The `keyed_hash` of `data` under a 32-byte `key`.
    ///
    /// - Precondition: `key.count == 32`.
    public static func keyedHash(
        key: UnsafeRawBufferPointer, _ data: UnsafeRawBufferPointer, outputLength: Int = defaultOutputLength
    ) -> [UInt8] {
        var hasher = Hasher(key: key)
        hasher.update(data)
        return hasher.finalize(outputLength: outputLength)
    }

    /// The `derive_key` output for `context` (a hard-coded, globally unique application string) and
    /// `keyMaterial`.
    public static func deriveKey(
        context: String, keyMaterial: UnsafeRawBufferPointer, outputLength: Int = defaultOutputLength
    ) -> [UInt8] {
        var hasher = Hasher(deriveKeyContext: context)
        hasher.update(keyMaterial)
        return hasher.finalize(outputLength: outputLength)
    }

    // MARK: Constants (BLAKE3 spec, section 2)

    static let blockLength = 64
    static let chunkLength = 1024

    // Domain separation flags, spec Table 3.
    static let chunkStart: UInt32 = 1 << 0
    static let chunkEnd: UInt32 = 1 << 1
    static let parent: UInt32 = 1 << 2
    static let root: UInt32 = 1 << 3
    static let keyedHashFlag: UInt32 = 1 << 4
    static let deriveKeyContext: UInt32 = 1 << 5
    static let deriveKeyMaterial: UInt32 = 1 << 6

    /// "IV0–IV7 … are the same as in SHA-256" (the first 32 bits of the fractional parts of the square
    /// roots of the first eight primes).
    static let iv = ChainingValue(
        0x6A09_E667, 0xBB67_AE85, 0x3C6E_F372, 0xA54F_F53A, 0x510E_527F, 0x9B05_688C, 0x1F83_D9AB, 0x5BE0_CD19)

    /// Eight 32-bit words: a key or a chaining value.
    struct ChainingValue: Sendable, Equatable {
        var h0, h1, h2, h3, h4, h5, h6, h7: UInt32

        @inline(__always)
        init(
            _ h0: UInt32, _ h1: UInt32, _ h2: UInt32, _ h3: UInt32,
            _ h4: UInt32, _ h5: UInt32, _ h6: UInt32, _ h7: UInt32
        ) {
            (self.h0, self.h1, self.h2, self.h3) = (h0, h1, h2, h3)
            (self.h4, self.h5, self.h6, self.h7) = (h4, h5, h6, h7)
        }

        /// Eight little-endian words from 32 bytes at `p` ("words are encoded little-endian").
        @inline(__always)
        init(littleEndianBytes p: UnsafeRawPointer) {
            self.init(
                p.loadLE(0), p.loadLE(4), p.loadLE(8), p.loadLE(12),
                p.loadLE(16), p.loadLE(20), p.loadLE(24), p.loadLE(28))
        }

        @inline(__always)
        func store(to p: UnsafeMutableRawPointer) {
            p.storeLE(h0, 0); p.storeLE(h1, 4); p.storeLE(h2, 8); p.storeLE(h3, 12)
            p.storeLE(h4, 16); p.storeLE(h5, 20); p.storeLE(h6, 24); p.storeLE(h7, 28)
        }
    }

    /// The sixteen words of the compression state, kept as separate stored properties of a local value so
    /// that the optimizer holds them in registers.
    @usableFromInline
    struct State {
        var s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15: UInt32
    }

    /// The quarter-round G (spec section 2.2): rotations 16, 12, 8, 7.
    @inline(__always)
    static func g(_ a: inout UInt32, _ b: inout UInt32, _ c: inout UInt32, _ d: inout UInt32, _ x: UInt32, _ y: UInt32) {
        a = a &+ b &+ x
        d = rotr(d ^ a, 16)
        c = c &+ d
        b = rotr(b ^ c, 12)
        a = a &+ b &+ y
        d = rotr(d ^ a, 8)
        c = c &+ d
        b = rotr(b ^ c, 7)
    }

    @inline(__always)
    static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x &>> n) | (x &<< (32 &- n)) }

    /// One round: G on the four columns, then on the four diagonals, with message words in order.
    @inline(__always)
    static func round(
        _ s: inout State,
        _ m0: UInt32, _ m1: UInt32, _ m2: UInt32, _ m3: UInt32, _ m4: UInt32, _ m5: UInt32, _ m6: UInt32,
        _ m7: UInt32, _ m8: UInt32, _ m9: UInt32, _ m10: UInt32, _ m11: UInt32, _ m12: UInt32, _ m13: UInt32,
        _ m14: UInt32, _ m15: UInt32
    ) {
        g(&s.s0, &s.s4, &s.s8, &s.s12, m0, m1)
        g(&s.s1, &s.s5, &s.s9, &s.s13, m2, m3)
        g(&s.s2, &s.s6, &s.s10, &s.s14, m4, m5)
        g(&s.s3, &s.s7, &s.s11, &s.s15, m6, m7)
        g(&s.s0, &s.s5, &s.s10, &s.s15, m8, m9)
        g(&s.s1, &s.s6, &s.s11, &s.s12, m10, m11)
        g(&s.s2, &s.s7, &s.s8, &s.s13, m12, m13)
        g(&s.s3, &s.s4, &s.s9, &s.s14, m14, m15)
    }

    /// The seven rounds of the compression function on a message block given as words.
    ///
    /// Between rounds the spec permutes the message words with
    /// `[2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]`; the argument lists below are those
    /// permutations applied 0…6 times, so no words move at run time.
    @inline(__always)
    static func rounds(
        _ cv: ChainingValue,
        _ m0: UInt32, _ m1: UInt32, _ m2: UInt32, _ m3: UInt32, _ m4: UInt32, _ m5: UInt32, _ m6: UInt32,
        _ m7: UInt32, _ m8: UInt32, _ m9: UInt32, _ m10: UInt32, _ m11: UInt32, _ m12: UInt32, _ m13: UInt32,
        _ m14: UInt32, _ m15: UInt32, counter: UInt64, blockLength: UInt32, flags: UInt32
    ) -> State {
        // "The compression function … initializes the state v0…v15 as h0…h7, IV0…IV3, t0, t1, b, d."
        var s = State(
            s0: cv.h0, s1: cv.h1, s2: cv.h2, s3: cv.h3, s4: cv.h4, s5: cv.h5, s6: cv.h6, s7: cv.h7,
            s8: iv.h0, s9: iv.h1, s10: iv.h2, s11: iv.h3,
            s12: UInt32(truncatingIfNeeded: counter), s13: UInt32(truncatingIfNeeded: counter &>> 32),
            s14: blockLength, s15: flags)
        round(&s, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)
        round(&s, m2, m6, m3, m10, m7, m0, m4, m13, m1, m11, m12, m5, m9, m14, m15, m8)
        round(&s, m3, m4, m10, m12, m13, m2, m7, m14, m6, m5, m9, m0, m11, m15, m8, m1)
        round(&s, m10, m7, m12, m9, m14, m3, m13, m15, m4, m0, m11, m2, m5, m8, m1, m6)
        round(&s, m12, m13, m9, m11, m15, m10, m14, m8, m7, m2, m5, m3, m0, m1, m6, m4)
        round(&s, m9, m14, m11, m5, m8, m12, m15, m1, m13, m3, m0, m10, m2, m6, m4, m7)
        round(&s, m11, m15, m5, m0, m1, m9, m8, m6, m14, m10, m2, m12, m3, m4, m7, m13)
        return s
    }

    /// Compresses the 64-byte block at `block` into `cv` (the truncated output: "the first eight words
    /// … v_i ⊕ v_{i+8}" form the new chaining value).
    @inline(__always)
    static func compress(
        _ cv: inout ChainingValue, block p: UnsafeRawPointer, counter: UInt64, blockLength: UInt32, flags: UInt32
    ) {
        let s = rounds(
            cv, p.loadLE(0), p.loadLE(4), p.loadLE(8), p.loadLE(12), p.loadLE(16), p.loadLE(20), p.loadLE(24),
            p.loadLE(28), p.loadLE(32), p.loadLE(36), p.loadLE(40), p.loadLE(44), p.loadLE(48), p.loadLE(52),
            p.loadLE(56), p.loadLE(60), counter: counter, blockLength: blockLength, flags: flags)
        cv = ChainingValue(
            s.s0 ^ s.s8, s.s1 ^ s.s9, s.s2 ^ s.s10, s.s3 ^ s.s11,
            s.s4 ^ s.s12, s.s5 ^ s.s13, s.s6 ^ s.s14, s.s7 ^ s.s15)
    }

    /// A parent node's chaining value: the compression of `left ‖ right` under the key with `PARENT`.
    @inline(__always)
    static func parentCV(
        _ l: ChainingValue, _ r: ChainingValue, key: ChainingValue, flags: UInt32
    ) -> ChainingValue {
        let s = rounds(
            key, l.h0, l.h1, l.h2, l.h3, l.h4, l.h5, l.h6, l.h7, r.h0, r.h1, r.h2, r.h3, r.h4, r.h5, r.h6, r.h7,
            counter: 0, blockLength: UInt32(blockLength), flags: flags | parent)
        return ChainingValue(
            s.s0 ^ s.s8, s.s1 ^ s.s9, s.s2 ^ s.s10, s.s3 ^ s.s11,
            s.s4 ^ s.s12, s.s5 ^ s.s13, s.s6 ^ s.s14, s.s7 ^ s.s15)
    }

    /// The last compression of a node, kept unevaluated: as a non-root node it yields a chaining value,
    /// as the root it is re-run with `ROOT` and counters 0, 1, 2, … to produce output blocks.
    struct Output {
        var inputCV: ChainingValue
        /// The node's final block (64 bytes, zero-padded past `blockLength`).
        var block: Block
        var counter: UInt64
        var blockLength: UInt32
        var flags: UInt32

        func chainingValue() -> ChainingValue {
            var cv = inputCV
            withUnsafeBytes(of: block) { b in
                compress(&cv, block: b.baseAddress!, counter: counter, blockLength: blockLength, flags: flags)
            }
            return cv
        }

        /// Writes the root output: "the full 16-word output of the compression function … for each
        /// output block counter value", all sixteen words `v_i ⊕ v_{i+8}` and `v_{i+8} ⊕ h_i`.
        func rootBytes(into out: UnsafeMutableRawBufferPointer) {
            guard var dst = out.baseAddress else { return }
            var remaining = out.count
            var outputCounter: UInt64 = 0
            withUnsafeBytes(of: block) { b in
                let p = b.baseAddress!
                var words = Block()
                while remaining > 0 {
                    let s = rounds(
                        inputCV, p.loadLE(0), p.loadLE(4), p.loadLE(8), p.loadLE(12), p.loadLE(16), p.loadLE(20),
                        p.loadLE(24), p.loadLE(28), p.loadLE(32), p.loadLE(36), p.loadLE(40), p.loadLE(44),
                        p.loadLE(48), p.loadLE(52), p.loadLE(56), p.loadLE(60),
                        counter: outputCounter, blockLength: blockLength, flags: flags | root)
                    withUnsafeMutableBytes(of: &words) { w in
                        let q = w.baseAddress!
                        ChainingValue(
                            s.s0 ^ s.s8, s.s1 ^ s.s9, s.s2 ^ s.s10, s.s3 ^ s.s11,
                            s.s4 ^ s.s12, s.s5 ^ s.s13, s.s6 ^ s.s14, s.s7 ^ s.s15
                        ).store(to: q)
                        ChainingValue(
                            s.s8 ^ inputCV.h0, s.s9 ^ inputCV.h1, s.s10 ^ inputCV.h2, s.s11 ^ inputCV.h3,
                            s.s12 ^ inputCV.h4, s.s13 ^ inputCV.h5, s.s14 ^ inputCV.h6, s.s15 ^ inputCV.h7
                        ).store(to: q + 32)
                        let n = min(remaining, BLAKE3.blockLength)
                        dst.copyMemory(from: q, byteCount: n)
                        dst += n
                        remaining -= n
                    }
                    outputCounter &+= 1
                }
            }
        }
    }

    /// 64 bytes of inline storage.
    struct Block: Sendable {
        var b0: UInt64 = 0, b1: UInt64 = 0, b2: UInt64 = 0, b3: UInt64 = 0
        var b4: UInt64 = 0, b5: UInt64 = 0, b6: UInt64 = 0, b7: UInt64 = 0
    }

    /// Inline storage for the chaining-value stack: 64 entries of 32 bytes. "The maximum input length is
    /// 2^64 − 1 bytes", i.e. fewer than 2^54 chunks, so the stack never holds more than 54 entries.
    struct CVStack: Sendable {
        typealias Eight = (Block, Block, Block, Block, Block, Block, Block, Block)  // 8 × 64 B = 16 CVs
        var storage: (Eight, Eight, Eight, Eight) = (
            (Block(), Block(), Block(), Block(), Block(), Block(), Block(), Block()),
            (Block(), Block(), Block(), Block(), Block(), Block(), Block(), Block()),
            (Block(), Block(), Block(), Block(), Block(), Block(), Block(), Block()),
            (Block(), Block(), Block(), Block(), Block(), Block(), Block(), Block())
        )
        static let capacity = 64
    }

    /// An incremental BLAKE3 hasher: feed input with `update` in pieces of any size, then read any
    /// amount of output with `finalize`. Finalizing does not consume the hasher (more input may follow).
    ///
    /// The value is self-contained (about 2.3 KiB, no heap storage), so copies are independent.
    public struct Hasher: Sendable {
        let key: ChainingValue
        let flags: UInt32
        /// How whole chunks and parents are compressed (the widest this CPU runs).
        let backend: Backend
        // Current chunk.
        var chunkCV: ChainingValue
        var chunkCounter: UInt64 = 0
        var buffer = Block()
        var bufferLength = 0
        var blocksCompressed = 0
        // Chaining values of completed subtrees, largest first.
        var stack = CVStack()
        var stackCount = 0

        init(key: ChainingValue, flags: UInt32, backend: Backend = .best) {
            self.key = key
            self.flags = flags
            self.backend = backend
            self.chunkCV = key
        }

        /// A hasher for the default `hash` mode.
        public init() {
            self.init(key: BLAKE3.iv, flags: 0)
        }

        /// A hasher for the `keyed_hash` mode.
        ///
        /// - Precondition: `key.count == 32`.
        public init(key: UnsafeRawBufferPointer) {
            precondition(key.count == BLAKE3.keyLength, "a BLAKE3 key is 32 bytes")
            self.init(key: ChainingValue(littleEndianBytes: key.baseAddress!), flags: BLAKE3.keyedHashFlag)
        }

        /// A hasher for the `derive_key` mode with the given context string; feed it the key material.
        public init(deriveKeyContext context: String) {
            // "The context string is hashed with the DERIVE_KEY_CONTEXT flag … its 32-byte output becomes
            // the key for hashing the key material with the DERIVE_KEY_MATERIAL flag."
            var contextHasher = Hasher(key: BLAKE3.iv, flags: BLAKE3.deriveKeyContext)
            var text = context
            text.withUTF8 { contextHasher.update(UnsafeRawBufferPointer($0)) }
            var contextKey = ChainingValue(0, 0, 0, 0, 0, 0, 0, 0)
            withUnsafeTemporaryAllocation(byteCount: 32, alignment: 8) { out in
                contextHasher.finalize(into: out)
                contextKey = ChainingValue(littleEndianBytes: out.baseAddress!)
            }
            self.init(key: contextKey, flags: BLAKE3.deriveKeyMaterial)
        }

        /// Absorbs more input.
        public mutating func update(_ data: UnsafeRawBufferPointer) {
            guard var p = data.baseAddress else { return }
            var n = data.count
            while n > 0 {
                let chunkLength = blocksCompressed * BLAKE3.blockLength + bufferLength
                if chunkLength == BLAKE3.chunkLength {
                    // The chunk is complete and more input follows, so it is not the root.
                    finishChunk()
                    continue
                }
                // Fast path: whole chunks straight from the input while more input is left after them
                // (the last chunk of the input must stay pending: it may be the root), as complete
                // subtrees hashed several chunks at a time.
                if chunkLength == 0 && n > BLAKE3.chunkLength {
                    let chunks = subtreeChunks(available: (n - 1) / BLAKE3.chunkLength)
                    pushSubtreeCV(subtreeCV(p, chunks: chunks), chunks: chunks)
                    p += chunks * BLAKE3.chunkLength
                    n -= chunks * BLAKE3.chunkLength
                    continue
                }
                // Within a chunk: compress a full buffered block only once more input follows it.
                if bufferLength == BLAKE3.blockLength {
                    compressBuffer()
                }
                // Whole blocks straight from the input, keeping at least one byte for later.
                while bufferLength == 0 && n > BLAKE3.blockLength
                    && blocksCompressed < BLAKE3.chunkLength / BLAKE3.blockLength - 1
                {
                    let start: UInt32 = blocksCompressed == 0 ? chunkStart : 0
                    compress(&chunkCV, block: p, counter: chunkCounter, blockLength: 64, flags: flags | start)
                    blocksCompressed += 1
                    p += BLAKE3.blockLength
                    n -= BLAKE3.blockLength
                }
                let take = min(BLAKE3.blockLength - bufferLength, n)
                let offset = bufferLength
                withUnsafeMutableBytes(of: &buffer) { b in
                    (b.baseAddress! + offset).copyMemory(from: p, byteCount: take)
                }
                bufferLength += take
                p += take
                n -= take
            }
        }

        /// Absorbs the bytes of a collection.
        public mutating func update(bytes: some Collection<UInt8>) {
            let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
            if done == nil { Array(bytes).withUnsafeBytes { update($0) } }
        }

        /// Fills `out` with output (any length), as if the input ended here.
        public func finalize(into out: UnsafeMutableRawBufferPointer) {
            var output = chunkOutput()
            var i = stackCount
            while i > 0 {
                i -= 1
                let left = stackEntry(i)
                let right = output.chainingValue()
                output = Output(
                    inputCV: key, block: Self.parentBlock(left, right), counter: 0,
                    blockLength: UInt32(BLAKE3.blockLength), flags: flags | parent)
            }
            output.rootBytes(into: out)
        }

        /// The output, `outputLength` bytes, as if the input ended here.
        public func finalize(outputLength: Int = BLAKE3.defaultOutputLength) -> [UInt8] {
            precondition(outputLength >= 0, "output length must not be negative")
            return [UInt8](unsafeUninitializedCapacity: outputLength) { buf, initialized in
                finalize(into: UnsafeMutableRawBufferPointer(buf))
                initialized = outputLength
            }
        }

        // MARK: Internals

        private mutating func compressBuffer() {
            let start: UInt32 = blocksCompressed == 0 ? chunkStart : 0
            let counter = chunkCounter
            let f = flags | start
            var cv = chunkCV
            withUnsafeBytes(of: buffer) { b in
                compress(&cv, block: b.baseAddress!, counter: counter, blockLength: 64, flags: f)
            }
            chunkCV = cv
            blocksCompressed += 1
            buffer = Block()
            bufferLength = 0
        }

        /// The pending chunk's final compression, not yet run.
        private func chunkOutput() -> Output {
            let start: UInt32 = blocksCompressed == 0 ? chunkStart : 0
            return Output(
                inputCV: chunkCV, block: buffer, counter: chunkCounter, blockLength: UInt32(bufferLength),
                flags: flags | start | chunkEnd)
        }

        private mutating func finishChunk() {
            pushChunkCV(chunkOutput().chainingValue())
            chunkCV = key
            buffer = Block()
            bufferLength = 0
            blocksCompressed = 0
        }

        /// Adds the chaining value of chunk `chunkCounter` and advances the counter. "After adding a chunk,
        /// merge as many completed subtrees as the number of trailing zero bits in the new total chunk
        /// count": each 0 bit means a pair of equal-size subtrees is complete.
        private mutating func pushChunkCV(_ chunk: ChainingValue) {
            pushSubtreeCV(chunk, chunks: 1)
        }

        /// Adds the chaining value of a complete subtree of `chunks` chunks (a power of two that divides
        /// `chunkCounter`): the same stack as after adding its chunks one by one, since every merge those
        /// pushes would do inside the subtree has been done.
        private mutating func pushSubtreeCV(_ subtree: ChainingValue, chunks: Int) {
            chunkCounter &+= UInt64(chunks)
            var total = chunkCounter &>> UInt64(chunks.trailingZeroBitCount)
            var count = stackCount
            let key = key, flags = flags
            withUnsafeMutableBytes(of: &stack.storage) { s in
                let base = s.baseAddress!
                var cv = subtree
                while total & 1 == 0 {
                    count -= 1
                    cv = parentCV(ChainingValue(littleEndianBytes: base + count * 32), cv, key: key, flags: flags)
                    total &>>= 1
                }
                cv.store(to: base + count * 32)
            }
            stackCount = count + 1
        }

        /// How many whole chunks the next subtree takes: the largest power of two that fits in `available`
        /// chunks, divides `chunkCounter` (so that it is a complete subtree of the final tree: "the left
        /// subtree contains the largest power of 2 number of chunks") and is at most `maxSubtreeChunks`.
        private func subtreeChunks(available: Int) -> Int {
            var chunks = min(BLAKE3.maxSubtreeChunks, 1 << (Int.bitWidth - 1 - available.leadingZeroBitCount))
            if chunkCounter != 0 { chunks = min(chunks, 1 << min(chunkCounter.trailingZeroBitCount, 62)) }
            return chunks
        }

        /// The chaining value of the complete subtree of `chunks` whole chunks at `p` (the first being chunk
        /// `chunkCounter`): all chunk chaining values, then the parents level by level, each step several
        /// nodes at a time when the CPU allows.
        private func subtreeCV(_ p: UnsafeRawPointer, chunks: Int) -> ChainingValue {
            if chunks == 1 { return BLAKE3.chunkCV(p, key: key, counter: chunkCounter, flags: flags) }
            // Scratch for the chunk chaining values; a parent block is two adjacent ones, so each level is
            // reduced in place.
            var scratch = CVStack()
            return withUnsafeMutableBytes(of: &scratch.storage) { s in
                let cvs = s.baseAddress!
                backend.chunkCVs(p, count: chunks, key: key, counter: chunkCounter, flags: flags, into: cvs)
                var nodes = chunks
                while nodes > 1 {
                    nodes /= 2
                    backend.parentCVs(UnsafeRawPointer(cvs), count: nodes, key: key, flags: flags, into: cvs)
                }
                return ChainingValue(littleEndianBytes: cvs)
            }
        }

        private func stackEntry(_ index: Int) -> ChainingValue {
            withUnsafeBytes(of: stack.storage) { s in ChainingValue(littleEndianBytes: s.baseAddress! + index * 32) }
        }

        private static func parentBlock(_ l: ChainingValue, _ r: ChainingValue) -> Block {
            var block = Block()
            withUnsafeMutableBytes(of: &block) { b in
                l.store(to: b.baseAddress!)
                r.store(to: b.baseAddress! + 32)
            }
            return block
        }
    }
}

extension UnsafeRawPointer {
    /// The little-endian 32-bit word at `offset` (any alignment).
    @inline(__always)
    func loadLE(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}

extension UnsafeMutableRawPointer {
    @inline(__always)
    func storeLE(_ value: UInt32, _ offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }
}
