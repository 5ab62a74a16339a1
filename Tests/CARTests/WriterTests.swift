import CAR
import Foundation
import Multiformats
import Testing

@Suite struct WriterTests {
    @Test func rewritingSampleV1IsByteIdentical() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let reader = try CARReader(source: Fixture.source("sample-v1.car"))
        let writer = try CARv1Writer(path: dir.path("out.car"), roots: reader.header.roots)
        #expect(writer.headerLength == reader.headerLength)
        while let (section, data) = try reader.nextBlock() {
            let written = try writer.append(cid: section.cid, data: data)
            #expect(written == section)  // same offsets, lengths, CID
        }
        try writer.close()
        #expect(try Fixture.bytes("sample-v1.car") == Array(try Data(contentsOf: dir.url.appendingPathComponent("out.car"))))
    }

    @Test func staticHelpersMatchTheStreamingWriter() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let blocks: [[UInt8]] = [[], [1, 2, 3], Array(repeating: 0xab, count: 3 << 20)]  // one over the 1 MiB buffer
        let cids = try blocks.map { data in
            CID(codec: Multicodec.raw, multihash: try data.withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) })
        }
        let writer = try CARv1Writer(path: dir.path("w.car"), roots: [cids[1]])
        var expected = CARv1Writer.header(roots: [cids[1]])
        var placed: [CARSection] = []
        for (cid, data) in zip(cids, blocks) {
            placed.append(try writer.append(cid: cid, data: data))
            expected += CARv1Writer.section(cid: cid, data: data)
        }
        #expect(writer.position == UInt64(expected.count))
        try writer.close()
        let file = Array(try Data(contentsOf: dir.url.appendingPathComponent("w.car")))
        #expect(file == expected)
        // Read back, hash-checked (sha2-256), with the offsets the writer reported.
        let reader = try CARReader(source: MemoryByteSource(file))
        var i = 0
        while let (section, data) = try reader.nextBlock() {
            #expect(section == placed[i])
            #expect(data == blocks[i])
            #expect(try data.withUnsafeBytes { try section.cid.multihash.verify($0) })
            i += 1
        }
        #expect(i == 3)
    }

    @Test func wrappingSampleV1ReproducesSampleWrappedV2() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let v1 = try Fixture.source("sample-v1.car")
        let index = try CARIndexer.multihashIndexSorted(of: v1)
        let header = try CARv2Writer.wrap(carv1: v1, index: .multihashSorted(index), to: dir.path("v2.car"))
        #expect(header == CARv2Header(dataOffset: 51, dataSize: 479907, indexOffset: 479958))
        let out = Array(try Data(contentsOf: dir.url.appendingPathComponent("v2.car")))
        #expect(out == (try Fixture.bytes("sample-wrapped-v2.car")))
    }

    @Test func wrappingWithoutIndexMatchesIndexlessSampleLayout() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let header = try CARv2Writer.wrap(carv1: Fixture.source("sample-v1.car"), index: nil, to: dir.path("v2.car"),
                                          fullyIndexed: true)
        #expect(header.indexOffset == 0 && header.isFullyIndexed)
        let out = Array(try Data(contentsOf: dir.url.appendingPathComponent("v2.car")))
        #expect(out[11] == 0x80)  // fully-indexed bit: 0x80 in the first characteristics byte
        var expected = try Fixture.bytes("sample-v2-indexless.car")
        expected[11] = 0x80
        #expect(out == expected)
    }

    @Test func v2HeaderCodecRoundTrips() throws {
        var h = CARv2Header(characteristicsHi: 0, characteristicsLo: 7, dataOffset: 51, dataSize: 123, indexOffset: 174)
        h.isFullyIndexed = true
        let bytes = h.encode()
        #expect(bytes.count == 40)
        #expect(try bytes.withUnsafeBytes { try CARv2Header.parse($0) } == h)
        h.isFullyIndexed = false
        #expect(h.characteristicsHi == 0)
    }

    @Test func writerReportsIOErrors() {
        #expect(carError { () throws(CARError) in _ = try CARv1Writer(path: "/nonexistent-dir/x.car", roots: []) }
            == .io(operation: "create /nonexistent-dir/x.car", errno: ENOENT))
        #expect(carError { () throws(CARError) in _ = try FileByteSource(path: "/nonexistent-dir/x.car") }
            == .io(operation: "open /nonexistent-dir/x.car", errno: ENOENT))
    }
}
