#if arch(x86_64)
import BLAKE3AVX2
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How BLAKE3 compresses whole chunks and parent nodes: eight at a time in AVX2 lanes where the CPU has
/// AVX2 (the module BLAKE3AVX2, compiled for AVX2 and so never entered without this check), one at a time
/// otherwise. Both give the same chaining values; only the pending last chunk and the root output, which
/// may be partial or need the `ROOT` flag, always take the scalar path in BLAKE3.swift.
extension BLAKE3 {
    /// The most chunks one subtree takes (the scratch holds one chaining value per chunk: 64 × 32 bytes).
    static let maxSubtreeChunks = CVStack.capacity

    /// Fewer nodes than this are cheaper one by one than in a full eight-lane pass.
    static let minimumLanes = 3

    enum Backend: Sendable, CaseIterable {
        case scalar
        case avx2

        /// The widest backend this CPU runs, checked once.
        static let best: Backend = cpuHasAVX2() ? .avx2 : .scalar

        /// The chaining values of `count` whole chunks at `p` (chunk `counter` first), written to
        /// `out + 32 * i`.
        func chunkCVs(
            _ p: UnsafeRawPointer, count: Int, key: ChainingValue, counter: UInt64, flags: UInt32,
            into out: UnsafeMutableRawPointer
        ) {
            var done = groupsOfEight(count) { first, lanes in
                #if arch(x86_64)
                hashMany(
                    inputs: p + first * BLAKE3.chunkLength, stride: BLAKE3.chunkLength, lanes: lanes,
                    blocks: BLAKE3.chunkLength / BLAKE3.blockLength, key: key.words8,
                    counter: counter &+ UInt64(first), counterStep: 1, flags: flags,
                    flagsStart: BLAKE3.chunkStart, flagsEnd: BLAKE3.chunkEnd, out: out + 32 * first)
                #endif
            }
            while done < count {
                BLAKE3.chunkCV(p + done * BLAKE3.chunkLength, key: key, counter: counter &+ UInt64(done), flags: flags)
                    .store(to: out + 32 * done)
                done += 1
            }
        }

        /// The chaining values of `count` parents whose blocks (left ‖ right child) lie at `p + 64 * i`,
        /// written to `out + 32 * i`; `out` may be `p` (a tree level reduced in place).
        func parentCVs(
            _ p: UnsafeRawPointer, count: Int, key: ChainingValue, flags: UInt32, into out: UnsafeMutableRawPointer
        ) {
            var done = groupsOfEight(count) { first, lanes in
                #if arch(x86_64)
                // Parents: counter 0, block length 64, flag PARENT.
                hashMany(
                    inputs: p + first * BLAKE3.blockLength, stride: BLAKE3.blockLength, lanes: lanes, blocks: 1,
                    key: key.words8, counter: 0, counterStep: 0, flags: flags | BLAKE3.parent, flagsStart: 0,
                    flagsEnd: 0, out: out + 32 * first)
                #endif
            }
            while done < count {
                let block = p + done * BLAKE3.blockLength
                let cv = parentCV(
                    ChainingValue(littleEndianBytes: block), ChainingValue(littleEndianBytes: block + 32),
                    key: key, flags: flags)
                cv.store(to: out + 32 * done)
                done += 1
            }
        }

        /// Hands `wide` the nodes `first ..< first + lanes` in groups of up to eight while at least
        /// `minimumLanes` are left, if this backend is the eight-lane one; returns how many it handed over
        /// (the rest are for the scalar path).
        @inline(__always)
        private func groupsOfEight(_ count: Int, _ wide: (_ first: Int, _ lanes: Int) -> Void) -> Int {
            var done = 0
            #if arch(x86_64)
            guard self == .avx2 else { return 0 }
            while count - done >= BLAKE3.minimumLanes {
                let lanes = min(8, count - done)
                wide(done, lanes)
                done += lanes
            }
            #endif
            return done
        }
    }

    /// The chaining value of the whole chunk at `p`: sixteen full blocks, "CHUNK_START" on the first and
    /// "CHUNK_END" on the last, all with the chunk's counter. Only for a chunk that is not the root.
    static func chunkCV(_ p: UnsafeRawPointer, key: ChainingValue, counter: UInt64, flags: UInt32) -> ChainingValue {
        var cv = key
        compress(&cv, block: p, counter: counter, blockLength: 64, flags: flags | chunkStart)
        var offset = blockLength
        while offset < chunkLength - blockLength {
            compress(&cv, block: p + offset, counter: counter, blockLength: 64, flags: flags)
            offset += blockLength
        }
        compress(&cv, block: p + offset, counter: counter, blockLength: 64, flags: flags | chunkEnd)
        return cv
    }
}

#if arch(x86_64)
extension BLAKE3.ChainingValue {
    var words8: SIMD8<UInt32> { SIMD8(h0, h1, h2, h3, h4, h5, h6, h7) }
}
#endif

/// Whether this CPU (and OS) runs AVX2 code: Linux lists `avx2` in /proc/cpuinfo only when the kernel
/// also saves the YMM registers; macOS answers `hw.optional.avx2_0`.
private func cpuHasAVX2() -> Bool {
    #if arch(x86_64) && os(Linux)
    guard let file = fopen("/proc/cpuinfo", "r") else { return false }
    defer { fclose(file) }
    var line: UnsafeMutablePointer<CChar>? = nil
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, file) > 0, let text = line {
        let entry = String(cString: text)
        guard entry.hasPrefix("flags") else { continue }
        return entry.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).contains("avx2")
    }
    return false
    #elseif arch(x86_64) && canImport(Darwin)
    var value: Int32 = 0
    var size = MemoryLayout<Int32>.size
    return sysctlbyname("hw.optional.avx2_0", &value, &size, nil, 0) == 0 && value != 0
    #else
    return false
    #endif
}
