import Libp2p
import Multiformats
import NIOCore
import Testing

/// Byte fixtures built by hand from the Identify schema (go-libp2p `p2p/protocol/identify/pb/identify.proto`),
/// laid out the way Go's marshaller writes them: fields in field-number order.
enum IdentifyFixture {
    /// RFC 8032 test 1 public key.
    static let ed25519Public: [UInt8] = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    /// `PublicKey{Type: Ed25519 (1), Data: 32 bytes}`.
    static let publicKeyProtobuf: [UInt8] = [0x08, 0x01, 0x12, 0x20] + ed25519Public
    /// `/ip4/127.0.0.1/tcp/4001`: ip4 (0x04) + 4 bytes, tcp (0x06) + big-endian port 0x0fa1.
    static let listenAddr: [UInt8] = [0x04, 127, 0, 0, 1, 0x06, 0x0f, 0xa1]
    /// `/ip4/127.0.0.1/tcp/54321/ws`: ws is code 477 = varint dd 03.
    static let observedAddr: [UInt8] = [0x04, 127, 0, 0, 1, 0x06, 0xd4, 0x31, 0xdd, 0x03]

    /// A kubo 0.22-like identify: publicKey (tag 0x0a), one listenAddr (0x12), two protocols (0x1a),
    /// observedAddr (0x22), protocolVersion (0x2a), agentVersion (0x32).
    static let kuboMessage: [UInt8] =
        [0x0a, 36] + publicKeyProtobuf
        + [0x12, 8] + listenAddr
        + [0x1a, 14] + Array("/ipfs/id/1.0.0".utf8)
        + [0x1a, 16] + Array("/ipfs/ping/1.0.0".utf8)
        + [0x22, 10] + observedAddr
        + [0x2a, 10] + Array("ipfs/0.1.0".utf8)
        + [0x32, 12] + Array("kubo/0.22.0/".utf8)

    static func hex(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            out.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return out
    }
}

@Suite struct IdentifyMessageTests {
    @Test func decodesHandBuiltKuboMessage() throws {
        let message = try IdentifyMessage(protobuf: IdentifyFixture.kuboMessage)
        #expect(message.protocolVersion == "ipfs/0.1.0")
        #expect(message.agentVersion == "kubo/0.22.0/")
        #expect(message.protocols == ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"])
        #expect(message.listenAddrs == [IdentifyFixture.listenAddr])
        #expect(message.listenMultiaddrs.map(\.description) == ["/ip4/127.0.0.1/tcp/4001"])
        #expect(message.observedMultiaddr?.description == "/ip4/127.0.0.1/tcp/54321/ws")
        #expect(message.signedPeerRecord == nil)
        let key = try message.decodedPublicKey()
        #expect(key.type == .ed25519)
        #expect(key.data == IdentifyFixture.ed25519Public)
    }

    @Test func encodesToTheSameBytes() throws {
        let message = IdentifyMessage(
            protocolVersion: "ipfs/0.1.0", agentVersion: "kubo/0.22.0/",
            publicKey: IdentifyFixture.publicKeyProtobuf, listenAddrs: [IdentifyFixture.listenAddr],
            observedAddr: IdentifyFixture.observedAddr, protocols: ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"])
        #expect(message.protobufEncoding == IdentifyFixture.kuboMessage)
        var buffer = ByteBuffer()
        message.writeDelimited(into: &buffer)
        // 120 bytes of body: a one-byte uvarint length prefix.
        #expect(IdentifyFixture.kuboMessage.count == 120)
        #expect(Array(buffer.readableBytesView) == [120] + IdentifyFixture.kuboMessage)
    }

    @Test func edgeswapMessageRoundTrips() throws {
        let key = try PublicKey(protobuf: IdentifyFixture.publicKeyProtobuf)
        let listen = try Multiaddr("/ip4/127.0.0.1/tcp/4001/ws/p2p/\(key.peerID)")
        let observed = try Multiaddr("/ip4/127.0.0.1/tcp/54321/ws")
        let message = IdentifyMessage(localKey: key, agentVersion: "edgeswap/0.1.0", listenAddrs: [listen],
                                      observedAddr: observed, protocols: ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"])
        // Listen addresses go out without their /p2p/ suffix, as go-libp2p announces them.
        #expect(message.listenMultiaddrs.map(\.description) == ["/ip4/127.0.0.1/tcp/4001/ws"])
        #expect(message.protocolVersion == "ipfs/0.1.0")
        let decoded = try IdentifyMessage(protobuf: message.protobufEncoding)
        #expect(decoded == message)
        #expect(try decoded.decodedPublicKey() == key)
    }

    @Test func skipsUnknownFieldsAndKeepsSignedPeerRecord() throws {
        // Field 7 varint (tag 0x38) and field 9 bytes (tag 0x4a) are unknown; field 8 (tag 0x42) is the record.
        let bytes: [UInt8] = [0x38, 0x96, 0x01] + [0x42, 3, 1, 2, 3] + [0x4a, 2, 0xff, 0xff]
            + [0x32, 4] + Array("go/1".utf8)
        let message = try IdentifyMessage(protobuf: bytes)
        #expect(message.signedPeerRecord == [1, 2, 3])
        #expect(message.agentVersion == "go/1")
    }

    @Test func refusesBadFields() {
        // agentVersion (6) as a varint: wrong wire type.
        #expect(throws: IdentifyError.wrongWireType(field: "agentVersion", wireType: 0)) {
            try IdentifyMessage(protobuf: [0x30, 0x01])
        }
        // A protocol id that is not UTF-8.
        #expect(throws: IdentifyError.invalidUTF8(field: "protocols")) {
            try IdentifyMessage(protobuf: [0x1a, 2, 0xc3, 0x28])
        }
        // A length running past the end of the message.
        #expect(throws: IdentifyError.malformedProtobuf("truncated")) {
            try IdentifyMessage(protobuf: [0x1a, 5, 0x61])
        }
        // A message without a public key cannot name its sender.
        #expect(throws: IdentifyError.missingPublicKey) {
            try IdentifyMessage(protobuf: [0x32, 1, 0x61]).decodedPublicKey()
        }
    }
}

@Suite struct IdentifyReaderTests {
    private func delimited(_ body: [UInt8]) -> ByteBuffer {
        var prefix: [UInt8] = []
        Varint.encode(UInt64(body.count), into: &prefix)
        return ByteBuffer(bytes: prefix + body)
    }

    @Test func readsOneMessageFedByteByByte() throws {
        var reader = IdentifyReader()
        for byte in [UInt8(120)] + IdentifyFixture.kuboMessage {
            try reader.receive(ByteBuffer(bytes: [byte]))
        }
        #expect(reader.messageCount == 1)
        let message = try reader.finish()
        #expect(message.agentVersion == "kubo/0.22.0/")
    }

    @Test func mergesSplitMessages() throws {
        // go-libp2p may split a large identify into several delimited messages; repeated fields concatenate,
        // a later singular field replaces the earlier one.
        let first = IdentifyMessage(agentVersion: "a", listenAddrs: [IdentifyFixture.listenAddr], protocols: ["/x"])
        let second = IdentifyMessage(agentVersion: "b", protocols: ["/y"])
        var both = delimited(first.protobufEncoding)
        var secondBuffer = delimited(second.protobufEncoding)
        both.writeBuffer(&secondBuffer)
        var reader = IdentifyReader()
        try reader.receive(both)
        let merged = try reader.finish()
        #expect(merged.agentVersion == "b")
        #expect(merged.protocols == ["/x", "/y"])
        #expect(merged.listenAddrs == [IdentifyFixture.listenAddr])
    }

    @Test func refusesOversizedLengthBeforeBuffering() {
        var reader = IdentifyReader()
        // 8193 = varint 81 40: one byte over go-libp2p's 8 KiB cap; no body needed to refuse it.
        #expect(throws: IdentifyError.messageTooLarge(length: 8193, limit: 8192)) {
            try reader.receive(ByteBuffer(bytes: [0x81, 0x40]))
        }
    }

    @Test func refusesTruncationAndEmptyStreams() throws {
        var truncated = IdentifyReader()
        try truncated.receive(ByteBuffer(bytes: [120] + IdentifyFixture.kuboMessage.prefix(10)))
        #expect(throws: IdentifyError.truncated(buffered: 11)) { try truncated.finish() }

        var empty = IdentifyReader()
        #expect(throws: IdentifyError.noMessage) { try empty.finish() }

        var overlong = IdentifyReader()
        #expect(throws: IdentifyError.badLengthPrefix) {
            try overlong.receive(ByteBuffer(bytes: [UInt8](repeating: 0x80, count: 9)))
        }
        var nonMinimal = IdentifyReader()
        #expect(throws: IdentifyError.badLengthPrefix) { try nonMinimal.receive(ByteBuffer(bytes: [0x81, 0x00])) }
    }

    @Test func refusesAnEleventhMessage() throws {
        var reader = IdentifyReader()
        let one = delimited(IdentifyMessage(protocols: ["/p"]).protobufEncoding)
        for _ in 0..<IdentifyReader.maximumMessages { try reader.receive(one) }
        #expect(throws: IdentifyError.tooManyMessages(limit: 10)) { try reader.receive(one) }
    }
}
