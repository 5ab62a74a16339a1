import CAR
import Foundation
import Multiformats
import Testing

@Suite struct InspectTests {
    @Test func inspectsCARv1LikeGoCar() throws {
        guard case .car(let s) = try CARInspector.inspect(path: Fixture.path("sample-v1.car")) else {
            Issue.record("expected a CAR"); return
        }
        // go-car cmd/car/testdata/script/inspect.txt (v1inspect.txt).
        #expect(s.version == 1 && s.v2Header == nil)
        #expect(s.roots.map(\.description) == [sampleRoot])
        #expect(s.blockCount == 1049)
        #expect(s.codecCounts == [Multicodec.raw: 6, Multicodec.dagCBOR: 1043])
        #expect(s.hashCounts == [Multicodec.identity: 6, Multicodec.blake2b_256: 1043])
        #expect(!s.hasIndex)
    }

    @Test func inspectsCARv2WithIndex() throws {
        let inspection = try CARInspector.inspect(path: Fixture.path("sample-wrapped-v2.car"))
        guard case .car(let s) = inspection else { Issue.record("expected a CAR"); return }
        #expect(s.version == 2)
        #expect(s.v2Header == CARv2Header(dataOffset: 51, dataSize: 479907, indexOffset: 479958))
        #expect(s.indexCodec == Multicodec.carMultihashIndexSorted)
        let text = inspection.text()
        #expect(text.contains("Data offset: 51\n"))
        #expect(text.contains("Index offset: 479958\n"))
        #expect(text.contains("Block count: 1049\n"))
        #expect(text.contains("\tblake2b-256: 1043\n"))
        #expect(text.contains("Index: present (car-multihash-index-sorted)\n"))
        #expect(inspection.json().contains("\"index\":\"car-multihash-index-sorted\""))
        guard case .car(let indexless) = try CARInspector.inspect(path: Fixture.path("sample-v2-indexless.car")) else {
            Issue.record("expected a CAR"); return
        }
        #expect(!indexless.hasIndex && indexless.blockCount == 1049)
    }

    @Test func inspectsIndexes() throws {
        let inspection = try CARInspector.inspect(path: Fixture.path("sample-multihash-index-sorted.carindex"))
        guard case .index(let s) = inspection else { Issue.record("expected an index"); return }
        #expect(s.codec == 0x0401)
        #expect(s.codes == [Multicodec.blake2b_256])
        #expect(s.buckets == [.init(code: Multicodec.blake2b_256, width: 40, count: 1043)])
        #expect(s.entries.count == 1043)
        // Each entry's key is the base58btc multihash of a block of sample-v1 at that offset.
        var byOffset: [UInt64: String] = [:]
        for sec in try allSections(Fixture.source("sample-v1.car")) {
            byOffset[sec.offset] = Multibase.base58btc.encodeWithoutPrefix(sec.cid.multihash.bytes)
        }
        for e in s.entries { #expect(byOffset[e.offset] == e.key) }
        let text = inspection.text()
        #expect(text.contains("Codec: car-multihash-index-sorted (0x401)\n"))
        #expect(text.contains("\tblake2b-256 width 40 (digest 32 B): 1043 entries\n"))
        #expect(text.contains("\t\(s.entries[0].key) \(s.entries[0].offset)\n"))
        let json = inspection.json()
        #expect(json.hasPrefix("{\"kind\":\"index\",\"codec\":\"car-multihash-index-sorted\",\"multihashCodes\":[\"blake2b-256\"]"))

        guard case .index(let sorted) = try CARInspector.inspect(path: Fixture.path("sample-index.carindex")) else {
            Issue.record("expected an index"); return
        }
        #expect(sorted.codec == 0x0400 && sorted.codes.isEmpty && sorted.entries.count == 1049)
    }

    @Test func carWithA1024ByteHeaderIsNotTakenForAnIndex() throws {
        // Enough roots that the header is exactly 1024 bytes: the file starts `80 08 a2`, like an index codec.
        var roots: [CID] = []
        var header: [UInt8] = []
        var i: UInt8 = 0
        while true {
            let cid = CID(codec: Multicodec.raw, multihash: Multihash(code: Multicodec.identity, digest: [i] + Array(repeating: 0, count: 20)))
            roots.append(cid)
            header = CARHeader(roots: roots).encodeBody()
            if header.count >= 1000 { break }
            i += 1
        }
        // Pad the last root's digest until the body is exactly 1024 bytes.
        let missing = 1024 - header.count
        let last = roots.removeLast()
        roots.append(CID(codec: Multicodec.raw, multihash: Multihash(code: Multicodec.identity, digest: last.multihash.digest + Array(repeating: 7, count: missing))))
        let file = CARHeader(roots: roots).encode()
        #expect(Array(file[0..<3]) == [0x80, 0x08, 0xa2])
        #expect(!CARInspector.isIndex(MemoryByteSource(file)))
        guard case .car(let s) = try CARInspector.inspect(MemoryByteSource(file)) else { Issue.record("expected a CAR"); return }
        #expect(s.roots == roots && s.blockCount == 0)
    }

    @Test func inspectErrorsAreSpecific() {
        #expect(carError { () throws(CARError) in _ = try CARInspector.inspect(path: Fixture.path("badheaderlength.car")) }
            == .headerTooLarge(length: 216830324832, limit: 32 << 20))
        #expect(carError { () throws(CARError) in _ = try CARInspector.inspect(path: Fixture.path("sample-v2-corrupt-data-and-index.car")) }
            == .invalidDataOffset(0xffff_ffff_ffff_faae))
        #expect(carError { () throws(CARError) in _ = try CARInspector.inspect(MemoryByteSource(hex("81 08 05 00 00 00"))) }
            == .truncatedIndex("multihash code"))
    }
}

/// Runs the built `edgeswap` binary (built by `swift build` / `swift build --build-tests`).
@Suite struct CLITests {
    static let binary = Fixture.root.appendingPathComponent(".build/debug/edgeswap").path

    private func run(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test func indexAndInspectEndToEnd() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the package first: \(Self.binary)")
        let dir = try TempDir()
        defer { dir.cleanup() }
        let index = try run(["index", Fixture.path("sample-wrapped-v2.car"), "--output", dir.path("s.idx")])
        #expect(index.status == 0)
        #expect(Array(try Data(contentsOf: dir.url.appendingPathComponent("s.idx")))
            == (try Fixture.bytes("sample-multihash-index-sorted.carindex")))
        let inspect = try run(["inspect", Fixture.path("sample-v1.car")])
        #expect(inspect.status == 0)
        #expect(inspect.out.contains("Roots: \(sampleRoot)\n"))
        #expect(inspect.out.contains("Block count: 1049\n"))
        let json = try run(["inspect", "--json", dir.path("s.idx")])
        #expect(json.status == 0 && json.out.hasPrefix("{\"kind\":\"index\""))
        let bad = try run(["inspect", Fixture.path("sample-v1-tailing-corrupt-section.car")])
        #expect(bad.status != 0)
        #expect(bad.err == "edgeswap inspect: \(Fixture.path("sample-v1-tailing-corrupt-section.car")): truncated section at offset 479518: declares 387 bytes, 374 remain\n")
        let missing = try run(["index", dir.path("nope.car"), "-o", dir.path("x.idx")])
        #expect(missing.status != 0 && missing.err.contains("No such file or directory"))
    }
}
