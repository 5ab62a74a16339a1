import EdgeswapTestSupport
import Foundation
import Testing
@testable import Multiformats

/// BLAKE3-team/BLAKE3 `test_vectors/test_vectors.json`.
struct BLAKE3Vectors: Decodable {
    struct Case: Decodable, Sendable {
        let input_len: Int
        let hash: String
        let keyed_hash: String
        let derive_key: String
    }
    let key: String
    let context_string: String
    let cases: [Case]

    static func load() throws -> BLAKE3Vectors {
        try JSONDecoder().decode(BLAKE3Vectors.self, from: try fixture("blake3/test_vectors.json"))
    }
}

@Suite struct BLAKE3Tests {
    @Test func officialVectorsAllModesFullLength() throws {
        let vectors = try BLAKE3Vectors.load()
        #expect(vectors.cases.count == 35)
        let key = Array(vectors.key.utf8)
        for c in vectors.cases {
            let input = patternInput(c.input_len)
            let hashLength = c.hash.count / 2
            #expect(hashLength == 131)
            input.withUnsafeBytes { data in
                #expect(hex(BLAKE3.hash(data, outputLength: hashLength)) == c.hash, "hash, input_len \(c.input_len)")
                // "implementations should also check that the first 32 bytes match their default-length output"
                #expect(hex(BLAKE3.hash(data)) == String(c.hash.prefix(64)), "hash/32, input_len \(c.input_len)")
                key.withUnsafeBytes { k in
                    #expect(hex(BLAKE3.keyedHash(key: k, data, outputLength: c.keyed_hash.count / 2)) == c.keyed_hash,
                            "keyed_hash, input_len \(c.input_len)")
                    #expect(hex(BLAKE3.keyedHash(key: k, data)) == String(c.keyed_hash.prefix(64)))
                }
                #expect(hex(BLAKE3.deriveKey(context: vectors.context_string, keyMaterial: data,
                                             outputLength: c.derive_key.count / 2)) == c.derive_key,
                        "derive_key, input_len \(c.input_len)")
                #expect(hex(BLAKE3.deriveKey(context: vectors.context_string, keyMaterial: data))
                        == String(c.derive_key.prefix(64)))
            }
        }
    }

    /// Feeding the input in pieces of every awkward size gives the one-shot result (block, chunk and
    /// subtree boundaries fall inside and between updates).
    @Test(arguments: [1, 7, 63, 64, 65, 1023, 1024, 1025, 3000])
    func incrementalMatchesOneShot(pieceSize: Int) throws {
        let vectors = try BLAKE3Vectors.load()
        for c in vectors.cases {
            let input = patternInput(c.input_len)
            var hasher = BLAKE3.Hasher()
            var offset = 0
            while offset < input.count {
                let end = min(offset + pieceSize, input.count)
                input[offset..<end].withUnsafeBytes { hasher.update($0) }
                offset = end
            }
            #expect(hex(hasher.finalize(outputLength: 131)) == c.hash, "input_len \(c.input_len) piece \(pieceSize)")
        }
    }

    @Test func finalizeDoesNotConsumeAndCopiesAreIndependent() {
        let input = patternInput(5000)
        var hasher = BLAKE3.Hasher()
        input[0..<2000].withUnsafeBytes { hasher.update($0) }
        let snapshot = hasher
        let early = hasher.finalize()
        input[2000...].withUnsafeBytes { hasher.update($0) }
        #expect(early == input[0..<2000].withUnsafeBytes { BLAKE3.hash($0) })
        #expect(snapshot.finalize() == early)
        #expect(hasher.finalize() == input.withUnsafeBytes { BLAKE3.hash($0) })
        var viaCollection = BLAKE3.Hasher()
        viaCollection.update(bytes: input)
        #expect(viaCollection.finalize() == hasher.finalize())
    }

    @Test func outputPrefixesAgree() {
        let input = patternInput(2049)
        let long = input.withUnsafeBytes { BLAKE3.hash($0, outputLength: 1000) }
        for n in [0, 1, 31, 32, 33, 64, 65, 999] {
            #expect(Array(long.prefix(n)) == input.withUnsafeBytes { BLAKE3.hash($0, outputLength: n) })
        }
    }

    /// Input lengths around the block, chunk, eight-chunk (one SIMD pass) and 64-chunk (one subtree) sizes.
    static let boundaryLengths = [
        0, 1, 1023, 1024, 1025, 2048, 3 * 1024, 3 * 1024 + 1, 4095, 4096, 4097, 7 * 1024, 8 * 1024, 8 * 1024 + 1,
        9 * 1024, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 31 * 1024, 65 * 1024, 64 * 1024 + 1, 129 * 1024 + 7,
    ]

    /// The scalar and the widest backend give the same output, in every mode, for one-shot and incremental
    /// input (the incremental pieces start subtrees at unaligned chunk counters).
    @Test(arguments: boundaryLengths)
    func backendsAgree(length: Int) {
        let input = pseudoRandomBytes(count: length, seed: UInt64(length) &+ 0x5EED)
        let key = pseudoRandomBytes(count: 32, seed: 7)
        func run(_ backend: BLAKE3.Backend, keyed: Bool, piece: Int) -> [UInt8] {
            var hasher = key.withUnsafeBytes { k in
                keyed ? BLAKE3.Hasher(key: .init(littleEndianBytes: k.baseAddress!), flags: BLAKE3.keyedHashFlag,
                                      backend: backend)
                    : BLAKE3.Hasher(key: BLAKE3.iv, flags: 0, backend: backend)
            }
            var offset = 0
            repeat {
                let end = min(offset + piece, input.count)
                input[offset..<end].withUnsafeBytes { hasher.update($0) }
                offset = end
            } while offset < input.count
            return hasher.finalize(outputLength: 100)
        }
        for keyed in [false, true] {
            let reference = run(.scalar, keyed: keyed, piece: max(length, 1))
            for backend in BLAKE3.Backend.allCases where backend == .scalar || backend == BLAKE3.Backend.best {
                for piece in [max(length, 1), 3 * 1024 + 5, 20 * 1024] {
                    #expect(run(backend, keyed: keyed, piece: piece) == reference,
                            "length \(length), \(backend), keyed \(keyed), piece \(piece)")
                }
            }
        }
    }

    /// Debian's `b3sum` (the official Rust implementation) as an oracle on generated inputs.
    @Test func matchesB3sum() throws {
        guard let b3sum = findOnPath("b3sum") else {
            Issue.record("install b3sum: apt-get install b3sum")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-b3-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, length) in ([1, 1_048_576 + 123] + Self.boundaryLengths).enumerated() {
            let input = pseudoRandomBytes(count: length, seed: UInt64(0x9E37_79B9 + i))
            let file = dir.appendingPathComponent("input-\(length)")
            try Data(input).write(to: file)
            for outputLength in [32, 200] {
                let result = try run(b3sum, ["--no-names", "-l", String(outputLength), file.path])
                #expect(result.status == 0)
                let expected = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(expected.count == outputLength * 2)
                let ours = input.withUnsafeBytes { BLAKE3.hash($0, outputLength: outputLength) }
                #expect(hex(ours) == expected, "length \(length), output \(outputLength)")
            }
        }
    }
}
