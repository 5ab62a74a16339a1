import Bitswap
import Multiformats
import NIOCore
import Testing

@Suite("Bitswap message codec")
struct CodecTests {
    /// anchors-and-specs c.7: want-have for a raw CIDv1, priority 1, sendDontHave:
    /// `30 0a2e 0a2c 0a24 <01 55 12 20 + 32 B> 10 01 20 01 28 01`.
    @Test func wantHaveFixture() throws {
        let cid = try rawCID(Array("hello".utf8))
        #expect(cid.bytes == [0x01, 0x55, 0x12, 0x20] + helloDigest)
        let expected = hex("30 0a2e 0a2c 0a24") + cid.bytes + hex("10 01 20 01 28 01")
        let message = BitswapMessage(wantlist: .init(entries: [
            .init(cid: cid, priority: 1, wantType: .have, sendDontHave: true),
        ]))
        var out = ByteBuffer()
        message.encodeFrame(into: &out)
        #expect(bytes(out) == expected)
        #expect(message.encodedSize == 48)

        let decoded = try decodeFrame(buffer(expected))
        let entry = try #require(decoded.wantlist?.entries.first)
        #expect(entry == .init(cid: cid, priority: 1, cancel: false, wantType: .have, sendDontHave: true))
        #expect(decoded.wantlist?.full == false)
        #expect(decoded.rejectedEntries.isEmpty)
    }

    /// c.7: DONT_HAVE reply `2a 22 28 0a24 <cid> 10 01`.
    @Test func dontHaveFixture() throws {
        let cid = try rawCID(Array("hello".utf8))
        let message = BitswapMessage(blockPresences: [.init(cid: cid, type: .dontHave)])
        var out = ByteBuffer()
        message.encodeFrame(into: &out)
        #expect(bytes(out) == hex("2a 22 28 0a24") + cid.bytes + hex("10 01"))
        let decoded = try decodeFrame(out)
        #expect(decoded.blockPresences == [.init(cid: cid, type: .dontHave)])
    }

    /// c.7: block reply `0f 1a 0d 0a 04 01551220 12 05 "hello"`.
    @Test func blockReplyFixture() throws {
        let cid = try rawCID(Array("hello".utf8))
        #expect(cid.prefix == [0x01, 0x55, 0x12, 0x20])
        let message = BitswapMessage(payload: [.init(prefix: cid.prefix, data: buffer(Array("hello".utf8)))])
        var out = ByteBuffer()
        message.encodeFrame(into: &out)
        #expect(bytes(out) == hex("0f 1a 0d 0a 04 01551220 12 05") + Array("hello".utf8))
        let decoded = try decodeFrame(out)
        #expect(decoded.payload.count == 1)
        #expect(decoded.payload[0].prefix == cid.prefix)
        #expect(bytes(decoded.payload[0].data) == Array("hello".utf8))
    }

    /// proto3 defaults: a missing wantType is Block; a missing presence type is HAVE.
    @Test func proto3Defaults() throws {
        let cid = try rawCID(Array("hello".utf8))
        // Entry with only the CID.
        let entry = hex("0a24") + cid.bytes
        let body = hex("0a") + [UInt8(entry.count + 2)] + hex("0a") + [UInt8(entry.count)] + entry
        let decoded = try BitswapMessage(decoding: buffer(body))
        let e = try #require(decoded.wantlist?.entries.first)
        #expect(e.wantType == .block)
        #expect(e.priority == 0 && !e.cancel && !e.sendDontHave)
        // Presence with only the CID.
        let presence = hex("22 26 0a24") + cid.bytes
        let p = try BitswapMessage(decoding: buffer(presence))
        #expect(p.blockPresences == [.init(cid: cid, type: .have)])
    }

    @Test func negativePriorityUsesTenByteVarint() throws {
        let cid = try rawCID(Array("x".utf8))
        let message = BitswapMessage(wantlist: .init(entries: [.init(cid: cid, priority: -1)]))
        var body = ByteBuffer()
        message.encodeBody(into: &body)
        let raw = bytes(body)
        // Entry: 0a24 cid, then 10 + ff ff ff ff ff ff ff ff ff 01.
        let tail = Array(raw.suffix(11))
        #expect(tail == [0x10] + [UInt8](repeating: 0xff, count: 9) + [0x01])
        #expect(message.encodedSize == raw.count)
        let decoded = try BitswapMessage(decoding: body)
        #expect(decoded.wantlist?.entries.first?.priority == -1)
        // Max priority (kubo's root want-have) round-trips.
        let top = BitswapMessage(wantlist: .init(entries: [.init(cid: cid, priority: .max, wantType: .have)], full: true))
        var out = ByteBuffer()
        top.encodeFrame(into: &out)
        let back = try decodeFrame(out)
        #expect(back.wantlist?.entries.first?.priority == Int32.max)
        #expect(back.wantlist?.full == true)
    }

    @Test func v0CIDStaysV0() throws {
        let cid = try v0CID(Array("hello".utf8))
        #expect(cid.bytes.count == 34)
        let message = BitswapMessage(wantlist: .init(entries: [.init(cid: cid, priority: 5, cancel: true)]),
                                     blockPresences: [.init(cid: cid, type: .have)])
        var out = ByteBuffer()
        message.encodeFrame(into: &out)
        let decoded = try decodeFrame(out)
        #expect(decoded.wantlist?.entries.first?.cid.bytes == cid.bytes)
        #expect(decoded.wantlist?.entries.first?.cid.version == .v0)
        #expect(decoded.wantlist?.entries.first?.cancel == true)
        #expect(decoded.blockPresences.first?.cid.bytes == cid.bytes)
    }

    @Test func roundTripAllFieldsIncluding100Blocks() throws {
        var blocks: [ByteBuffer] = []
        var payload: [BitswapMessage.Block] = []
        for i in 0..<100 {
            let data = [UInt8](repeating: UInt8(i), count: i * 7)
            blocks.append(buffer(data))
            payload.append(.init(prefix: try rawCID(data).prefix, data: buffer(data)))
        }
        let cid = try rawCID([1, 2, 3])
        let message = BitswapMessage(wantlist: .init(entries: [.init(cid: cid, priority: 9)]),
                                     blocks: blocks, payload: payload,
                                     blockPresences: [.init(cid: cid, type: .have), .init(cid: cid, type: .dontHave)],
                                     pendingBytes: 123_456)
        var out = ByteBuffer()
        message.encodeFrame(into: &out)
        let decoded = try decodeFrame(out)
        #expect(decoded.blocks.map(bytes) == blocks.map(bytes))
        #expect(decoded.payload.map(\.prefix) == payload.map(\.prefix))
        #expect(decoded.payload.map { bytes($0.data) } == payload.map { bytes($0.data) })
        #expect(decoded.blockPresences == message.blockPresences)
        #expect(decoded.pendingBytes == 123_456)
        #expect(decoded.wantlist == message.wantlist)
    }

    @Test func protocolIDs() {
        #expect(BitswapProtocolVersion(protocolID: "/ipfs/bitswap/1.2.0") == .v1_2_0)
        #expect(BitswapProtocolVersion(protocolID: "/ipfs/bitswap/1.1.0") == .v1_1_0)
        #expect(BitswapProtocolVersion(protocolID: "/ipfs/bitswap/1.0.0") == .v1_0_0)
        #expect(BitswapProtocolVersion(protocolID: "/ipfs/bitswap") == .v1_0_0)
        #expect(BitswapProtocolVersion(protocolID: "/ipfs/bitswap/1.3.0") == nil)
        #expect(BitswapProtocolVersion.protocolIDs.map(\.id).first == "/ipfs/bitswap/1.2.0")
    }
}

@Suite("Bitswap decoder errors and framing")
struct DecoderErrorTests {
    let cid: CID
    init() throws { cid = try rawCID(Array("hello".utf8)) }

    func entryBody(_ fields: [UInt8]) -> [UInt8] {
        let entry = hex("0a24") + cid.bytes + fields
        let wantlist = [0x0a, UInt8(entry.count)] + entry
        return [0x0a, UInt8(wantlist.count)] + wantlist
    }

    @Test func unknownFieldsAreSkipped() throws {
        // Field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32 in Message and Entry.
        let unknown = hex("48 05 51 0102030405060708 5a 02 aabb 65 01020304")
        let body = entryBody(hex("10 07") + unknown) + unknown
        let m = try BitswapMessage(decoding: buffer(body))
        #expect(m.wantlist?.entries == [.init(cid: cid, priority: 7)])
    }

    @Test func wrongWireType() {
        // priority (field 2) sent as length-delimited.
        #expect(throws: BitswapDecodeError.wrongWireType(field: "Entry.priority", expected: 0, actual: 2)) {
            try BitswapMessage(decoding: buffer(entryBody(hex("12 01 00"))))
        }
        // wantlist sent as varint.
        #expect(throws: BitswapDecodeError.wrongWireType(field: "Message.wantlist", expected: 2, actual: 0)) {
            try BitswapMessage(decoding: buffer(hex("08 01")))
        }
    }

    @Test func groupsAndFieldZeroRejected() {
        #expect(throws: BitswapDecodeError.unsupportedWireType(field: 9, wireType: 3)) {
            try BitswapMessage(decoding: buffer(hex("4b")))
        }
        #expect(throws: BitswapDecodeError.invalidFieldNumber(0)) {
            try BitswapMessage(decoding: buffer(hex("02 00")))
        }
    }

    @Test func truncation() {
        #expect(throws: BitswapDecodeError.truncatedField(field: "Message.wantlist", declared: 5, available: 2)) {
            try BitswapMessage(decoding: buffer(hex("0a 05 0a 00")))
        }
        #expect(throws: BitswapDecodeError.truncatedVarint(field: "Message.pendingBytes")) {
            try BitswapMessage(decoding: buffer(hex("28 80")))
        }
        #expect(throws: BitswapDecodeError.truncatedFixed(field: "Message field 10")) {
            try BitswapMessage(decoding: buffer(hex("51 0102")))
        }
    }

    @Test func overlongVarint() {
        #expect(throws: BitswapDecodeError.overlongVarint(field: "Message.pendingBytes")) {
            try BitswapMessage(decoding: buffer(hex("28") + [UInt8](repeating: 0x80, count: 10) + [0x01]))
        }
        // 10th byte with more than the 64th bit.
        #expect(throws: BitswapDecodeError.overlongVarint(field: "Message.pendingBytes")) {
            try BitswapMessage(decoding: buffer(hex("28") + [UInt8](repeating: 0xff, count: 9) + [0x02]))
        }
    }

    @Test func badCIDs() {
        // An entry whose CID has trailing garbage.
        let entry = hex("0a25") + cid.bytes + [0x00]
        let body = [0x0a, UInt8(entry.count + 2), 0x0a, UInt8(entry.count)] + entry
        #expect(throws: BitswapDecodeError.invalidCID(field: "Wantlist.Entry.block", reason: "1 trailing bytes after the CID")) {
            try BitswapMessage(decoding: buffer(body))
        }
        // CID version 2.
        let v2 = hex("0a 08 0a 06 0a 04 02551200")
        #expect(throws: BitswapDecodeError.invalidCID(field: "Wantlist.Entry.block", reason: "unsupported CID version 2")) {
            try BitswapMessage(decoding: buffer(v2))
        }
        // Entry without a CID.
        #expect(throws: BitswapDecodeError.missingCID(field: "Wantlist.Entry")) {
            try BitswapMessage(decoding: buffer(hex("0a 04 0a 02 10 01")))
        }
        #expect(throws: BitswapDecodeError.unknownPresenceType(7)) {
            try BitswapMessage(decoding: buffer(hex("22 28 0a24") + cid.bytes + hex("10 07")))
        }
    }

    @Test func overLongCIDIsARejectedEntry() throws {
        // A CIDv1 identity multihash with a 200-byte digest: 1+1+1+2+200 = 205 bytes > 168.
        let long = hex("01 55 00 c801") + [UInt8](repeating: 0x61, count: 200)
        let entry = [0x0a, 0xcd, 0x01] + long
        let wantlist = [0x0a, 0xd0, 0x01] + entry
        let body = [0x0a, 0xd3, 0x01] + wantlist
        let m = try BitswapMessage(decoding: buffer(body))
        #expect(m.wantlist?.entries.isEmpty == true)
        #expect(m.rejectedEntries == [.cidTooLong(205)])
    }

    /// An unknown want type is ignored (entry set aside, message kept); a cancel with one is honoured.
    @Test func unknownWantType() throws {
        let m = try BitswapMessage(decoding: buffer(entryBody(hex("20 02"))))
        #expect(m.wantlist?.entries.isEmpty == true)
        #expect(m.rejectedEntries == [.unknownWantType(2)])
        let c = try BitswapMessage(decoding: buffer(entryBody(hex("18 01 20 05"))))
        #expect(c.wantlist?.entries.first?.cancel == true)
        #expect(c.rejectedEntries.isEmpty)
    }

    @Test func tenThousandEntriesCappedByPriority() throws {
        var entries: [BitswapMessage.Entry] = []
        for i in 0..<10_000 {
            let cid = try rawCID(withUnsafeBytes(of: UInt32(i).bigEndian, Array.init))
            // Priorities 0…4999 twice; cancels are never capped.
            entries.append(.init(cid: cid, priority: Int32(i % 5000), cancel: i == 3))
        }
        var body = ByteBuffer()
        BitswapMessage(wantlist: .init(entries: entries)).encodeBody(into: &body)
        let m = try BitswapMessage(decoding: body, maxWantlistEntries: 1024)
        let kept = try #require(m.wantlist?.entries)
        #expect(kept.count == 1025)
        #expect(kept.contains { $0.cancel && $0.cid == entries[3].cid })
        let wants = kept.filter { !$0.cancel }
        #expect(wants.count == 1024)
        // Highest 1024 of two copies of 0…4999 are 4488…4999 twice.
        #expect(wants.map(\.priority).min() == 4488)
        // Original order is preserved.
        #expect(wants.map(\.cid) == entries.filter { !$0.cancel && $0.priority >= 4488 }.map(\.cid))
        #expect(m.rejectedEntries == [.overCap(count: 10_000 - 1 - 1024)])
    }

    @Test func frameDecoderIsIncremental() throws {
        let message = BitswapMessage(payload: [.init(prefix: cid.prefix, data: buffer(Array("hello".utf8)))])
        var one = ByteBuffer()
        message.encodeFrame(into: &one)
        message.encodeFrame(into: &one)
        let all = bytes(one)
        var decoder = BitswapFrameDecoder()
        var bodies: [[UInt8]] = []
        for byte in all {
            decoder.append(buffer([byte]))
            while let body = try decoder.nextMessage() { bodies.append(bytes(body)) }
        }
        #expect(bodies.count == 2)
        #expect(bodies[0] == Array(all[1..<16]))
        #expect(decoder.bufferedBytes == 0)
    }

    @Test func frameOver4MiBRefusedBeforeBuffering() throws {
        var decoder = BitswapFrameDecoder()
        // 4 MiB + 1 = 0x400001 → varint 81 80 80 02.
        decoder.append(buffer(hex("81 80 80 02")))
        #expect(throws: BitswapDecodeError.messageTooLarge(declared: 4_194_305, limit: 4_194_304)) {
            try decoder.nextMessage()
        }
        // Exactly 4 MiB is accepted but waits for the body.
        var ok = BitswapFrameDecoder()
        ok.append(buffer(hex("80 80 80 02")))
        #expect(try ok.nextMessage() == nil)
        // A huge length is refused while its varint is still incomplete.
        var huge = BitswapFrameDecoder()
        huge.append(buffer(hex("ff ff ff ff")))
        #expect(throws: BitswapDecodeError.self) { try huge.nextMessage() }
        var overlong = BitswapFrameDecoder(maxMessageSize: .max)
        overlong.append(buffer([UInt8](repeating: 0x80, count: 11)))
        #expect(throws: BitswapDecodeError.overlongVarint(field: "frame length")) { try overlong.nextMessage() }
    }
}
