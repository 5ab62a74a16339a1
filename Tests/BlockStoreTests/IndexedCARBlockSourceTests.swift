import BlockStore
import CAR
import EdgeswapServer
import Foundation
import Multiformats
import ObjectStorage
import Testing
import UnixFS

/// Every fixture ingested once into one store, shared read-only by the tests that do not change it.
private let sharedStore = Task { () async throws -> FileSystemBucket in
    let manifest = try FixtureGenerator.loadManifest(directory: try fixturesDirectory())
    return try await ingestedStore(try manifest.fixtures.map { try fixturePath($0) }, label: "blockstore-shared").0
}

private func makeSource(_ bucket: some Bucket,
                        settings: IndexedCARBlockSourceSettings = IndexedCARBlockSourceSettings())
    -> IndexedCARBlockSource
{
    IndexedCARBlockSource(buckets: StoreBuckets(single: bucket), settings: settings)
}

@Suite struct IndexedCARBlockSourceTests {
    @Test(arguments: ["cidv0-20mib", "rawleaves-3mib", "blake3-2mib", "directory"])
    func everyBlockOfEveryFixtureIsServedByteExact(name: String) async throws {
        let bucket = try await sharedStore.value
        let source = makeSource(bucket)
        let fixture = try loadFixture(name)
        let expected = try sections(of: try fixturePath(fixture))
        // Roots first, as a peer walking the DAG would ask; one batch.
        let cids = expected.map(\.0.cid)
        let answers = await source.get(cids, peer: "peer-\(name)")
        var store: [CID: [UInt8]] = [:]
        for ((section, data), answer) in zip(expected, answers) {
            if section.cid.multihash.code == Multicodec.identity {
                #expect(answer == .notFound, "identity CIDs are never looked up")
                store[section.cid] = section.cid.multihash.digest
                continue
            }
            #expect(answer.bytes == data, "\(section.cid)")
            store[section.cid] = answer.bytes
        }
        // The served blocks rebuild every source file byte for byte.
        let reader = UnixFSReader { store[$0] }
        for file in fixture.sources {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: try fixturesDirectory() + "/" + file.path)))
            #expect(try reader.readFile(try CID(string: file.cid)) == bytes, "\(file.path)")
        }
        let stats = await source.statistics()
        #expect(stats.blocksServed == expected.filter { $0.0.cid.multihash.code != Multicodec.identity }.count)
        #expect(stats.corruptBlocks == 0)
        #expect(stats.indexLoads == 1)
    }

    @Test func peerScopeServesNonRootBlocksWithoutListing() async throws {
        let counting = CountingBucket(base: try await sharedStore.value)
        let source = makeSource(counting)
        let fixture = try loadFixture("rawleaves-3mib")
        let blocks = try sections(of: try fixturePath(fixture))
        let root = try CID(string: fixture.root)
        #expect(await source.get(root, peer: "alice").bytes == blocks[0].1)
        #expect(await source.scope(of: "alice").count == 1)
        let listingsAfterRoot = await counting.log.listings.count

        // A leaf asked by the same peer, alone: found in the scope's CAR, with no listing at all.
        let leaf = blocks[5]
        #expect(await source.get(leaf.0.cid, peer: "alice").bytes == leaf.1)
        #expect(await counting.log.listings.count == listingsAfterRoot)

        // Another peer has no scope: the same leaf costs a dudewhere and a blockmap listing.
        #expect(await source.get(leaf.0.cid, peer: "bob").bytes == leaf.1)
        let bobListings = await counting.log.listings.dropFirst(listingsAfterRoot)
        #expect(Array(bobListings) == [StoreLayout.rootPrefix(leaf.0.cid), StoreLayout.blockPrefix(leaf.0.cid.multihash)])
        #expect(await source.scope(of: "bob").isEmpty, "a blockmap hit does not make a scope")
    }

    @Test func blockUnderNoKnownRootIsFoundThroughBlockmap() async throws {
        let counting = CountingBucket(base: try await sharedStore.value)
        let source = makeSource(counting)
        let fixture = try loadFixture("blake3-2mib")
        let leaf = try sections(of: try fixturePath(fixture)).last!
        #expect(leaf.0.cid.description != fixture.root)
        #expect(await source.get(leaf.0.cid).bytes == leaf.1)
        #expect(await counting.log.listings.contains(StoreLayout.blockPrefix(leaf.0.cid.multihash)))
    }

    @Test func absentCIDIsNotFoundAndThenNegativelyCached() async throws {
        let counting = CountingBucket(base: try await sharedStore.value)
        // A TTL no loaded CI machine can outlast between two lines (the 5 s default once did).
        var settings = IndexedCARBlockSourceSettings()
        settings.negativeCacheTTL = .seconds(600)
        let source = makeSource(counting, settings: settings)
        let absent = try rawCID(of: Array("not stored".utf8))
        #expect(await source.get(absent) == .notFound)
        let listings = await counting.log.listings.count
        #expect(listings == 2)
        #expect(await source.get(absent) == .notFound)
        #expect(await counting.log.listings.count == listings, "the second miss is answered from the negative cache")
        #expect(await source.statistics().negativeCacheHits == 1)

        // Identity CIDs never reach the store.
        let identity = CID(codec: Multicodec.raw, multihash: Multihash(code: Multicodec.identity, digest: [1, 2, 3]))
        #expect(await source.get(identity) == .notFound)
        #expect(await counting.log.listings.count == listings)
        #expect(await counting.log.reads.isEmpty)
    }

    @Test func corruptedByteMakesOnlyThatBlockUnservable() async throws {
        let fixture = try loadFixture("rawleaves-3mib")
        let (bucket, results) = try await ingestedStore([try fixturePath(fixture)], label: "blockstore-corrupt")
        let car = try #require(results.first).car
        let blocks = try sections(of: try fixturePath(fixture))
        // Flip one byte in the middle of the fourth block's bytes, in the stored CAR.
        let victim = blocks[3].0
        let handle = try #require(FileHandle(forUpdatingAtPath: try bucket.path(for: StoreLayout.carKey(car))))
        let position = victim.blockOffset + victim.blockLength / 2
        try handle.seek(toOffset: position)
        let old = try #require(try handle.read(upToCount: 1))
        try handle.seek(toOffset: position)
        try handle.write(contentsOf: Data([old[0] ^ 0x40]))
        try handle.close()

        let source = makeSource(bucket)
        let answers = await source.get(blocks.map(\.0.cid), peer: "carol")
        for (i, ((section, data), answer)) in zip(blocks, answers).enumerated() {
            if i == 3 {
                #expect(answer == .corrupt, "\(section.cid)")
            } else {
                #expect(answer.bytes == data, "\(section.cid)")
            }
        }
        #expect(await source.statistics().corruptBlocks == 1)
    }

    @Test func adjacentWantedSectionsAreReadTogetherAndIndexesOnce() async throws {
        let counting = CountingBucket(base: try await sharedStore.value)
        var settings = IndexedCARBlockSourceSettings()
        settings.coalesceGap = 0
        settings.maxCoalescedRead = 64 << 20
        let source = makeSource(counting, settings: settings)
        let fixture = try loadFixture("rawleaves-3mib")
        let blocks = try sections(of: try fixturePath(fixture)).sorted { $0.0.offset < $1.0.offset }
        #expect(blocks.count == 14)
        // Three runs of sections adjacent in the file: 1-3, 6, 8-10 (given out of order on purpose).
        let picks = [9, 2, 6, 1, 10, 3, 8]
        let answers = await source.get(picks.map { blocks[$0].0.cid }, peer: "dave")
        for (pick, answer) in zip(picks, answers) { #expect(answer.bytes == blocks[pick].1) }
        let reads = await counting.log.blockReads
        #expect(reads.count == 3)
        let payloadRanges = reads.compactMap(\.range).sorted { $0.lowerBound < $1.lowerBound }
        #expect(payloadRanges.map(\.lowerBound) == [1, 6, 8].map { blocks[$0].0.offset })
        #expect(payloadRanges.map { $0.upperBound + 1 } == [3, 6, 10].map { blocks[$0].0.offset + blocks[$0].0.length })
        #expect(await source.statistics().blockReads == 3)

        // Repeated requests and many concurrent ones from a cold source: one index read per CAR.
        #expect(await counting.log.indexReads.count == 1)
        _ = await source.get(blocks.map(\.0.cid))
        #expect(await counting.log.indexReads.count == 1)

        let cold = CountingBucket(base: counting.base)
        let coldSource = makeSource(cold, settings: settings)
        let root = try CID(string: fixture.root)
        let leaves = blocks.map(\.0.cid)
        let served = await withTaskGroup(of: Int.self) { group in
            for i in 0..<16 {
                group.addTask {
                    let answers = await coldSource.get([root] + [leaves[i % leaves.count]], peer: "peer\(i)")
                    return answers.filter { $0.bytes != nil }.count
                }
            }
            return await group.reduce(0, +)
        }
        #expect(served == 32)
        #expect(await cold.log.indexReads.count == 1, "single flight: one index read for 16 concurrent cold requests")
        #expect(await coldSource.statistics().indexLoads == 1)
    }

    @Test func carv2StoredFilesAreServed() async throws {
        let fixture = try loadFixture("blake3-2mib")
        let v1Path = try fixturePath(fixture)
        let v2Path = try temporaryDirectory("blockstore-v2") + "/blake3.v2.car"
        // Build the v1 payload's index and wrap it in a CARv2 with a 51-byte data offset.
        var builder = IndexBuilder()
        let blocks = try sections(of: v1Path)
        for (section, _) in blocks { try builder.add(section.cid.multihash, offset: section.offset) }
        let header = try CARv2Writer.wrap(carv1: try FileByteSource(path: v1Path),
                                          index: .multihashSorted(builder.buildMultihashSorted()), to: v2Path)
        #expect(header.dataOffset == CARv2.minimumDataOffset)

        let (bucket, results) = try await ingestedStore([v2Path], label: "blockstore-carv2")
        let car = try #require(results.first).car
        let stored = try await bucket.get(StoreLayout.carKey(car), range: 0...10)
        #expect(stored == CARv2.pragma, "the CARv2 is stored as is")

        let source = makeSource(bucket)
        let answers = await source.get(blocks.map(\.0.cid), peer: "erin")
        for ((section, data), answer) in zip(blocks, answers) { #expect(answer.bytes == data, "\(section.cid)") }
        // The payload's last block ends where the index begins: a read must not run into the index.
        #expect(await source.statistics().corruptBlocks == 0)
    }

    @Test func blocksOverTheLimitAreRefused() async throws {
        var settings = IndexedCARBlockSourceSettings()
        settings.maxBlockSize = 1000
        let source = makeSource(try await sharedStore.value, settings: settings)
        let fixture = try loadFixture("rawleaves-3mib")
        let leaf = try sections(of: try fixturePath(fixture))[2]
        #expect(leaf.0.blockLength > 1000)
        let answer = await source.get(leaf.0.cid)
        guard case .tooLarge(let size) = answer else {
            Issue.record("expected tooLarge, got \(answer)")
            return
        }
        #expect(size >= leaf.0.blockLength)
    }

    @Test func indexCacheIsBoundedInBytes() async throws {
        let manifest = try FixtureGenerator.loadManifest(directory: try fixturesDirectory())
        let roots = try manifest.fixtures.map { try CID(string: $0.root) }
        // With the default budget, a second pass over every root reads no index again.
        let roomy = makeSource(try await sharedStore.value)
        for _ in 0..<2 { for answer in await roomy.get(roots) { #expect(answer.bytes != nil) } }
        #expect(await roomy.statistics().indexLoads == roots.count)

        // With a budget below the size of the larger indexes, those are read again on every pass (the verified
        // block cache is off: it would answer the second pass without any index).
        var settings = IndexedCARBlockSourceSettings()
        settings.indexCacheBytes = 2048
        settings.blockCacheBytes = 0
        let tight = makeSource(try await sharedStore.value, settings: settings)
        for _ in 0..<2 { for answer in await tight.get(roots) { #expect(answer.bytes != nil) } }
        #expect(await tight.statistics().indexLoads > roots.count)
    }

    @Test func peerScopeIsBoundedAndExpires() async throws {
        let manifest = try FixtureGenerator.loadManifest(directory: try fixturesDirectory())
        let roots = try manifest.fixtures.map { try CID(string: $0.root) }
        var settings = IndexedCARBlockSourceSettings()
        settings.peerScopeCARsPerPeer = 2
        settings.peerScopePeers = 1
        let bounded = makeSource(try await sharedStore.value, settings: settings)
        for root in roots { #expect(await bounded.get(root, peer: "frank").bytes != nil) }
        #expect(await bounded.scope(of: "frank").count == 2, "only the two most recent CARs are kept")
        #expect(await bounded.get(roots[0], peer: "grace").bytes != nil)
        #expect(await bounded.scope(of: "grace").count == 1)
        #expect(await bounded.scope(of: "frank").isEmpty, "one peer at most: frank's scope was dropped")

        settings = IndexedCARBlockSourceSettings()
        settings.peerScopeTTL = .zero
        let expiring = makeSource(try await sharedStore.value, settings: settings)
        #expect(await expiring.get(roots[1], peer: "heidi").bytes != nil)
        #expect(await expiring.scope(of: "heidi").isEmpty, "a scope with no lifetime is gone at once")
    }
}
