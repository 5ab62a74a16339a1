import BlockStore
import CAR
import Multiformats
import NIOCore
import ObjectStorage
import Testing

/// The verified block cache in front of storage: hits cost no storage request and no hash, hold compact copies,
/// stay within their byte budget, and keep a root's CARs so a peer served its root from the cache still finds the
/// rest of its DAG.
@Suite struct VerifiedBlockCacheTests {
    @Test func aSecondPeerIsServedTheWholeDAGFromTheCacheWithStorageUntouched() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        let (bucket, _) = try await ingestedStore([try fixturePath(fixture)], label: "blockstore-cache")
        let counting = CountingBucket(base: bucket)
        let source = IndexedCARBlockSource(buckets: StoreBuckets(single: counting))
        let blocks = try sections(of: try fixturePath(fixture))
        let cids = blocks.map(\.0.cid)

        // The first peer: root first (as kubo asks), then the rest; everything comes from storage.
        let cold = await source.get(cids, peer: "first")
        #expect(cold.map(\.bytes) == blocks.map { Optional($0.1) })
        let coldReads = await counting.log.reads.count
        #expect(coldReads > 0)
        let afterCold = await source.statistics()
        #expect(afterCold.blockCache.insertions == blocks.count)

        // A second peer with no scope yet: its root is a cached root (its CARs join the scope), every other block
        // a hit. Not one storage request, byte-exact.
        await counting.log.reset()
        let warm = await source.get([cids[0]], peer: "second") + (await source.get(Array(cids.dropFirst()), peer: "second"))
        #expect(warm.map(\.bytes) == blocks.map { Optional($0.1) })
        #expect(await counting.log.reads.isEmpty)
        #expect(await counting.log.listings.isEmpty)
        let afterWarm = await source.statistics()
        #expect(afterWarm.blockCache.hits - afterCold.blockCache.hits == blocks.count)
        #expect(afterWarm.blocksServed == afterCold.blocksServed, "no block was read or verified again")
        #expect(await source.scope(of: "second") == (await source.scope(of: "first")))

        // Every CID form of the same multihash hits the same entry (CIDv1 raw leaf asked as its multihash under
        // another codec).
        let leaf = blocks[3]
        let otherForm = CID(codec: Multicodec.dagPB, multihash: leaf.0.cid.multihash)
        #expect(await source.get(otherForm, peer: "second").bytes == leaf.1)
        #expect(await counting.log.reads.isEmpty)
    }

    @Test func aHitCountsNoStorageSubrequest() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        let (bucket, _) = try await ingestedStore([try fixturePath(fixture)], label: "blockstore-cache-meter")
        let source = IndexedCARBlockSource(buckets: StoreBuckets(single: bucket))
        let cids = try sections(of: try fixturePath(fixture)).map(\.0.cid)
        let cold = StorageMeter()
        _ = await StorageMeter.$current.withValue(cold) { await source.get(cids, peer: "p") }
        #expect(cold.count > 0)
        let warm = StorageMeter()
        _ = await StorageMeter.$current.withValue(warm) { await source.get(cids, peer: "p") }
        #expect(warm.count == 0)
    }

    @Test func entriesAreCompactCopiesWithinTheByteBudget() throws {
        let cache = VerifiedBlockCache(capacity: 10_000)
        // A block that is a 1,000-byte slice of a 1 MiB read buffer.
        var run = ByteBufferAllocator().buffer(capacity: 1 << 20)
        run.writeRepeatingByte(7, count: 1 << 20)
        let slice = try #require(run.getSlice(at: 4096, length: 1000))
        let mh = try rawCID(of: [1, 1, 1, 1]).multihash
        let kept = cache.insert(mh, block: slice)
        #expect(kept.readableBytes == 1000)
        #expect(kept.capacity < 4096, "a compact copy, not a slice that pins the 1 MiB buffer")
        #expect(cache.get(mh)?.block == slice)
        // Filling past the budget evicts the least recently used.
        for n in 0..<20 {
            let other = try rawCID(of: [UInt8(n), 9, 9, 9]).multihash
            cache.insert(other, block: ByteBuffer(repeating: UInt8(n), count: 1000))
        }
        let statistics = cache.statistics
        #expect(statistics.bytes <= 10_000)
        #expect(statistics.evictions > 0)
        #expect(cache.get(mh) == nil)
    }

    @Test func zeroTurnsTheCacheOff() async throws {
        var settings = IndexedCARBlockSourceSettings()
        settings.blockCacheBytes = 0
        let fixture = try loadFixture("rawleaves-3mib")
        let (bucket, _) = try await ingestedStore([try fixturePath(fixture)], label: "blockstore-cache-off")
        let counting = CountingBucket(base: bucket)
        let source = IndexedCARBlockSource(buckets: StoreBuckets(single: counting), settings: settings)
        let cids = try sections(of: try fixturePath(fixture)).map(\.0.cid)
        _ = await source.get(cids, peer: "p")
        await counting.log.reset()
        _ = await source.get(cids, peer: "p")
        #expect(!(await counting.log.blockReads.isEmpty))
        #expect(await source.statistics().blockCache == VerifiedBlockCache.Statistics())
    }
}
