import Testing
@testable import Multiformats

@Test func cidV0AndV1RoundTrip() throws {
    let v0 = try CID(string: "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
    #expect(v0.version == .v0)
    #expect(v0.description == "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
    #expect(v0.v1.description == "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    let v1 = try CID(string: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
    #expect(v1.codec == Multicodec.raw)
    #expect(try CID(bytes: v1.bytes) == v1)
    #expect(v1.prefix == [0x01, 0x55, 0x12, 0x20])
}
