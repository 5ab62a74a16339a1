import BlockStore
import CAR
import EdgeswapServer
import Foundation
import Multiformats
import NIOCore
import ObjectStorage
import Testing

/// The generated fixtures (`FixtureGenerator`), in a directory of their own so this test process never
/// races another target's tests over the same files. The generator rewrites anything stale.
let sharedFixtures: Result<String, SetupFailure> = {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-blockstore-fixtures").path
    do {
        _ = try FixtureGenerator.run(directory: dir)
        return .success(dir)
    } catch {
        return .failure(SetupFailure(message: "fixture generation failed: \(error)"))
    }
}()

struct SetupFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

func fixturesDirectory() throws -> String { try sharedFixtures.get() }

func loadFixture(_ name: String) throws -> FixtureManifest.Fixture {
    let manifest = try FixtureGenerator.loadManifest(directory: try fixturesDirectory())
    return try #require(manifest.fixture(named: name))
}

func fixturePath(_ fixture: FixtureManifest.Fixture) throws -> String {
    try fixturesDirectory() + "/" + fixture.car
}

func temporaryDirectory(_ label: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A fresh filesystem store holding the CARs at `paths`, ingested by the real `Ingester`.
func ingestedStore(_ paths: [String], label: String = "blockstore") async throws -> (FileSystemBucket, [IngestResult]) {
    let bucket = try FileSystemBucket(root: try temporaryDirectory(label))
    let ingester = Ingester(store: StoreBuckets(single: bucket))
    var results: [IngestResult] = []
    for path in paths { results.append(try await ingester.ingest(path: path)) }
    return (bucket, results)
}

/// Every section of a CAR file with its block bytes, in file order.
func sections(of path: String) throws -> [(CARSection, [UInt8])] {
    let reader = try CARReader(source: try FileByteSource(path: path))
    var out: [(CARSection, [UInt8])] = []
    while let (section, data) = try reader.nextBlock() { out.append((section, data)) }
    return out
}

/// What a `CountingBucket` saw.
actor BucketLog {
    struct Read: Sendable, Equatable {
        let key: String
        let range: ClosedRange<UInt64>?
    }

    private(set) var reads: [Read] = []
    private(set) var listings: [String] = []

    func read(_ key: String, _ range: ClosedRange<UInt64>?) { reads.append(Read(key: key, range: range)) }
    func list(_ prefix: String) { listings.append(prefix) }
    func reset() {
        reads = []
        listings = []
    }

    /// Whole-object reads of index objects.
    var indexReads: [Read] { reads.filter { $0.key.hasSuffix(".car.idx") } }
    /// Ranged reads of CAR files that are not the 51-byte read of a CAR's start.
    var blockReads: [Read] {
        reads.filter { read in
            guard read.key.hasSuffix(".car") else { return false }
            guard let range = read.range else { return true }
            return range.lowerBound != 0 || range.upperBound != 50
        }
    }
}

/// A real `FileSystemBucket` that records every read and listing, to count what the block source asks of
/// the store.
struct CountingBucket: Bucket {
    let base: FileSystemBucket
    let log = BucketLog()

    func get(_ key: String) async throws(BucketError) -> [UInt8] {
        await log.read(key, nil)
        return try await base.get(key)
    }

    func get(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> [UInt8] {
        await log.read(key, range)
        return try await base.get(key, range: range)
    }

    func head(_ key: String) async throws(BucketError) -> UInt64? { try await base.head(key) }

    func put(_ key: String, bytes: [UInt8]) async throws(BucketError) { try await base.put(key, bytes: bytes) }

    func put(_ key: String, contentsOf path: String) async throws(BucketError) {
        try await base.put(key, contentsOf: path)
    }

    func list(prefix: String, after: String?, limit: Int) async throws(BucketError) -> [String] {
        await log.list(prefix)
        return try await base.list(prefix: prefix, after: after, limit: limit)
    }
}

extension BlockLookup {
    var bytes: [UInt8]? {
        if case .block(let b) = self { return Array(b.readableBytesView) }
        return nil
    }
}

/// A raw-codec CIDv1 (sha2-256) of `bytes`: a block no fixture holds.
func rawCID(of bytes: [UInt8]) throws -> CID {
    let mh = try bytes.withUnsafeBytes { raw in
        Result { () throws(MultiformatsError) in try Multihash.compute(code: Multicodec.sha2_256, of: raw) }
    }.get()
    return CID(codec: Multicodec.raw, multihash: mh)
}
