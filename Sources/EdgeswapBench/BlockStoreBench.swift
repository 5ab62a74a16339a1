import BlockStore
import CAR
import EdgeswapServer
import Foundation
import Multiformats
import ObjectStorage

/// Block store benchmarks: batched gets of every block of the 20 MiB fixture (`cidv0-20mib`, 81 blocks of
/// up to 256 KiB) from a filesystem store in a temporary directory, through `IndexedCARBlockSource`.
///
/// - cold: a new source per batch (index read and decoded, CAR start read, root listed in dudewhere);
/// - warm: one source, index cached, the peer's scope known (no listings);
/// - warm, one block per get: the same blocks asked one at a time (no coalescing).
/// Every batch is checked (all blocks served); each figure is the best of several rounds.
func runBlockStoreBenchmarks() {
    print("== BlockStore")
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            try await benchBatchedGets()
        } catch {
            print("blockstore: failed: \(error)")
        }
        done.signal()
    }
    done.wait()
}

private func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

private func benchBatchedGets() async throws {
    let base = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-bench-blockstore-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: base) }
    let fixtures = base + "/fixtures"
    let outcome = try FixtureGenerator.run(directory: fixtures)
    guard let fixture = outcome.manifest.fixture(named: "cidv0-20mib") else {
        print("blockstore: fixture cidv0-20mib missing")
        return
    }
    let bucket = try FileSystemBucket(root: base + "/store")
    let store = StoreBuckets(single: bucket)
    _ = try await Ingester(store: store).ingest(path: fixtures + "/" + fixture.car)

    let reader = try CARReader(source: try FileByteSource(path: fixtures + "/" + fixture.car))
    var cids: [CID] = []
    var total: UInt64 = 0
    while let section = try reader.next() {
        cids.append(section.cid)
        total += section.blockLength
    }

    func check(_ answers: [BlockLookup]) throws {
        let served = answers.filter { if case .block = $0 { return true } else { return false } }.count
        guard served == cids.count else { throw BenchFailure(message: "served \(served) of \(cids.count)") }
    }
    func report(_ label: String, _ best: Double) {
        let mib = Double(total) / 1048576.0
        print(String(format: "blockstore %@: %d blocks, %.1f MiB in %.2f ms: %.0f blocks/s, %.0f MB/s",
                     label, cids.count, mib, best * 1e3, Double(cids.count) / best, Double(total) / best / 1e6))
    }
    let clock = ContinuousClock()
    let rounds = 10

    var best = Double.infinity
    for _ in 0..<rounds {
        let source = IndexedCARBlockSource(buckets: store)
        let start = clock.now
        let answers = await source.get(cids, peer: "bench")
        best = min(best, seconds(clock.now - start))
        try check(answers)
    }
    report("batched get, cold index", best)

    let warm = IndexedCARBlockSource(buckets: store)
    try check(await warm.get(cids, peer: "bench"))
    best = .infinity
    for _ in 0..<rounds {
        let start = clock.now
        let answers = await warm.get(cids, peer: "bench")
        best = min(best, seconds(clock.now - start))
        try check(answers)
    }
    report("batched get, warm index", best)

    best = .infinity
    for _ in 0..<rounds {
        let start = clock.now
        var answers: [BlockLookup] = []
        for cid in cids { answers.append(await warm.get(cid, peer: "bench")) }
        best = min(best, seconds(clock.now - start))
        try check(answers)
    }
    report("one get per block, warm index", best)
    let stats = await warm.statistics()
    print("blockstore warm source: \(stats.indexLoads) index load(s), \(stats.blockReads) ranged reads, "
        + "\(stats.listings) listings")
}

private struct BenchFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
