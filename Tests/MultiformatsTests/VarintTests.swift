import Testing
@testable import Multiformats

@Suite struct VarintTests {
    /// multiformats/unsigned-varint README examples plus the 9-byte maximum.
    static let examples: [(UInt64, [UInt8])] = [
        (0, [0x00]),
        (1, [0x01]),
        (127, [0x7f]),
        (128, [0x80, 0x01]),
        (255, [0xff, 0x01]),
        (300, [0xac, 0x02]),
        (16384, [0x80, 0x80, 0x01]),
        (0xb220, [0xa0, 0xe4, 0x02]),
        (UInt64(1) << 56 - 1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        (UInt64(1) << 63 - 1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
    ]

    @Test func minimalEncodingsRoundTrip() throws {
        for (value, bytes) in Self.examples {
            #expect(Varint.encode(value) == bytes, "\(value)")
            #expect(Varint.encodedLength(value) == bytes.count)
            let decoded = try Varint.decode(bytes)
            #expect(decoded.value == value)
            #expect(decoded.length == bytes.count)
            // Bytes after the varint are not part of it.
            let withTail = try Varint.decode(bytes + [0xff, 0x00])
            #expect(withTail.value == value && withTail.length == bytes.count)
        }
    }

    @Test func refusesOverlongNonMinimalAndTruncated() {
        // Ten bytes: past the 9-byte maximum.
        #expect(throws: Varint.DecodeError.overlong) {
            try Varint.decode([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01] as [UInt8])
        }
        // 2^63 needs ten bytes, so it cannot be read back.
        #expect(Varint.encode(UInt64(1) << 63).count == 10)
        #expect(throws: Varint.DecodeError.overlong) { try Varint.decode(Varint.encode(UInt64(1) << 63)) }
        // Nine continuation bytes are overlong whatever follows.
        #expect(throws: Varint.DecodeError.overlong) { try Varint.decode([UInt8](repeating: 0x80, count: 9)) }
        // "0x80 0x00" encodes 0 in two bytes.
        #expect(throws: Varint.DecodeError.nonMinimal) { try Varint.decode([0x80, 0x00] as [UInt8]) }
        #expect(throws: Varint.DecodeError.nonMinimal) { try Varint.decode([0x81, 0x80, 0x00] as [UInt8]) }
        #expect(throws: Varint.DecodeError.nonMinimal) { try Varint.decode([0xff, 0x00] as [UInt8]) }
        #expect(throws: Varint.DecodeError.truncated) { try Varint.decode([] as [UInt8]) }
        #expect(throws: Varint.DecodeError.truncated) { try Varint.decode([0x80] as [UInt8]) }
        #expect(throws: Varint.DecodeError.truncated) { try Varint.decode([0xff, 0xff] as [UInt8]) }
    }

    @Test func decodesFromSlicesAndRawPointers() throws {
        let bytes: [UInt8] = [0x00, 0xac, 0x02, 0x05]
        #expect(try Varint.decode(bytes[1...]).value == 300)
        let raw = try bytes.withUnsafeBytes { raw in
            Result { () throws(Varint.DecodeError) in try Varint.decode(UnsafeRawBufferPointer(rebasing: raw[1...])) }
        }.get()
        #expect(raw.value == 300 && raw.length == 2)
    }
}
