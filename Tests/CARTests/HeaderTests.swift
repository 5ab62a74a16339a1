import CAR
import Multiformats
import Testing

@Suite struct HeaderTests {
    @Test func decodesAndReencodesSampleHeaderByteForByte() throws {
        let file = try Fixture.bytes("sample-v1.car")
        let (header, length) = try file.withUnsafeBytes { raw in try CARHeader.decode(raw) }
        #expect(length == 0x3d)  // varint 0x3c + 60 bytes of DAG-CBOR
        #expect(header.version == 1)
        #expect(header.roots.map(\.description) == [sampleRoot])
        #expect(header.encode() == Array(file[0..<length]))
        #expect(CARv1Writer.header(roots: header.roots) == Array(file[0..<length]))
    }

    @Test func cidv0RootEncodesLikeGoCar() throws {
        let file = try Fixture.bytes("simple-unixfs.car")
        let (header, length) = try file.withUnsafeBytes { raw in try CARHeader.decode(raw) }
        #expect(header.roots.count == 1 && header.roots[0].version == .v0)
        #expect(header.encode() == Array(file[0..<length]))
    }

    @Test func pragmaIsAVersion2HeaderWithoutRoots() throws {
        let (header, length) = try CARv2.pragma.withUnsafeBytes { raw in try CARHeader.decode(raw) }
        #expect(header == CARHeader(roots: [], version: 2))
        #expect(length == 11)
        #expect(header.encode() == CARv2.pragma)
    }

    @Test func rootlessV42DecodesAsVersion42() throws {
        let file = try Fixture.bytes("sample-rootless-v42.car")
        let (header, _) = try file.withUnsafeBytes { raw in try CARHeader.decode(raw) }
        #expect(header.version == 42 && header.roots.isEmpty)
    }

    @Test func emptyRootsArrayRoundTrips() throws {
        let bytes = CARHeader(roots: []).encode()
        #expect(bytes == hex("11 a2 65 726f6f7473 80 67 76657273696f6e 01"))
        let (header, _) = try bytes.withUnsafeBytes { raw in try CARHeader.decode(raw) }
        #expect(header == CARHeader(roots: [], version: 1))
    }

    private func decodeBody(_ h: String) -> CARError? {
        let bytes = hex(h)
        return carError { () throws(CARError) in
            _ = try bytes.withUnsafeBytes { raw in Result { () throws(CARError) in try CARHeader.decodeBody(raw) } }.get()
        }
    }

    @Test func rejectsOtherShapesWithSpecificErrors() {
        // An array, not a map.
        #expect(decodeBody("82 01 02") == .invalidHeader("expected a map, found CBOR major type 4"))
        // Three keys.
        #expect(decodeBody("a3") == .invalidHeader("map has 3 keys; only roots and version are allowed"))
        // Unknown key "foo".
        #expect(decodeBody("a1 63 666f6f 01") == .invalidHeader("unknown key \"foo\""))
        // Indefinite-length map.
        #expect(decodeBody("bf") == .invalidHeader("CBOR additional info 31 (indefinite length or reserved) is not DAG-CBOR"))
        // version as a text string.
        #expect(decodeBody("a1 67 76657273696f6e 61 31") == .invalidHeader("version must be an unsigned integer, found CBOR major type 3"))
        // Duplicate version.
        #expect(decodeBody("a2 67 76657273696f6e 01 67 76657273696f6e 01") == .invalidHeader("duplicate key version"))
        // No version.
        #expect(decodeBody("a1 65 726f6f7473 80") == .invalidHeader("missing version"))
        // version 1 without roots.
        #expect(decodeBody("a1 67 76657273696f6e 01") == .invalidHeader("missing roots"))
        // roots not an array.
        #expect(decodeBody("a2 65 726f6f7473 01 67 76657273696f6e 01") == .invalidHeader("roots must be an array, found CBOR major type 0"))
        // Root without tag 42 (tag 41).
        #expect(decodeBody("a2 65 726f6f7473 81 d8 29 41 00 67 76657273696f6e 01")
            == .invalidHeader("root must be tag 42 (CID), found CBOR major type 6"))
        // Tag 42 over bytes missing the 0x00 prefix.
        #expect(decodeBody("a2 65 726f6f7473 81 d8 2a 42 0155 67 76657273696f6e 01")
            == .invalidHeader("CID bytes must start with the 0x00 multibase identity prefix"))
        // Tag 42 over a CID with a bad version.
        #expect(decodeBody("a2 65 726f6f7473 81 d8 2a 44 00 03 55 00 67 76657273696f6e 01")
            == .invalidRootCID(.unsupportedCIDVersion(3)))
        // Array count larger than the bytes left.
        #expect(decodeBody("a2 65 726f6f7473 9a ffffffff") == .truncatedHeader)
        // Trailing byte after the map.
        #expect(decodeBody("a1 67 76657273696f6e 02 00") == .invalidHeader("1 bytes after the header map"))
        // Truncated inside a key.
        #expect(decodeBody("a1 67 7665") == .truncatedHeader)
    }

    @Test func lengthPrefixLimits() {
        let tooBig = hex("e0e0e0e0a706")  // badheaderlength.car's varint
        #expect(carError { () throws(CARError) in
            _ = try tooBig.withUnsafeBytes { raw in Result { () throws(CARError) in try CARHeader.decode(raw) } }.get()
        } == .headerTooLarge(length: 216830324832, limit: 32 << 20))
        let zero: [UInt8] = [0x00]
        #expect(carError { () throws(CARError) in
            _ = try zero.withUnsafeBytes { raw in Result { () throws(CARError) in try CARHeader.decode(raw) } }.get()
        } == .emptyHeader)
    }
}
