import Multiformats
import Testing
@testable import UnixFS

@Suite struct DagPBCodecTests {
    let cid = try! CID(string: "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")

    @Test func zeroLengthBlock() throws {
        // dag-pb spec: "The zero-length DAG-PB block is valid and will be decoded as having null `Data` and an
        // empty `Links` array", CIDv0 QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n.
        let node = try PBNode(decoding: [])
        #expect(node == PBNode())
        #expect(node.encoded() == [])
        let mh = try [UInt8]().withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
        #expect(try CID(v0: mh) == cid)
    }

    @Test func linksBeforeDataOnTheWire() throws {
        let node = PBNode(links: [PBLink(hash: cid, name: "", tsize: 300)], data: [0x08, 0x01])
        let bytes = node.encoded()
        // 12 <len> { 0a 22 <cid> 12 00 18 ac 02 } 0a 02 08 01
        #expect(bytes == [0x12, 0x29, 0x0a, 0x22] + cid.bytes + [0x12, 0x00, 0x18, 0xac, 0x02, 0x0a, 0x02, 0x08, 0x01])
        #expect(bytes.count == node.encodedLength)
        #expect(try PBNode(decoding: bytes) == node)
        // Absent Name and Tsize are not written.
        #expect(PBNode(links: [PBLink(hash: cid)]).encoded() == [0x12, 0x24, 0x0a, 0x22] + cid.bytes)
    }

    @Test func strictDecoderRejects() {
        let link: [UInt8] = [0x0a, 0x22] + cid.bytes
        func reject(_ bytes: [UInt8], _ expected: DagPBError) {
            #expect(throws: expected) { try PBNode(decoding: bytes) }
        }
        reject([0x0a, 0x00, 0x12, UInt8(link.count)] + link, .linksAfterData)
        reject([0x0a, 0x00, 0x0a, 0x00], .duplicateField(message: "PBNode", field: 1))
        reject([0x1a, 0x00], .unknownField(message: "PBNode", field: 3))
        reject([0x08, 0x01], .wrongWireType(message: "PBNode", field: 1, wireType: 0))
        reject([0x0a, 0x05, 0x01], .truncated(what: "PBNode"))
        reject([0x12, 0x02, 0x12, 0x00], .missingHash(linkIndex: 0))
        reject([0x12, UInt8(link.count + 2), 0x12, 0x00] + link, .linkFieldOutOfOrder(field: 1))
        reject([0x12, UInt8(link.count * 2)] + link + link, .duplicateField(message: "PBLink", field: 1))
        reject([0x12, UInt8(link.count + 2)] + link + [0x20, 0x01], .unknownField(message: "PBLink", field: 4))
        reject([0x12, UInt8(link.count + 2)] + link + [0x1a, 0x00], .wrongWireType(message: "PBLink", field: 3, wireType: 2))
        reject([0x12, 0x04, 0x0a, 0x02, 0x12, 0x20],
               .invalidHash(linkIndex: 0, reason: .truncated(what: "CIDv0")))
        reject([0x12, UInt8(link.count + 3)] + link + [0x12, 0x01, 0xff], .invalidName(linkIndex: 0))
        reject([0x12, UInt8(link.count + 11)] + link + [0x18] + Array(repeating: 0xff, count: 10),
               .varintOverflow(what: "PBLink Tsize"))
    }

    @Test func decoderNeverCrashesOnTruncations() throws {
        let node = PBNode(
            links: [PBLink(hash: cid, name: "file", tsize: 1 << 40), PBLink(hash: cid.v1, name: "x")],
            data: UnixFSData(type: .directory).encoded())
        let bytes = node.encoded()
        for cut in 0..<bytes.count {
            _ = try? PBNode(decoding: Array(bytes[0..<cut]))
        }
        #expect(try PBNode(decoding: bytes) == node)
    }
}

@Suite struct UnixFSDataCodecTests {
    @Test func encodesInFieldOrder() throws {
        let data = UnixFSData(type: .file, data: [0xaa], filesize: 1, blocksizes: [262_144, 1])
        #expect(data.encoded() == [0x08, 0x02, 0x12, 0x01, 0xaa, 0x18, 0x01, 0x20, 0x80, 0x80, 0x10, 0x20, 0x01])
        #expect(try UnixFSData(decoding: data.encoded()) == data)
        #expect(UnixFSData(type: .directory).encoded() == [0x08, 0x01])
    }

    @Test func decodesPackedBlocksizesAndSkipsUnknown() throws {
        // blocksizes packed (22 03 01 02 03), then an unknown field 9 (4a 01 00), mode 7 (38 a4 03).
        let bytes: [UInt8] = [0x08, 0x02, 0x22, 0x03, 0x01, 0x02, 0x03, 0x4a, 0x01, 0x00, 0x38, 0xa4, 0x03]
        let data = try UnixFSData(decoding: bytes)
        #expect(data.blocksizes == [1, 2, 3])
        #expect(data.mode == 0o644)
    }

    @Test func rejectsBadMessages() {
        #expect(throws: UnixFSDataError.missingType) { try UnixFSData(decoding: [0x18, 0x01]) }
        #expect(throws: UnixFSDataError.unknownType(9)) { try UnixFSData(decoding: [0x08, 0x09]) }
        #expect(throws: UnixFSDataError.wrongWireType(field: 3, wireType: 2)) {
            try UnixFSData(decoding: [0x08, 0x02, 0x1a, 0x00])
        }
        #expect(throws: UnixFSDataError.truncated) { try UnixFSData(decoding: [0x08, 0x02, 0x12, 0x05]) }
        #expect(throws: UnixFSDataError.unskippableWireType(field: 9, wireType: 3)) {
            try UnixFSData(decoding: [0x08, 0x02, 0x4b])
        }
    }
}
