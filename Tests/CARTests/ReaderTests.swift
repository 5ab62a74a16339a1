import CAR
import Multiformats
import Testing

@Suite struct ReaderTests {
    @Test func readsSampleV1() throws {
        let source = try Fixture.source("sample-v1.car")
        let reader = try CARReader(source: source)
        #expect(reader.layout.version == 1)
        #expect(reader.layout.v2Header == nil)
        #expect(reader.layout.payload == 0..<479907)
        #expect(reader.header.roots.map(\.description) == [sampleRoot])
        #expect(reader.headerLength == 0x3d)
        var sections: [CARSection] = []
        while let s = try reader.next() { sections.append(s) }
        // go-car `car inspect sample-v1.car`: 1049 blocks, 6 raw (identity) + 1043 dag-cbor (blake2b-256),
        // block lengths 1…1342, CID lengths 14…38.
        #expect(sections.count == 1049)
        #expect(sections.filter { $0.cid.codec == Multicodec.raw }.count == 6)
        #expect(sections.filter { $0.cid.multihash.code == Multicodec.blake2b_256 }.count == 1043)
        #expect(sections.map(\.blockLength).min() == 1 && sections.map(\.blockLength).max() == 1342)
        #expect(sections.map { $0.cid.bytes.count }.min() == 14 && sections.map { $0.cid.bytes.count }.max() == 38)
        // Sections tile the file exactly.
        var expected = reader.headerLength
        for s in sections {
            #expect(s.offset == expected)
            let varintLength = UInt64(Varint.encodedLength(UInt64(s.cid.bytes.count) + s.blockLength))
            #expect(s.blockOffset == s.offset + varintLength + UInt64(s.cid.bytes.count))
            #expect(s.blockOffset + s.blockLength == s.offset + s.length)
            expected = s.offset + s.length
        }
        #expect(expected == source.count)
        #expect(sections.first?.cid.description == sampleRoot)
    }

    @Test func sectionOffsetsAndBlocksMatchTheRawFile() throws {
        let file = try Fixture.bytes("sample-v1.car")
        let reader = try CARReader(source: MemoryByteSource(file))
        var count = 0
        while let (section, data) = try reader.nextBlock() {
            #expect(Array(file[Int(section.blockOffset)..<Int(section.blockOffset + section.blockLength)]) == data)
            // A ranged read at the section offset: SectionHead finds the CID and block from there.
            let tail = Array(file[Int(section.offset)..<min(file.count, Int(section.offset) + 64)])
            let head = try tail.withUnsafeBytes { raw in try SectionHead.parse(raw: raw) }
            #expect(head.cid == section.cid)
            #expect(UInt64(head.headerLength) == section.blockOffset - section.offset)
            #expect(head.blockLength == section.blockLength)
            let measured = try tail.withUnsafeBytes { raw in try SectionHead.measure(raw: raw) }
            #expect(measured.headerLength == head.headerLength && measured.blockLength == head.blockLength)
            #expect(Array(tail[measured.varintLength..<measured.headerLength]) == section.cid.bytes)
            count += 1
        }
        #expect(count == 1049)
    }

    @Test func smallBufferGivesTheSameSections() throws {
        let big = try allSections(Fixture.source("sample-v1.car"))
        let small = try allSections(Fixture.source("sample-v1.car"), options: CARReadOptions(bufferSize: 4096))
        #expect(big == small)
        // Block bytes through a buffer smaller than some blocks' neighbourhoods still match.
        let file = try Fixture.bytes("sample-v1.car")
        let reader = try CARReader(source: Fixture.source("sample-v1.car"), options: CARReadOptions(bufferSize: 4096))
        var mismatches = 0
        while try reader.next(block: { s, data in
            if Array(data) != Array(file[Int(s.blockOffset)..<Int(s.blockOffset + s.blockLength)]) { mismatches += 1 }
        }) != nil {}
        #expect(mismatches == 0)
    }

    @Test func wrappedV2HasTheSameSectionsAsV1() throws {
        let v1 = try allSections(Fixture.source("sample-v1.car"))
        let reader = try CARReader(source: Fixture.source("sample-wrapped-v2.car"))
        #expect(reader.layout.version == 2)
        let h = try #require(reader.layout.v2Header)
        // go-car `car inspect sample-wrapped-v2.car`: data offset 51, length 479907, index offset 479958.
        #expect(h.dataOffset == 51 && h.dataSize == 479907 && h.indexOffset == 479958)
        #expect(!h.isFullyIndexed)
        #expect(reader.layout.payload == 51..<479958)
        #expect(reader.layout.index == 479958..<521708)
        #expect(reader.header.roots.map(\.description) == [sampleRoot])
        var v2: [CARSection] = []
        while let s = try reader.next() { v2.append(s) }
        #expect(v2 == v1)
    }

    @Test func indexlessV2() throws {
        let reader = try CARReader(source: Fixture.source("sample-v2-indexless.car"))
        #expect(reader.layout.version == 2)
        #expect(reader.layout.index == nil)
        var n = 0
        while try reader.next() != nil { n += 1 }
        #expect(n == 1049)
    }

    @Test func verifiesSha256Blocks() throws {
        // simple-unixfs.car: CIDv0 (sha2-256) dag-pb blocks.
        let reader = try CARReader(source: Fixture.source("simple-unixfs.car"))
        var verified = 0
        var failures = 0
        while try reader.next(block: { s, data in
            if (try? s.cid.multihash.verify(data)) == true { verified += 1 } else { failures += 1 }
        }) != nil {}
        #expect(verified == 22 && failures == 0)
    }

    @Test func sectionHeadErrors() {
        func parse(_ bytes: [UInt8]) -> CARError? {
            carError { () throws(CARError) in
                _ = try bytes.withUnsafeBytes { raw in Result { () throws(CARError) in try SectionHead.parse(raw: raw) } }.get()
            }
        }
        #expect(parse([]) == .truncatedSectionLength(offset: 0))
        #expect(parse([0x00]) == .zeroLengthSection(offset: 0))
        #expect(parse(hex("e0e0e0e0a706")) == .sectionTooLarge(offset: 0, length: 216830324832, limit: 8 << 20))
        #expect(parse(hex("ff ff ff ff ff ff ff ff ff ff")) == .invalidSectionLengthVarint(offset: 0, .overlong))
        #expect(parse(hex("05 01 55 12 20")) == .invalidSectionCID(offset: 0, .truncated(what: "multihash digest")))
    }

    // MARK: Bad files: each gives one specific error, never a crash or a hang.

    @Test func badHeaderLength() throws {
        #expect(sectionsUntilError(try Fixture.source("badheaderlength.car")).1
            == .headerTooLarge(length: 216830324832, limit: 32 << 20))
    }

    @Test func badSectionLength() throws {
        let (sections, error) = sectionsUntilError(try Fixture.source("badsectionlength.car"))
        #expect(sections.isEmpty)
        #expect(error == .sectionTooLarge(offset: 18, length: 216830324832, limit: 8 << 20))
    }

    @Test func corruptPragma() throws {
        // Header length 0x12 but only 15 bytes follow: go-car says "unexpected EOF".
        #expect(sectionsUntilError(try Fixture.source("sample-corrupt-pragma.car")).1 == .truncatedHeader)
    }

    @Test func rootlessV42() throws {
        // go-car: "invalid car version: 42".
        #expect(sectionsUntilError(try Fixture.source("sample-rootless-v42.car")).1 == .unsupportedVersion(42))
    }

    @Test func tailingCorruptSection() throws {
        let (sections, error) = sectionsUntilError(try Fixture.source("sample-v1-tailing-corrupt-section.car"))
        #expect(sections.count == 1048)
        #expect(error == .truncatedSection(offset: 479518, length: 387, available: 374))
    }

    @Test func zeroLengthSectionsErrorByDefault() throws {
        let (s1, e1) = sectionsUntilError(try Fixture.source("sample-v1-with-zero-len-section.car"))
        #expect(s1.count == 1049 && e1 == .zeroLengthSection(offset: 479907))
        let (s2, e2) = sectionsUntilError(try Fixture.source("sample-v1-with-zero-len-section2.car"))
        #expect(s2.count == 20 && e2 == .zeroLengthSection(offset: 20819))
    }

    @Test func zeroLengthSectionAsEOF() throws {
        let options = CARReadOptions(zeroLengthSectionAsEOF: true)
        let s1 = try allSections(Fixture.source("sample-v1-with-zero-len-section.car"), options: options)
        #expect(s1 == (try allSections(Fixture.source("sample-v1.car"))))
        let s2 = try allSections(Fixture.source("sample-v1-with-zero-len-section2.car"), options: options)
        #expect(s2.count == 20)
    }

    @Test func corruptDataAndIndexV2() throws {
        #expect(sectionsUntilError(try Fixture.source("sample-v2-corrupt-data-and-index.car")).1
            == .invalidDataOffset(0xffff_ffff_ffff_faae))
    }

    @Test func v2HeaderBounds() {
        #expect(carError { () throws(CARError) in try CARv2Header(dataOffset: 50, dataSize: 1, indexOffset: 0).validate(fileSize: 100) }
            == .invalidDataOffset(50))
        #expect(carError { () throws(CARError) in try CARv2Header(dataOffset: 51, dataSize: 0, indexOffset: 0).validate(fileSize: 100) }
            == .invalidDataSize(offset: 51, size: 0, fileSize: 100))
        #expect(carError { () throws(CARError) in try CARv2Header(dataOffset: 51, dataSize: .max, indexOffset: 0).validate(fileSize: 100) }
            == .invalidDataSize(offset: 51, size: .max, fileSize: 100))
        #expect(carError { () throws(CARError) in try CARv2Header(dataOffset: 51, dataSize: 40, indexOffset: 60).validate(fileSize: 100) }
            == .invalidIndexOffset(60))
        #expect(carError { () throws(CARError) in try CARv2Header(dataOffset: 51, dataSize: 40, indexOffset: 100).validate(fileSize: 100) }
            == .invalidIndexOffset(100))
        #expect(carError { () throws(CARError) in try CARv2Header(dataOffset: 51, dataSize: 40, indexOffset: 91).validate(fileSize: 100) } == nil)
    }

    @Test func truncatedV2Files() throws {
        let file = try Fixture.bytes("sample-wrapped-v2.car")
        // Pragma only.
        #expect(sectionsUntilError(MemoryByteSource(Array(file[0..<11]))).1 == .truncatedV2Header)
        // Pragma + half the header.
        #expect(sectionsUntilError(MemoryByteSource(Array(file[0..<31]))).1 == .truncatedV2Header)
        // Header intact, payload cut: the data size points past the end.
        #expect(sectionsUntilError(MemoryByteSource(Array(file[0..<1000]))).1
            == .invalidDataSize(offset: 51, size: 479907, fileSize: 1000))
        // A version-2 header whose bytes are not the pragma (roots key added).
        let fake = [0x11] + hex("a2 65 726f6f7473 80 67 76657273696f6e 02")
        #expect(sectionsUntilError(MemoryByteSource(fake + [UInt8](repeating: 0, count: 60))).1 == .invalidPragma)
    }

    @Test func innerPayloadMustBeVersion1() throws {
        // A CARv2 whose payload header says version 2.
        let payload = CARHeader(roots: [], version: 2).encode()
        var file = CARv2.pragma
        file += CARv2Header(dataOffset: 51, dataSize: UInt64(payload.count), indexOffset: 0).encode()
        file += payload
        #expect(sectionsUntilError(MemoryByteSource(file)).1 == .unexpectedPayloadVersion(2))
    }

    @Test func truncatedEverywhereNeverCrashes() throws {
        // Every prefix of the first 2 KiB of a v1 and a v2 file either reads cleanly or fails with an error.
        for name in ["sample-v1.car", "sample-wrapped-v2.car"] {
            let file = try Fixture.bytes(name)
            var errors = 0
            for cut in stride(from: 0, through: 2048, by: 7) {
                let (_, error) = sectionsUntilError(MemoryByteSource(Array(file[0..<cut])))
                if error != nil { errors += 1 }
            }
            #expect(errors > 250)
        }
    }

    @Test func sectionLimitIsConfigurable() throws {
        let (_, error) = sectionsUntilError(try Fixture.source("sample-v1.car"), options: CARReadOptions(maxSectionLength: 100))
        // The first section starts at 0x3d with varint `db 06` = 859.
        #expect(error == .sectionTooLarge(offset: 0x3d, length: 859, limit: 100))
    }
}
