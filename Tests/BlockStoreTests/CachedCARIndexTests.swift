import BlockStore
import Testing

/// The value format of the shared index cache (`es:car:{car}:idx`): every instance of every version must
/// either read an entry exactly or refuse it.
@Suite struct CachedCARIndexTests {
    static let ranges: [(UInt64, UInt64?)] = [(0, nil), (51, 1_000_051), (51, 51), (0, UInt64.max - 1)]

    @Test(arguments: ranges)
    func roundTrips(start: UInt64, end: UInt64?) throws {
        let value = CachedCARIndex(payloadStart: start, payloadEnd: end, index: [0x80, 0x08, 1, 2, 3])
        let bytes = value.encoded()
        #expect(bytes.count == CachedCARIndex.headerLength + 5)
        #expect(Array(bytes.prefix(4)) == Array("ESI1".utf8))
        #expect(try CachedCARIndex.decode(bytes).get() == value)
    }

    @Test func knownBytes() throws {
        // payload 51..<1,000,051 of a CARv2: start 0x33, end+1 = 1,000,052 = 0x0F4274.
        let bytes: [UInt8] = Array("ESI1".utf8) + [0, 0, 0, 0, 0, 0, 0, 0x33] + [0, 0, 0, 0, 0, 0x0F, 0x42, 0x74] + [9]
        let value = try CachedCARIndex.decode(bytes).get()
        #expect(value.payloadStart == 51)
        #expect(value.payloadEnd == 1_000_051)
        #expect(value.index == [9])
    }

    @Test func unusableEntriesAreRefusedWithTheirReason() {
        #expect(CachedCARIndex.decode([1, 2, 3]) == .failure(.truncated(3)))
        #expect(CachedCARIndex.decode(Array("ESI2".utf8) + [UInt8](repeating: 0, count: 16)) == .failure(.unknownFormat))
        let backwards = Array("ESI1".utf8) + [0, 0, 0, 0, 0, 0, 0, 9] + [0, 0, 0, 0, 0, 0, 0, 5]
        #expect(CachedCARIndex.decode(backwards) == .failure(.badPayloadRange(start: 9, end: 4)))
    }
}
