import CAR
import Testing

/// `CARPayload.locate(head:)`: where sections at index offsets are read from, from a CAR's first 51 bytes.
@Suite struct PayloadTests {
    private func locate(_ head: [UInt8]) -> Result<CARPayload, CARError> {
        head.withUnsafeBytes { raw in Result { () throws(CARError) in try CARPayload.locate(head: raw) } }
    }

    private func v2Head(dataOffset: UInt64, dataSize: UInt64) -> [UInt8] {
        CARv2.pragma + CARv2Header(dataOffset: dataOffset, dataSize: dataSize, indexOffset: 0).encode()
    }

    @Test func carv1IsTheWholeFile() throws {
        let file = try Fixture.bytes("sample-v1.car")
        #expect(locate(Array(file[0..<51])) == .success(.carv1))
        #expect(CARPayload.carv1.start == 0 && CARPayload.carv1.end == nil)
        // A CARv1 shorter than 51 bytes (a tiny CAR) is still a CARv1.
        #expect(locate(Array(file[0..<20])) == .success(.carv1))
        #expect(locate([]) == .success(.carv1))
    }

    @Test func carv2PayloadIsTheHeadersDataRange() throws {
        let file = try Fixture.bytes("sample-wrapped-v2.car")
        let payload = try locate(Array(file[0..<51])).get()
        #expect(payload == .carv2(51..<51 + 479_907))
        #expect(payload.start == 51 && payload.end == 51 + 479_907)
        // Padding after the header moves the payload; the range follows the header.
        #expect(locate(v2Head(dataOffset: 4096, dataSize: 10)) == .success(.carv2(4096..<4106)))
    }

    @Test func dataOffsetBelow51IsRefused() {
        // The payload cannot start inside the pragma and header.
        #expect(locate(v2Head(dataOffset: 50, dataSize: 10)) == .failure(.invalidDataOffset(50)))
        #expect(locate(v2Head(dataOffset: 0, dataSize: 10)) == .failure(.invalidDataOffset(0)))
    }

    @Test func dataRangeThatOverflowsIsRefused() {
        #expect(locate(v2Head(dataOffset: 51, dataSize: .max)) == .failure(.dataSizeOverflow(offset: 51, size: .max)))
        #expect(locate(v2Head(dataOffset: .max - 9, dataSize: 10)) == .failure(.dataSizeOverflow(offset: .max - 9, size: 10)))
        // The largest range that fits is fine.
        #expect(locate(v2Head(dataOffset: .max - 10, dataSize: 10)) == .success(.carv2(.max - 10 ..< .max)))
    }

    @Test func pragmaWithoutAWholeHeaderIsTruncated() {
        #expect(locate(CARv2.pragma) == .failure(.truncatedV2Header))
        #expect(locate(Array(v2Head(dataOffset: 51, dataSize: 1)[0..<50])) == .failure(.truncatedV2Header))
    }
}
