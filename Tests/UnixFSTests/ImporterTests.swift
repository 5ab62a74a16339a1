import Foundation
import Multiformats
import Testing
@testable import UnixFS

/// Kubo's default `ipfs add` (CIDv0, dag-pb leaves, 256 KiB chunks, balanced, 174 links) checked against
/// Debian's `ipfs-cid`, an independent implementation (rust-ipfs-unixfs) that prints the same CIDs.
@Suite struct KuboCompatibilityTests {
    static let kib256 = 262_144

    /// (size, seed): 1 B, one chunk exactly, one chunk + 1, a few chunks, and 180 chunks (more than 174, so
    /// the root is two levels above the leaves).
    static let cases: [(Int, UInt64)] = [
        (1, 1), (262_144, 2), (262_145, 3), (3 * 262_144 + 17, 4), (180 * 262_144 - 1000, 5),
    ]

    @Test(arguments: cases)
    func cidV0MatchesIpfsCid(size: Int, seed: UInt64) throws {
        guard ipfsCIDTool() != nil else {
            Issue.record("install ipfs-cid: apt-get install ipfs-cid")
            return
        }
        let bytes = SplitMix64.bytes(count: size, seed: seed)
        let (root, blocks) = try UnixFSImporter.importFile(bytes, options: .kuboDefault)
        #expect(root.cid.description == (try ipfsCIDv0(of: bytes)))
        #expect(root.cid.version == .v0)
        #expect(root.contentSize == UInt64(size))
        let chunks = (size + Self.kib256 - 1) / Self.kib256
        let inner = chunks == 1 ? 0 : (chunks <= 174 ? 1 : 1 + (chunks + 173) / 174)
        #expect(blocks.count == chunks + inner)
        let reader = UnixFSReader { blockMap(blocks)[$0] }
        #expect(try reader.readFile(root.cid) == bytes)
    }

    @Test func knownKuboCIDs() throws {
        // `echo "hello world" | ipfs add` and the empty file: CIDs every IPFS implementation agrees on.
        let hello = try UnixFSImporter.importFile(Array("hello world\n".utf8))
        #expect(hello.root.cid.description == "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
        let empty = try UnixFSImporter.importFile([])
        #expect(empty.root.cid.description == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
        #expect(empty.blocks.map(\.bytes) == [[0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]])
    }

    @Test func twoLevelShape() throws {
        let size = 180 * Self.kib256 - 1000
        let bytes = SplitMix64.bytes(count: size, seed: 5)
        let (root, blocks) = try UnixFSImporter.importFile(bytes)
        let map = blockMap(blocks)
        let rootNode = try PBNode(decoding: try #require(map[root.cid]))
        // The first child is full (174 leaves), the second holds the last 6.
        #expect(rootNode.links.count == 2)
        let first = try PBNode(decoding: try #require(map[rootNode.links[0].hash]))
        let second = try PBNode(decoding: try #require(map[rootNode.links[1].hash]))
        #expect(first.links.count == 174)
        #expect(second.links.count == 6)
        let rootData = try UnixFSData(decoding: try #require(rootNode.data))
        #expect(rootData.type == .file)
        #expect(rootData.filesize == UInt64(size))
        #expect(rootData.blocksizes == [174 * UInt64(Self.kib256), UInt64(size - 174 * Self.kib256)])
        #expect(rootData.data == nil)
        // Tsize is cumulative: block length plus the children's Tsize.
        let firstTotal = UInt64(try #require(map[rootNode.links[0].hash]).count)
            + first.links.reduce(0) { $0 + ($1.tsize ?? 0) }
        #expect(rootNode.links[0].tsize == firstTotal)
        #expect(root.cumulativeSize == UInt64(blocks.reduce(0) { $0 + $1.bytes.count }))
        // kubo writes an empty Name on file links (`12 00` on the wire).
        #expect(first.links.allSatisfy { $0.name == "" })
    }
}

@Suite struct BalancedLayoutTests {
    /// Shapes with a tiny fan-out, following boxo's depth-first fill by hand.
    @Test func smallFanoutShapes() throws {
        let options = ImportOptions(cidVersion: .v1, rawLeaves: true, chunkSize: 1, maxLinks: 3)
        func shape(_ n: Int) throws -> String {
            let bytes = (0..<n).map { UInt8($0) }
            let (root, blocks) = try UnixFSImporter.importFile(bytes, options: options)
            let map = blockMap(blocks)
            #expect(try UnixFSReader { map[$0] }.readFile(root.cid) == bytes)
            func describe(_ cid: CID) throws -> String {
                if cid.codec == Multicodec.raw { return "L" }
                let node = try PBNode(decoding: try #require(map[cid]))
                return "[" + (try node.links.map { try describe($0.hash) }.joined()) + "]"
            }
            return try describe(root.cid)
        }
        #expect(try shape(1) == "L")
        #expect(try shape(2) == "[LL]")
        #expect(try shape(3) == "[LLL]")
        #expect(try shape(4) == "[[LLL][L]]")
        #expect(try shape(9) == "[[LLL][LLL][LLL]]")
        #expect(try shape(10) == "[[[LLL][LLL][LLL]][[L]]]")
        #expect(try shape(13) == "[[[LLL][LLL][LLL]][[LLL][L]]]")
    }

    @Test func chunkerCutsAtFixedOffsets() {
        let bytes = SplitMix64.bytes(count: 1000, seed: 9)
        var chunker = FixedSizeChunker(chunkSize: 64)
        var chunks: [[UInt8]] = []
        var offset = 0
        var piece = 1
        while offset < bytes.count {
            let end = min(offset + piece, bytes.count)
            chunks += bytes[offset..<end].withUnsafeBytes { chunker.push($0) }
            offset = end
            piece = piece * 3 % 97 + 1
        }
        if let last = chunker.finish() { chunks.append(last) }
        #expect(chunks.map(\.count) == Array(repeating: 64, count: 15) + [40])
        #expect(chunks.flatMap { $0 } == bytes)
        #expect(FixedSizeChunker.chunks(of: bytes, chunkSize: 64).map(Array.init) == chunks)
        #expect(FixedSizeChunker.defaultChunkSize == 262_144)
    }

    @Test func streamingWritesEqualOneShot() throws {
        let bytes = SplitMix64.bytes(count: 3 * 262_144 + 5, seed: 11)
        var builder = BalancedFileBuilder(options: .cidV1RawLeaves)
        var blocks: [DAGBlock] = []
        for start in stride(from: 0, to: bytes.count, by: 100_000) {
            blocks += try builder.write(Array(bytes[start..<min(start + 100_000, bytes.count)]))
        }
        let (root, rest) = try builder.finish()
        blocks += rest
        let oneShot = try UnixFSImporter.importFile(bytes, options: .cidV1RawLeaves)
        #expect(root == oneShot.root)
        #expect(blocks == oneShot.blocks)
    }

    @Test func rawLeavesCIDs() throws {
        let small = SplitMix64.bytes(count: 100, seed: 1)
        let single = try UnixFSImporter.importFile(small, options: .cidV1RawLeaves)
        // One chunk with raw leaves: the root is the raw block itself.
        #expect(single.root.cid.description.hasPrefix("bafkrei"))
        #expect(single.root.cid == (try UnixFSImporter.rawBlock(small)).cid)
        let big = SplitMix64.bytes(count: 2 * 262_144 + 1, seed: 2)
        let multi = try UnixFSImporter.importFile(big, options: .cidV1RawLeaves)
        #expect(multi.root.cid.description.hasPrefix("bafybei"))
        #expect(multi.blocks.filter { $0.cid.codec == Multicodec.raw }.count == 3)
        #expect(multi.blocks.allSatisfy { $0.cid.version == .v1 })
        let root = try PBNode(decoding: try #require(blockMap(multi.blocks)[multi.root.cid]))
        // Raw leaves count their bytes as Tsize.
        #expect(root.links.map(\.tsize) == [262_144, 262_144, 1])
    }
}

@Suite struct DirectoryTests {
    @Test func directorySortsByBytesAndReadsBack() throws {
        var all: [DAGBlock] = []
        var entries: [(name: String, node: ImportedNode)] = []
        for (i, name) in ["b.txt", "B.txt", "a", "é", "z-big"].enumerated() {
            let size = name == "z-big" ? 600_000 : 10 + i
            let file = try UnixFSImporter.importFile(SplitMix64.bytes(count: size, seed: UInt64(20 + i)))
            all += file.blocks
            entries.append((name, file.root))
        }
        let (dir, block) = try UnixFSImporter.directory(entries: entries)
        all.append(block)
        let map = blockMap(all)
        let reader = UnixFSReader { map[$0] }
        let listed = try reader.listDirectory(dir.cid)
        #expect(listed.map(\.name) == ["B.txt", "a", "b.txt", "z-big", "é"])
        for entry in listed {
            let expected = try #require(entries.first { $0.name == entry.name })
            #expect(entry.cid == expected.node.cid)
            #expect(entry.tsize == expected.node.cumulativeSize)
            #expect(try reader.readFile(entry.cid).count == Int(expected.node.contentSize))
        }
        // Directory Data is exactly `Type=Directory` (08 01) and comes last.
        #expect(Array(block.bytes.suffix(4)) == [0x0a, 0x02, 0x08, 0x01])
        #expect(throws: UnixFSReadError.self) { try reader.readFile(dir.cid) }
        #expect(try reader.blocks(under: dir.cid).count == Set(all.map(\.cid)).count)
        #expect(throws: UnixFSDirectoryError.duplicateName("a")) {
            try UnixFSImporter.directory(entries: [("a", entries[0].node), ("a", entries[1].node)])
        }
        #expect(throws: UnixFSDirectoryError.invalidName("x/y")) {
            try UnixFSImporter.directory(entries: [("x/y", entries[0].node)])
        }
    }

    @Test func emptyDirectoryIsKubos() throws {
        // `ipfs object new unixfs-dir`: the well-known empty directory.
        let (dir, _) = try UnixFSImporter.directory(entries: [])
        #expect(dir.cid.description == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn")
    }
}

@Suite struct ReaderTests {
    @Test func detectsCorruptAndMissingBlocks() throws {
        let bytes = SplitMix64.bytes(count: 700_000, seed: 3)
        let (root, blocks) = try UnixFSImporter.importFile(bytes)
        var map = blockMap(blocks)
        let leaf = blocks[1].cid
        map[leaf]![10] ^= 1
        #expect(throws: UnixFSReadError.hashMismatch(leaf)) { try UnixFSReader { map[$0] }.readFile(root.cid) }
        map[leaf] = nil
        #expect(throws: UnixFSReadError.missingBlock(leaf)) { try UnixFSReader { map[$0] }.readFile(root.cid) }
    }

    @Test func blocksUnderIsPreOrder() throws {
        let (root, blocks) = try UnixFSImporter.importFile(SplitMix64.bytes(count: 600_000, seed: 4))
        let order = try UnixFSReader { blockMap(blocks)[$0] }.blocks(under: root.cid)
        #expect(order.first == root.cid)
        // Leaves come out of the importer first; pre-order puts them after the root, in file order.
        #expect(Array(order.dropFirst()) == blocks.dropLast().map(\.cid))
    }
}
