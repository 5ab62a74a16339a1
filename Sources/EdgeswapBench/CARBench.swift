import CAR
import Foundation
import Multiformats

/// CAR benchmarks: index lookups and section scans. Prints one line per figure.
///
/// - Lookup: a MultihashIndexSorted of 1,000,000 random sha2-256 digests (one bucket of width 40, 40 MB),
///   1,000,000 lookups of present keys and of absent keys, ns per lookup.
/// - Scan: a ~256 MiB CARv1 of 1,024 raw blocks of 256 KiB in a temporary directory, read with the
///   streaming reader (1 MiB buffer): headers only (blocks skipped), block bytes lent without hashing,
///   and block bytes verified with sha2-256.
func runCARBenchmarks() {
    print("== CAR")
    benchIndexLookups()
    do {
        try benchSectionScan()
    } catch {
        print("car scan: failed: \(error)")
    }
}

private func elapsed(_ body: () throws -> Void) rethrows -> Double {
    let clock = ContinuousClock()
    let start = clock.now
    try body()
    let d = clock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

private func benchIndexLookups() {
    let entries = 1_000_000
    var rng = SystemRandomNumberGenerator()
    // Present keys: the digests that go into the index; absent keys: fresh random digests.
    var present = [UInt8](repeating: 0, count: entries * 32)
    var absent = [UInt8](repeating: 0, count: entries * 32)
    for i in 0..<present.count { present[i] = UInt8.random(in: 0...255, using: &rng) }
    for i in 0..<absent.count { absent[i] = UInt8.random(in: 0...255, using: &rng) }
    var builder = IndexBuilder()
    let buildTime = elapsed {
        present.withUnsafeBytes { raw in
            for i in 0..<entries {
                try! builder.add(code: Multicodec.sha2_256, digest: UnsafeRawBufferPointer(rebasing: raw[i * 32..<i * 32 + 32]),
                                 offset: UInt64(i) * 262_200)
            }
        }
    }
    var index: MultihashIndexSorted? = nil
    let sortTime = elapsed { index = builder.buildMultihashSorted() }
    let idx = index!
    let encoded = CARIndex.multihashSorted(idx).encode()
    var decoded: CARIndex? = nil
    let decodeTime = elapsed { decoded = try? CARIndex.decode(encoded) }
    print(String(format: "car index build: 1M entries add %.0f ms, sort %.0f ms; decode+verify %.0f ms (%@)",
                 buildTime * 1e3, sortTime * 1e3, decodeTime * 1e3, decoded == nil ? "FAILED" : "ok"))

    // Shuffle the lookup order so the search does not walk the array sequentially.
    var order = Array(0..<entries)
    order.shuffle(using: &rng)
    var hits = 0
    let hitTime = present.withUnsafeBytes { raw in
        elapsed {
            for i in order where idx.offset(code: Multicodec.sha2_256, digest: UnsafeRawBufferPointer(rebasing: raw[i * 32..<i * 32 + 32])) != nil {
                hits += 1
            }
        }
    }
    var misses = 0
    let missTime = absent.withUnsafeBytes { raw in
        elapsed {
            for i in 0..<entries where idx.offset(code: Multicodec.sha2_256, digest: UnsafeRawBufferPointer(rebasing: raw[i * 32..<i * 32 + 32])) == nil {
                misses += 1
            }
        }
    }
    // One key looked up repeatedly: the fixed cost of a lookup with everything in cache.
    var hot = 0
    let hotTime = present.withUnsafeBytes { raw in
        elapsed {
            let key = UnsafeRawBufferPointer(rebasing: raw[0..<32])
            for _ in 0..<entries where idx.offset(code: Multicodec.sha2_256, digest: key) != nil { hot += 1 }
        }
    }
    // Through the `Multihash` convenience (one digest array per key, as a Bitswap want arrives).
    let keys = (0..<100_000).map { i in Multihash(code: Multicodec.sha2_256, digest: Array(present[order[i] * 32..<order[i] * 32 + 32])) }
    var found = 0
    let mhTime = elapsed { for k in keys where idx.offset(of: k) != nil { found += 1 } }
    print(String(format: "car index lookup (1M entries): present %.0f ns/lookup (%d/%d hit), absent %.0f ns/lookup (%d/%d miss), Multihash API %.0f ns/lookup, same key %.0f ns/lookup",
                 hitTime / Double(entries) * 1e9, hits, entries, missTime / Double(entries) * 1e9, misses, entries,
                 mhTime / Double(keys.count) * 1e9, hotTime / Double(entries) * 1e9))
    _ = found
}

private func benchSectionScan() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-carbench-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("scan.car").path

    let blockSize = 256 * 1024
    let blocks = 1024
    var block = [UInt8](repeating: 0, count: blockSize)
    var rng = SystemRandomNumberGenerator()
    for i in 0..<blockSize { block[i] = UInt8.random(in: 0...255, using: &rng) }
    var firstCID: CID? = nil
    let writeTime = try elapsed {
        var writer: CARv1Writer? = nil
        for b in 0..<blocks {
            // Vary the first bytes so every block (and CID) differs.
            withUnsafeBytes(of: UInt64(b)) { for (j, byte) in $0.enumerated() { block[j] = byte } }
            let mh = try block.withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
            let cid = CID(codec: Multicodec.raw, multihash: mh)
            if writer == nil {
                firstCID = cid
                writer = try CARv1Writer(path: path, roots: [cid])
            }
            try writer!.append(cid: cid, data: block)
        }
        try writer!.close()
    }
    _ = firstCID
    let source = try FileByteSource(path: path)
    let megabytes = Double(source.count) / 1e6
    print(String(format: "car write: %.1f MB in %.0f ms (sha2-256 + write) = %.0f MB/s", megabytes, writeTime * 1e3, megabytes / writeTime))

    // Warm the page cache so the figures measure the reader, not the disk.
    _ = try scan(source, mode: 1)
    for (mode, label) in [(0, "headers only (blocks skipped)"), (1, "block bytes, no hashing"), (2, "block bytes + sha2-256 verify")] {
        var best = Double.infinity
        var count = 0
        for _ in 0..<3 {
            var n = 0
            let t = try elapsed { n = try scan(source, mode: mode) }
            best = min(best, t)
            count = n
        }
        print(String(format: "car scan 256 KiB blocks, %@: %d sections, %.0f MB/s", label, count, megabytes / best))
    }
}

/// Reads every section; mode 0 skips blocks, 1 touches their bytes, 2 verifies sha2-256.
private func scan(_ source: FileByteSource, mode: Int) throws -> Int {
    let reader = try CARReader(source: source)
    var n = 0
    var checksum: UInt8 = 0
    var bad = 0
    switch mode {
    case 0:
        while try reader.next() != nil { n += 1 }
    case 1:
        while try reader.next(block: { _, data in checksum &+= data[data.count - 1] }) != nil { n += 1 }
    default:
        while try reader.next(block: { s, data in if (try? s.cid.multihash.verify(data)) != true { bad += 1 } }) != nil { n += 1 }
    }
    precondition(bad == 0, "sha2-256 verification failed on \(bad) blocks")
    _ = checksum
    return n
}
