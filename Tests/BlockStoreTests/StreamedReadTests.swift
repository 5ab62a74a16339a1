import BlockStore
import CAR
import EdgeswapServer
import Foundation
import Multiformats
import NIOConcurrencyHelpers
import NIOCore
import ObjectStorage
import Testing

/// A real bucket whose streamed reads are watched: how many pieces each read handed on so far, so a test can tell
/// when a block was answered relative to the pieces of its run.
struct PieceWatchingBucket: Bucket {
    let base: any Bucket
    /// Pieces handed on by every read so far.
    let pieces = NIOLockedValueBox(0)

    func get(_ key: String) async throws(BucketError) -> [UInt8] { try await base.get(key) }
    func get(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> [UInt8] {
        try await base.get(key, range: range)
    }
    func read(_ key: String, range: ClosedRange<UInt64>, chunks: (ByteBuffer) async -> Void) async throws(BucketError) {
        try await base.read(key, range: range) { piece in
            pieces.withLockedValue { $0 += 1 }
            await chunks(piece)
        }
    }
    func head(_ key: String) async throws(BucketError) -> UInt64? { try await base.head(key) }
    func put(_ key: String, bytes: [UInt8]) async throws(BucketError) { try await base.put(key, bytes: bytes) }
    func put(_ key: String, contentsOf path: String) async throws(BucketError) {
        try await base.put(key, contentsOf: path)
    }
    func list(prefix: String, after: String?, limit: Int) async throws(BucketError) -> [String] {
        try await base.list(prefix: prefix, after: after, limit: limit)
    }
}

/// A real bucket whose listings wait (up to `wait`) until `quorum` of them are in flight together, and which
/// records the most that ever were: listings made one after another each wait the whole time and show 1.
struct ListingBarrierBucket: Bucket {
    let base: any Bucket
    let quorum: Int
    let wait: Duration
    private let state = NIOLockedValueBox((inFlight: 0, arrived: 0, most: 0, total: 0))

    init(base: any Bucket, quorum: Int, wait: Duration = .seconds(10)) {
        self.base = base
        self.quorum = quorum
        self.wait = wait
    }

    var mostInFlight: Int { state.withLockedValue { $0.most } }
    var listings: Int { state.withLockedValue { $0.total } }

    func get(_ key: String) async throws(BucketError) -> [UInt8] { try await base.get(key) }
    func get(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> [UInt8] {
        try await base.get(key, range: range)
    }
    func head(_ key: String) async throws(BucketError) -> UInt64? { try await base.head(key) }
    func put(_ key: String, bytes: [UInt8]) async throws(BucketError) { try await base.put(key, bytes: bytes) }
    func put(_ key: String, contentsOf path: String) async throws(BucketError) {
        try await base.put(key, contentsOf: path)
    }
    func list(prefix: String, after: String?, limit: Int) async throws(BucketError) -> [String] {
        state.withLockedValue {
            $0.inFlight += 1
            $0.arrived += 1
            $0.total += 1
            $0.most = max($0.most, $0.inFlight)
        }
        let deadline = ContinuousClock.now + wait
        while state.withLockedValue({ $0.arrived % quorum != 0 && $0.inFlight < quorum }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        defer { state.withLockedValue { $0.inFlight -= 1 } }
        return try await base.list(prefix: prefix, after: after, limit: limit)
    }
}

/// Settings that read all of one CAR's wanted sections with one ranged read.
private func oneRunSettings(blockCacheBytes: Int) -> IndexedCARBlockSourceSettings {
    var settings = IndexedCARBlockSourceSettings()
    settings.coalesceGap = 1 << 20
    settings.maxCoalescedRead = 64 << 20
    settings.blockCacheBytes = blockCacheBytes
    return settings
}

/// Flips one byte in the middle of `section`'s block in the stored CAR (through the bucket, so S3 works too).
private func corrupt(_ section: CARSection, of car: CID, in bucket: any Bucket) async throws {
    var bytes = try await bucket.get(StoreLayout.carKey(car))
    bytes[Int(section.blockOffset + section.blockLength / 2)] ^= 0x40
    try await bucket.put(StoreLayout.carKey(car), bytes: bytes)
}

/// Asks for every block of `blocks` in one batch and checks each answer: byte-exact, except `victim`, corrupt.
private func expectEveryBlockServed(_ source: IndexedCARBlockSource, _ blocks: [(CARSection, [UInt8])],
                                    victim: Int, peer: String) async {
    let answers = await source.get(blocks.map(\.0.cid), peer: peer)
    for (i, ((section, data), answer)) in zip(blocks, answers).enumerated() {
        if i == victim {
            #expect(answer == .corrupt, "\(section.cid)")
        } else {
            #expect(answer.bytes == data, "\(i) \(section.cid)")
        }
    }
    let stats = await source.statistics()
    #expect(stats.blockReads == 1, "one coalesced run")
    #expect(stats.corruptBlocks == 1)
    #expect(stats.blocksServed == blocks.count - 1)
}

@Suite struct StreamedReadTests {
    /// A run whose bytes arrive in pieces smaller than a section head, a little larger than one, and larger than a
    /// block: every section is parsed across the pieces it spans, verified and served byte-exact, and a corrupt
    /// section in the middle of the run is refused while the sections after it are still served. With the block
    /// cache on and off (a block gathered across pieces is its own compact buffer; one inside a piece a slice).
    @Test(arguments: [13, 4096, 1 << 20], [0, 128 << 20])
    func piecesOfAnySizeServeEverySectionVerified(pieceSize: Int, blockCacheBytes: Int) async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        let (stored, results) = try await ingestedStore([try fixturePath(fixture)], label: "blockstore-pieces")
        let car = try #require(results.first).car
        let blocks = try sections(of: try fixturePath(fixture)).sorted { $0.0.offset < $1.0.offset }
        let victim = blocks.count / 2
        try await corrupt(blocks[victim].0, of: car, in: stored)

        let bucket = PieceWatchingBucket(base: try FileSystemBucket(root: stored.root, readChunkSize: pieceSize))
        let source = IndexedCARBlockSource(buckets: StoreBuckets(single: bucket),
                                           settings: oneRunSettings(blockCacheBytes: blockCacheBytes))
        await expectEveryBlockServed(source, blocks, victim: victim, peer: "pieces")
        let payload = blocks.last!.0.offset + blocks.last!.0.length - blocks[0].0.offset
        #expect(bucket.pieces.withLockedValue { $0 } >= Int(payload) / pieceSize)
        if blockCacheBytes > 0 {
            #expect(await source.statistics().blockCache.insertions == blocks.count - 1, "only verified blocks are cached")
        }
    }

    /// Within a run nothing waits for the run's end: the first block is answered while most of the run's pieces
    /// have not been read yet.
    @Test func blocksAreAnsweredWhileTheirRunIsStillArriving() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        let (stored, _) = try await ingestedStore([try fixturePath(fixture)], label: "blockstore-early")
        let blocks = try sections(of: try fixturePath(fixture)).sorted { $0.0.offset < $1.0.offset }
        let bucket = PieceWatchingBucket(base: try FileSystemBucket(root: stored.root, readChunkSize: 64 << 10))
        let source = IndexedCARBlockSource(buckets: StoreBuckets(single: bucket),
                                           settings: oneRunSettings(blockCacheBytes: 128 << 20))
        let cids = blocks.map(\.0.cid)
        // Locate first (index loaded, scope made), so the batch below is pure reading.
        #expect(await source.get(try CID(string: fixture.root), peer: "early").bytes != nil)
        source.blockCache.removeAll()
        let seen = NIOLockedValueBox<[(index: Int, piecesSoFar: Int)]>([])
        let before = bucket.pieces.withLockedValue { $0 }
        await source.lookup(cids.map { ($0, false) }, peer: "early", maxBlockSize: 2 << 20, replaceHaveWithBlockSize: 0) {
            index, answer in
            if case .block = answer {
                let pieces = bucket.pieces.withLockedValue { $0 } - before
                seen.withLockedValue { $0.append((index, pieces)) }
            }
        }
        let total = bucket.pieces.withLockedValue { $0 } - before
        let answered = seen.withLockedValue { $0 }
        #expect(answered.count == blocks.count)
        #expect(total > 20, "the run came in \(total) pieces")
        let first = try #require(answered.first)
        #expect(first.piecesSoFar < total / 2, "first block answered after \(first.piecesSoFar) of \(total) pieces")
        // Answers come in the order their sections lie in the run.
        #expect(answered.map(\.index) == Array(0..<blocks.count))
    }

    /// The listings one batch needs run at the same time: eight CIDs stored nowhere cost eight dudewhere
    /// listings in flight together, then eight blockmap listings in flight together.
    @Test func theListingsOfOneBatchRunConcurrently() async throws {
        let (stored, _) = try await ingestedStore([try fixturePath(try loadFixture("rawleaves-3mib"))],
                                                  label: "blockstore-listings")
        let bucket = ListingBarrierBucket(base: stored, quorum: 8)
        let source = IndexedCARBlockSource(buckets: StoreBuckets(single: bucket))
        let absent = try (0..<8).map { try rawCID(of: Array("absent \($0)".utf8)) }
        let answers = await source.get(absent, peer: "lister")
        #expect(answers.allSatisfy { $0 == .notFound })
        #expect(bucket.listings == 16)
        // Made one after another, each listing would wait out its 10 s alone and this would be 1.
        #expect(bucket.mostInFlight == 8, "most listings in flight together: \(bucket.mostInFlight)")
    }

    /// A peer with no scope asking for a root and leaves under it in one batch: the root's listing gives the CAR
    /// every leaf is found in, so no leaf costs a blockmap listing (the leaves' dudewhere listings run alongside
    /// the root's).
    @Test func leavesOfARootInTheSameBatchNeedNoBlockmapListing() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        let counting = CountingBucket(base: try await ingestedStore([try fixturePath(fixture)], label: "blockstore-batch").0)
        let source = IndexedCARBlockSource(buckets: StoreBuckets(single: counting))
        let blocks = try sections(of: try fixturePath(fixture))
        let root = try CID(string: fixture.root)
        let picks = [root, blocks[3].0.cid, blocks[7].0.cid]
        let answers = await source.get(picks, peer: "batch")
        #expect(answers.allSatisfy { $0.bytes != nil })
        let listings = await counting.log.listings
        #expect(Set(listings) == Set(picks.map(StoreLayout.rootPrefix)), "\(listings)")
        #expect(await source.scope(of: "batch").count == 1)
    }
}
