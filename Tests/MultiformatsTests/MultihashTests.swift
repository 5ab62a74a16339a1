import Testing
@testable import Multiformats

/// `algorithm,bits,input,multihash` rows (the input is the ASCII text of the column, as in the
/// upstream file): multiformats/multihash `tests/values/test_cases.csv`, and
/// `edgeswap_extra_cases.csv` (same format) for the functions that file lacks (blake3 from `b3sum`,
/// blake2b-256 from Python's hashlib, identity).
struct MultihashCase {
    let algorithm: String
    let bits: Int
    let input: [UInt8]
    let multihash: [UInt8]

    static func load(_ file: String) throws -> [MultihashCase] {
        let lines = try fixtureText("multihash/" + file).split(separator: "\n").dropFirst()
        return try lines.map { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            try #require(f.count == 4, "row \(line)")
            return MultihashCase(
                algorithm: String(f[0]), bits: try #require(Int(f[1])),
                input: Array(f[2].utf8), multihash: try #require(hexBytes(f[3])))
        }
    }
}

@Suite struct MultihashTests {
    static let supportedNames = ["sha2-256", "sha2-512", "blake3", "blake2b-256", "identity"]

    @Test(arguments: ["test_cases.csv", "edgeswap_extra_cases.csv"])
    func conformanceRows(file: String) throws {
        let cases = try MultihashCase.load(file)
        var computed = 0, truncated = 0, unsupported = 0
        for c in cases {
            let parsed = try Multihash(bytes: c.multihash)
            #expect(parsed.bytes == c.multihash)
            #expect(parsed.digest.count * 8 == c.bits, "\(c.algorithm)/\(c.bits)")
            if Self.supportedNames.contains(c.algorithm) {
                #expect(Multicodec.name(of: parsed.code) == c.algorithm)
                let full = try c.input.withUnsafeBytes { try Multihash.compute(code: parsed.code, of: $0) }
                // Truncated rows are the full digest cut to bits/8 bytes.
                let encoded = Multihash(code: parsed.code, digest: Array(full.digest.prefix(c.bits / 8)))
                #expect(encoded.bytes == c.multihash, "\(c.algorithm)/\(c.bits) input \(hex(c.input))")
                computed += 1
                if parsed.digest.count == full.digest.count {
                    #expect(try c.input.withUnsafeBytes { try parsed.verify($0) })
                    var other = c.input
                    other.append(0)
                    #expect(try other.withUnsafeBytes { try parsed.verify($0) } == false)
                } else {
                    // Verification accepts only the function's full digest length.
                    let expected = try #require(Hashing.digestLength(of: parsed.code))
                    #expect(throws: MultiformatsError.digestLengthMismatch(
                        code: parsed.code, expected: expected, actual: parsed.digest.count)) {
                        try c.input.withUnsafeBytes { try parsed.verify($0) }
                    }
                    truncated += 1
                }
            } else {
                #expect(!Hashing.supported.contains(parsed.code))
                #expect(throws: MultiformatsError.unsupportedHashFunction(parsed.code)) {
                    try c.input.withUnsafeBytes { try parsed.verify($0) }
                }
                unsupported += 1
            }
        }
        #expect(computed > 0 && truncated > 0)
        if file == "test_cases.csv" {
            #expect(computed == 140 && unsupported == 120)
        } else {
            #expect(unsupported == 0)
        }
    }

    @Test func sha256KnownAnswer() throws {
        // sha2-256 of the empty string, the digest in every empty-file CID.
        let mh = try [UInt8]().withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
        #expect(hex(mh.bytes) == "1220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func parseErrors() {
        #expect(throws: MultiformatsError.truncated(what: "multihash digest")) {
            try Multihash(bytes: [0x12, 0x20, 0x01])
        }
        #expect(throws: MultiformatsError.trailingBytes(what: "multihash", count: 1)) {
            try Multihash(bytes: [0x00, 0x01, 0xaa, 0xbb])
        }
        #expect(throws: MultiformatsError.varint(.truncated)) { try Multihash(bytes: [0x12]) }
        #expect(throws: MultiformatsError.varint(.nonMinimal)) { try Multihash(bytes: [0x92, 0x00, 0x00]) }
        // Unknown function: parses (it is well-formed) but cannot be verified or computed.
        let sha3 = Multihash(code: 0x14, digest: [UInt8](repeating: 0, count: 64))
        #expect(throws: MultiformatsError.unsupportedHashFunction(0x14)) {
            try [UInt8]().withUnsafeBytes { try sha3.verify($0) }
        }
        #expect(throws: MultiformatsError.unsupportedHashFunction(0x14)) {
            try [UInt8]().withUnsafeBytes { try Multihash.compute(code: 0x14, of: $0) }
        }
        // An over-long digest is refused too, not just a short one.
        let long = Multihash(code: Multicodec.blake3, digest: [UInt8](repeating: 0, count: 64))
        #expect(throws: MultiformatsError.digestLengthMismatch(code: Multicodec.blake3, expected: 32, actual: 64)) {
            try [UInt8]().withUnsafeBytes { try long.verify($0) }
        }
    }
}
