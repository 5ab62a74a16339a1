import CAR
import Foundation
import Multiformats
import Testing

@Suite struct IndexTests {
    @Test func indexingSampleV1IsByteIdenticalToGoCar() throws {
        let index = try CARIndexer.multihashIndexSorted(of: Fixture.source("sample-v1.car"))
        #expect(index.entryCount == 1043)
        #expect(CARIndex.multihashSorted(index).encode() == (try Fixture.bytes("sample-multihash-index-sorted.carindex")))
        // The same from the v2 wrapping and from the no-identity sample (identity CIDs are not indexed).
        #expect(try CARIndexer.multihashIndexSorted(of: Fixture.source("sample-wrapped-v2.car")) == index)
        #expect(try CARIndexer.multihashIndexSorted(of: Fixture.source("sample-v1-noidentity.car")).entryCount == 1043)
    }

    @Test func readsTheSampleIndexAndItsLayout() throws {
        let bytes = try Fixture.bytes("sample-multihash-index-sorted.carindex")
        let decoded = try CARIndex.decode(bytes)
        guard case .multihashSorted(let index) = decoded else { Issue.record("expected 0x0401"); return }
        #expect(decoded.codec == 0x0401)
        #expect(index.groups.map(\.code) == [Multicodec.blake2b_256])
        #expect(index.groups[0].index.buckets.map(\.width) == [40])
        #expect(index.groups[0].index.buckets[0].count == 1043)
        #expect(decoded.encode() == bytes)
    }

    @Test func indexInsideWrappedV2MatchesAndPointsAtSections() throws {
        let source = try Fixture.source("sample-wrapped-v2.car")
        let reader = try CARReader(source: source)
        let range = try #require(reader.layout.index)
        let stored = try CARIndex.read(from: source, range: range)
        #expect(stored.entryCount == 1043)
        let built = try CARIndexer.multihashIndexSorted(of: Fixture.source("sample-v1.car"))
        #expect(stored == .multihashSorted(built))
        // Every entry's offset is the section of that multihash (ranged read at payload start + offset).
        let file = try Fixture.bytes("sample-wrapped-v2.car")
        var checked = 0
        try stored.forEach { code, digest, offset in
            let start = Int(reader.layout.payload.lowerBound + offset)
            let tail = Array(file[start..<start + 64])
            let head = try tail.withUnsafeBytes { try SectionHead.parse(raw: $0) }
            #expect(head.cid.multihash == Multihash(code: try #require(code), digest: Array(digest)))
            checked += 1
        }
        #expect(checked == 1043)
    }

    @Test func lookups() throws {
        let sections = try allSections(Fixture.source("sample-v1.car"))
        let index = try CARIndexer.multihashIndexSorted(of: Fixture.source("sample-v1.car"))
        for s in sections {
            let found = index.offset(of: s.cid.multihash)
            if s.cid.multihash.code == Multicodec.identity {
                #expect(found == nil)
            } else {
                #expect(found == s.offset)
            }
        }
        var digest = sections[0].cid.multihash.digest
        digest[31] ^= 1
        #expect(index.offset(of: Multihash(code: Multicodec.blake2b_256, digest: digest)) == nil)
        #expect(index.offset(of: Multihash(code: Multicodec.sha2_256, digest: sections[0].cid.multihash.digest)) == nil)
        #expect(index.offset(of: Multihash(code: Multicodec.blake2b_256, digest: Array(digest[0..<20]))) == nil)
        // Below the smallest and above the largest digest.
        #expect(index.offset(of: Multihash(code: Multicodec.blake2b_256, digest: Array(repeating: 0, count: 32))) == nil)
        #expect(index.offset(of: Multihash(code: Multicodec.blake2b_256, digest: Array(repeating: 0xff, count: 32))) == nil)
    }

    @Test func readsIndexSorted0x0400() throws {
        let bytes = try Fixture.bytes("sample-index.carindex")
        let decoded = try CARIndex.decode(bytes)
        guard case .sorted(let index) = decoded else { Issue.record("expected 0x0400"); return }
        #expect(index.buckets.map(\.width) == [18, 19, 20, 21, 40])
        #expect(index.buckets.map(\.count) == [2, 2, 1, 1, 1043])
        #expect(decoded.encode() == bytes)
        // It lists every block of sample-v1, identity ones included, at their section offsets.
        let builder = try CARIndexer.collect(Fixture.source("sample-v1.car"), includeIdentity: true)
        #expect(builder.count == 1049)
        #expect(CARIndex.sorted(builder.buildSorted()).encode() == bytes)
        for s in try allSections(Fixture.source("sample-v1.car")) {
            #expect(decoded.offset(of: s.cid.multihash) == s.offset)
        }
    }

    @Test func builderOrdersCodesWidthsAndDigests() throws {
        var b = IndexBuilder()
        try b.add(Multihash(code: 0x13, digest: [9, 9]), offset: 5)
        try b.add(Multihash(code: 0x12, digest: [3, 0, 0]), offset: 1)
        try b.add(Multihash(code: 0x12, digest: [1, 0]), offset: 2)
        try b.add(Multihash(code: 0x12, digest: [1, 0, 0]), offset: 3)
        try b.add(Multihash(code: 0x12, digest: [1, 0, 0]), offset: 0)  // duplicate digest: ordered by offset
        let index = b.buildMultihashSorted()
        var seen: [String] = []
        index.forEach { code, digest, offset in seen.append("\(code):\(Array(digest)):\(offset)") }
        #expect(seen == ["18:[1, 0]:2", "18:[1, 0, 0]:0", "18:[1, 0, 0]:3", "18:[3, 0, 0]:1", "19:[9, 9]:5"])
        let bytes = CARIndex.multihashSorted(index).encode()
        #expect(bytes == hex("""
            81 08  02000000
            1200000000000000 02000000
              0a000000 0a00000000000000 0100 0200000000000000
              0b000000 2100000000000000 010000 0000000000000000 010000 0300000000000000 030000 0100000000000000
            1300000000000000 01000000
              0a000000 0a00000000000000 0909 0500000000000000
            """))
        #expect(try CARIndex.decode(bytes) == .multihashSorted(index))
    }

    @Test func largeBucketLookupsThroughThePrefixTable() throws {
        // 20,000 sha2-256 digests (enough for the prefix table) plus digests at both ends of the prefix range.
        var b = IndexBuilder()
        var keys: [(Multihash, UInt64)] = []
        for i in 0..<20_000 {
            let data = Array("block \(i)".utf8)
            let mh = try data.withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
            keys.append((mh, UInt64(i) * 100))
        }
        keys.append((Multihash(code: Multicodec.sha2_256, digest: Array(repeating: 0x00, count: 32)), 7))
        keys.append((Multihash(code: Multicodec.sha2_256, digest: [0x00, 0x00] + Array(repeating: 0x01, count: 30)), 8))
        keys.append((Multihash(code: Multicodec.sha2_256, digest: Array(repeating: 0xff, count: 32)), 9))
        for (mh, offset) in keys { try b.add(mh, offset: offset) }
        let index = b.buildMultihashSorted()
        for (mh, offset) in keys {
            #expect(index.offset(of: mh) == offset)
            var other = mh.digest
            other[31] ^= 0x5a
            #expect(index.offset(of: Multihash(code: mh.code, digest: other)) == nil)
        }
        #expect(index.offset(of: Multihash(code: Multicodec.sha2_256, digest: [0x00, 0x00] + Array(repeating: 0x02, count: 30))) == nil)
        #expect(index.offset(of: Multihash(code: Multicodec.sha2_256, digest: [0xff, 0xff] + Array(repeating: 0x00, count: 30))) == nil)
        // Decoding rebuilds the same table: lookups on the decoded copy agree.
        guard case .multihashSorted(let decoded) = try CARIndex.decode(CARIndex.multihashSorted(index).encode()) else {
            Issue.record("expected 0x0401"); return
        }
        #expect(decoded == index)
        for (mh, offset) in keys.prefix(500) { #expect(decoded.offset(of: mh) == offset) }
    }

    @Test func writesIndexFiles() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let n = try CARIndexer.writeIndex(carPath: Fixture.path("sample-wrapped-v2.car"), outputPath: dir.path("x.idx"))
        #expect(n == 1043)
        #expect(Array(try Data(contentsOf: dir.url.appendingPathComponent("x.idx")))
            == (try Fixture.bytes("sample-multihash-index-sorted.carindex")))
    }

    // MARK: Malformed indexes

    private func decode(_ h: String) -> CARError? {
        let bytes = hex(h)
        return carError { () throws(CARError) in _ = try CARIndex.decode(bytes) }
    }

    @Test func malformedIndexesGiveSpecificErrors() throws {
        #expect(decode("") == .truncatedIndex("codec"))
        #expect(decode("80") == .truncatedIndex("codec"))
        #expect(decode("82 08 00000000") == .unsupportedIndexCodec(0x0402))
        #expect(decode("80 88 00") == .invalidIndexCodecVarint(.nonMinimal))
        #expect(decode("81 08 0100") == .truncatedIndex("code count"))
        #expect(decode("81 08 ffffffff") == .negativeIndexCount(-1))
        #expect(decode("81 08 01000000 1200000000000000") == .truncatedIndex("bucket count"))
        #expect(decode("80 08 01000000 07000000 0000000000000000") == .invalidIndexWidth(7))
        #expect(decode("80 08 01000000 01000002 0000000000000000") == .invalidIndexWidth(0x0200_0001))
        #expect(decode("80 08 01000000 0a000000 0b00000000000000") == .invalidBucketLength(width: 10, length: 11))
        #expect(decode("80 08 01000000 08000000 ffffffffffffffff") == .invalidBucketLength(width: 8, length: .max))
        // A length far past the bytes present is refused before anything is allocated.
        #expect(decode("80 08 01000000 08000000 0000000000000010") == .truncatedIndex("bucket records"))
        #expect(decode("80 08 01000000 0a000000 1400000000000000 0200 0000000000000000 0100 0000000000000000")
            == .unsortedIndexBucket(code: nil, width: 10, entry: 1))
        #expect(decode("80 08 02000000 0a000000 0000000000000000 0a000000 0000000000000000")
            == .duplicateIndexBucket(code: nil, width: 10))
        #expect(decode("81 08 02000000 1200000000000000 00000000 1200000000000000 00000000")
            == .duplicateIndexBucket(code: 0x12, width: 0))
        #expect(decode("80 08 00000000 00") == .trailingIndexBytes(1))
        // Empty indexes are valid.
        #expect(decode("80 08 00000000") == nil)
        #expect(decode("81 08 00000000") == nil)
    }

    @Test func truncatedSampleIndexNeverCrashes() throws {
        let bytes = try Fixture.bytes("sample-multihash-index-sorted.carindex")
        for cut in [0, 1, 2, 5, 6, 13, 14, 17, 18, 22, 29, 30, 100, bytes.count - 1] {
            let error = carError { () throws(CARError) in _ = try CARIndex.decode(Array(bytes[0..<cut])) }
            guard case .truncatedIndex = error else { Issue.record("cut \(cut): \(String(describing: error))"); continue }
        }
    }

    @Test func corruptIndexInsideV2() throws {
        // Flip the first digest byte of the last entry in sample-wrapped-v2's index: entries become unsorted.
        var file = try Fixture.bytes("sample-wrapped-v2.car")
        file[file.count - 40] = 0x00
        let source = MemoryByteSource(file)
        let reader = try CARReader(source: source)
        let range = try #require(reader.layout.index)
        let error = carError { () throws(CARError) in _ = try CARIndex.read(from: source, range: range) }
        #expect(error == .unsortedIndexBucket(code: Multicodec.blake2b_256, width: 40, entry: 1042))
    }
}
