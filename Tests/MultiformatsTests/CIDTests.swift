import Testing
@testable import Multiformats

@Suite struct CIDTests {
    /// The empty file's CID (sha2-256 e3b0c442…) in every form; base36/base58/base16/base64 strings computed
    /// with Python big-integer / base64 code from the bytes below.
    static let bytesHex = "01701220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    static let forms: [(Multibase, String)] = [
        (.base32, "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
        (.base36, "k2jmtxx1epa2wl096hsbpuhrz9xhppklonehzwkmskc9rmeb51kwn4ut"),
        (.base58btc, "zdj7Wkkhxcu2rsiN6GUyHCLsSLL47kdUNfjbFqBUUhMFTZKBi"),
        (.base16, "f01701220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (.base64, "mAXASIOOwxEKY/BwUmvv0yJlvuSQnrkHkZJuTTKSVmRt4UrhV"),
    ]

    @Test func v0AndV1StringsAndBytes() throws {
        let v0 = try CID(string: "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
        #expect(v0.version == .v0)
        #expect(v0.codec == Multicodec.dagPB)
        #expect(v0.bytes.count == 34 && v0.bytes.starts(with: [0x12, 0x20]))
        #expect(v0.description == "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
        #expect(try CID(bytes: v0.bytes) == v0)
        #expect(v0.v1.description == "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
        #expect(v0.v1.version == .v1 && v0.v1.multihash == v0.multihash)
        #expect(v0.string(base: .base36) == v0.description)  // v0 has only its base58btc form
        #expect(v0.prefix == [0x00, 0x70, 0x12, 0x20])

        let v1 = try CID(string: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
        #expect(v1.version == .v1)
        #expect(v1.codec == Multicodec.raw)
        #expect(try CID(bytes: v1.bytes) == v1)
        #expect(v1.v1 == v1)
        #expect(v1.prefix == [0x01, 0x55, 0x12, 0x20])
        #expect(v1.description == "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
    }

    @Test func sameCIDInEveryBase() throws {
        let bytes = try #require(hexBytes(Self.bytesHex))
        let cid = try CID(bytes: bytes)
        #expect(cid.codec == Multicodec.dagPB && cid.version == .v1)
        for (base, text) in Self.forms {
            #expect(cid.string(base: base) == text, "\(base.name)")
            let parsed = try CID(string: text)
            #expect(parsed == cid, "\(base.name)")
            #expect(parsed.bytes == bytes)
        }
        // base32upper and base36upper read the same CID.
        #expect(try CID(string: Self.forms[0].1.uppercased()) == cid)
        #expect(try CID(string: Self.forms[1].1.uppercased()) == cid)
    }

    @Test func binaryParseReportsLengthAndAllowsTail() throws {
        let bytes = try #require(hexBytes(Self.bytesHex)) + [0xde, 0xad]
        let (cid, used) = try bytes.withUnsafeBytes { raw in
            try Result { () throws(MultiformatsError) in try CID.parse(raw) }.get()
        }
        #expect(used == 36)
        #expect(cid.bytes == Array(bytes.prefix(36)))
        #expect(throws: MultiformatsError.trailingBytes(what: "CID", count: 2)) { try CID(bytes: bytes) }
    }

    @Test func rejectsBadCIDs() throws {
        // Over boxo's 168-byte MaximumAllowedCid: 1 + 1 + 1 + 2 + 170 = 175 bytes.
        let huge = CID(codec: Multicodec.raw, multihash: Multihash(code: Multicodec.identity,
                                                                    digest: [UInt8](repeating: 7, count: 170)))
        #expect(huge.bytes.count == 175)
        #expect(throws: MultiformatsError.cidTooLong(175)) { try CID(bytes: huge.bytes) }
        #expect(throws: MultiformatsError.cidTooLong(175)) { try CID(string: huge.description) }
        // Exactly 168 bytes is allowed: 1 + 1 + 1 + 2 + 163.
        let limit = CID(codec: Multicodec.raw, multihash: Multihash(code: Multicodec.identity,
                                                                     digest: [UInt8](repeating: 7, count: 163)))
        #expect(limit.bytes.count == 168)
        #expect(try CID(bytes: limit.bytes) == limit)

        // "a multibase string whose first decoded byte is 0x12" is a CIDv0 in disguise: refused.
        let v0 = try CID(string: "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
        for base in [Multibase.base58btc, .base32, .base36] {
            #expect(throws: MultiformatsError.invalidCIDv0("a CIDv0 cannot carry a multibase prefix")) {
                try CID(string: base.encode(v0.bytes))
            }
        }

        // Unknown versions.
        var v2 = try #require(hexBytes(Self.bytesHex))
        v2[0] = 0x02
        #expect(throws: MultiformatsError.unsupportedCIDVersion(2)) { try CID(bytes: v2) }
        #expect(throws: MultiformatsError.unsupportedCIDVersion(2)) { try CID(string: Multibase.base32.encode(v2)) }
        v2[0] = 0x00
        #expect(throws: MultiformatsError.unsupportedCIDVersion(0)) { try CID(bytes: v2) }
        #expect(throws: MultiformatsError.unsupportedCIDVersion(3)) { try CID(bytes: [0x03, 0x55, 0x00, 0x00]) }

        // Truncations and malformed parts.
        #expect(throws: MultiformatsError.truncated(what: "CID")) { try CID(bytes: [0x01]) }
        #expect(throws: MultiformatsError.truncated(what: "CIDv0")) { try CID(bytes: [0x12, 0x20, 0x00]) }
        #expect(throws: MultiformatsError.truncated(what: "multihash digest")) {
            try CID(bytes: [0x01, 0x55, 0x12, 0x20, 0x00])
        }
        #expect(throws: MultiformatsError.varint(.truncated)) { try CID(bytes: [0x01, 0x80]) }
        #expect(throws: MultiformatsError.emptyInput) { try CID(string: "") }
        #expect(throws: MultiformatsError.invalidCharacter(base: "base58btc", character: "0")) {
            try CID(string: "Qm0fTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
        }
        #expect(throws: MultiformatsError.invalidCIDv0("a CIDv0 is a sha2-256 multihash with a 32-byte digest")) {
            try CID(v0: Multihash(code: Multicodec.blake3, digest: [UInt8](repeating: 0, count: 32)))
        }
    }

    @Test func identityCIDRoundTrip() throws {
        let data = Array("hello identity".utf8)
        let mh = try data.withUnsafeBytes { try Multihash.compute(code: Multicodec.identity, of: $0) }
        #expect(mh.digest == data)
        let cid = CID(codec: Multicodec.raw, multihash: mh)
        #expect(cid.bytes == [0x01, 0x55, 0x00, UInt8(data.count)] + data)
        for base in [Multibase.base32, .base36, .base58btc, .base64url] {
            let parsed = try CID(string: cid.string(base: base))
            #expect(parsed == cid)
            #expect(parsed.multihash.digest == data)
        }
        #expect(try CID(bytes: cid.bytes) == cid)
        #expect(try data.withUnsafeBytes { try cid.multihash.verify($0) })
        #expect(cid.prefix == [0x01, 0x55, 0x00, UInt8(data.count)])
    }
}
