import Foundation
import Multiformats
import Testing
@testable import UnixFS

/// The blocks of a CARv1, parsed by hand (the test target does not depend on the CAR module):
/// `uvarint(len) ‖ header`, then sections `uvarint(len) ‖ CID ‖ block`.
private func carBlocks(_ bytes: [UInt8]) throws -> [(CID, [UInt8])] {
    var offset = 0
    func varint() throws -> Int {
        let (value, used) = try Varint.decode(bytes[offset...])
        offset += used
        return Int(value)
    }
    offset += try varint()
    var out: [(CID, [UInt8])] = []
    while offset < bytes.count {
        let length = try varint()
        let section = Array(bytes[offset..<offset + length])
        let (cid, used) = try section.withUnsafeBytes { try CID.parse($0) }
        out.append((cid, Array(section[used...])))
        offset += length
    }
    return out
}

/// `simple-unixfs.car` from go-car's test data: a directory made by kubo.
@Suite struct KuboMadeDAGTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fixtures/conformance/unixfs/simple-unixfs.car").standardized.path

    @Test func reencodesEveryBlockByteForByte() throws {
        let blocks = try carBlocks(Array(try Data(contentsOf: URL(fileURLWithPath: Self.path))))
        #expect(blocks.count > 3)
        var dagPB = 0
        for (cid, bytes) in blocks where cid.codec == Multicodec.dagPB {
            let node = try PBNode(decoding: bytes)
            #expect(node.encoded() == bytes, "\(cid)")
            if let data = node.data {
                let unixfs = try UnixFSData(decoding: data)
                #expect(unixfs.encoded() == data, "\(cid)")
            }
            dagPB += 1
        }
        #expect(dagPB > 0)
    }

    @Test func readsTheDirectory() throws {
        let blocks = try carBlocks(Array(try Data(contentsOf: URL(fileURLWithPath: Self.path))))
        let store = Dictionary(blocks, uniquingKeysWith: { a, _ in a })
        let reader = UnixFSReader { store[$0] }
        let root = blocks[0].0
        #expect(root.version == .v0)
        let entries = try reader.listDirectory(root)
        #expect(!entries.isEmpty)
        #expect(entries.map(\.name) == entries.map(\.name).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        // Rebuilding the directory from its entries gives back the same root (kubo's layout and sorting).
        var rebuilt: [(name: String, node: ImportedNode)] = []
        for entry in entries {
            rebuilt.append((entry.name, ImportedNode(cid: entry.cid, contentSize: 0, cumulativeSize: entry.tsize ?? 0)))
        }
        let (dir, _) = try UnixFSImporter.directory(entries: rebuilt.reversed())
        #expect(dir.cid == root)
        // Files read back, and re-importing their bytes gives kubo's CIDs.
        for entry in entries where store[entry.cid] != nil {
            let node = try PBNode(decoding: store[entry.cid]!)
            let type = try UnixFSData(decoding: node.data ?? []).type
            guard type == .file else { continue }
            let bytes = try reader.readFile(entry.cid)
            #expect(try UnixFSImporter.importFile(bytes).root.cid == entry.cid, "\(entry.name)")
        }
    }
}
