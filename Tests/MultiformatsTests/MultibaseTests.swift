import EdgeswapTestSupport
import Foundation
import Testing
@testable import Multiformats

/// multiformats/multibase `tests/*.csv`: a header `encoding, "<data>"`, then `<base name>, "<text>"` rows.
struct MultibaseCSV {
    let file: String
    let data: [UInt8]
    let rows: [(name: String, text: String)]

    static let files = ["basic.csv", "case_insensitivity.csv", "leading_zero.csv", "two_leading_zeros.csv"]

    init(_ file: String) throws {
        self.file = file
        let lines = try fixtureText("multibase/" + file).split(separator: "\n").filter { !$0.isEmpty }
        func split(_ line: Substring) throws -> (String, String) {
            let comma = try #require(line.firstIndex(of: ","))
            let name = line[..<comma].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: comma)...].trimmingCharacters(in: .whitespaces)
            #expect(value.hasPrefix("\"") && value.hasSuffix("\""), "quoted value in \(file): \(line)")
            value = String(value.dropFirst().dropLast())
            return (name, value)
        }
        let header = try split(lines[0])
        // The header data uses "\x00" escapes for zero bytes.
        var data: [UInt8] = []
        var rest = Substring(header.1)
        while !rest.isEmpty {
            if rest.hasPrefix("\\x") {
                data.append(try #require(UInt8(rest.dropFirst(2).prefix(2), radix: 16)))
                rest = rest.dropFirst(4)
            } else {
                data.append(contentsOf: String(rest.first!).utf8)
                rest = rest.dropFirst()
            }
        }
        self.data = data
        self.rows = try lines.dropFirst().map(split)
    }
}

@Suite struct MultibaseTests {
    @Test func everyConformanceRow() throws {
        var covered: Set<Multibase> = []
        var rejected = 0
        for file in MultibaseCSV.files {
            let csv = try MultibaseCSV(file)
            #expect(!csv.rows.isEmpty)
            let canonical = file != "case_insensitivity.csv"
            for (name, text) in csv.rows {
                if let base = Multibase.allCases.first(where: { $0.name == name }) {
                    covered.insert(base)
                    let (decodedBase, bytes) = try Multibase.decode(text)
                    #expect(decodedBase == base, "\(file) \(name)")
                    #expect(bytes == csv.data, "\(file) \(name)")
                    if canonical {
                        #expect(base.encode(csv.data) == text, "\(file) \(name)")
                    }
                } else {
                    // A base we do not implement must be refused by its prefix, never guessed at.
                    let prefix = try #require(text.first)
                    #expect(throws: MultiformatsError.unknownMultibasePrefix(prefix), "\(file) \(name)") {
                        try Multibase.decode(text)
                    }
                    rejected += 1
                }
            }
        }
        #expect(covered == Set(Multibase.allCases), "bases without a conformance row: \(Set(Multibase.allCases).subtracting(covered))")
        #expect(rejected > 0)
    }

    @Test func roundTripsRandomDataInEveryBase() throws {
        for length in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 32, 33, 100] {
            for zeros in [0, 1, 3] {
                let data = [UInt8](repeating: 0, count: zeros) + pseudoRandomBytes(count: length, seed: UInt64(length * 7 + zeros))
                for base in Multibase.allCases {
                    let text = base.encode(data)
                    let (decodedBase, bytes) = try Multibase.decode(text)
                    #expect(decodedBase == base)
                    #expect(bytes == data, "\(base.name) length \(data.count)")
                }
            }
        }
    }

    @Test func refusesBadInput() throws {
        #expect(throws: MultiformatsError.emptyInput) { try Multibase.decode("") }
        #expect(throws: MultiformatsError.unknownMultibasePrefix("x")) { try Multibase.decode("xabc") }
        #expect(throws: MultiformatsError.invalidCharacter(base: "base58btc", character: "0")) {
            try Multibase.decode("z10")
        }
        #expect(throws: MultiformatsError.invalidCharacter(base: "base58btc", character: "l")) {
            try Multibase.base58btc.decodeWithoutPrefix("abl")
        }
        #expect(throws: MultiformatsError.invalidCharacter(base: "base16", character: "g")) {
            try Multibase.decode("f0g")
        }
        // Odd hex length: half a byte.
        #expect(throws: MultiformatsError.invalidEncoding(base: "base16", reason: "3 characters is not a valid length")) {
            try Multibase.decode("f616")
        }
        // Unpadded bases refuse '='.
        #expect(throws: MultiformatsError.invalidCharacter(base: "base64", character: "=")) {
            try Multibase.decode("meWVzIG1hbmkgIQ==")
        }
        // Padded bases require whole quanta.
        #expect(throws: MultiformatsError.invalidEncoding(base: "base64pad", reason: "length 14 is not a multiple of 4")) {
            try Multibase.decode("MeWVzIG1hbmkgIQ")
        }
        #expect(throws: MultiformatsError.invalidEncoding(base: "base32pad", reason: "too much padding")) {
            try Multibase.decode("cpfsxgidnmfxgsibb========")
        }
        // '=' inside the data.
        #expect(throws: MultiformatsError.invalidCharacter(base: "base64pad", character: "=")) {
            try Multibase.decode("MeW=zIG1hbmkgIQ==")
        }
        // A base64 remainder of one character is no encoder's output; non-zero leftover bits are not canonical.
        #expect(throws: MultiformatsError.invalidEncoding(base: "base64", reason: "5 characters is not a valid length")) {
            try Multibase.decode("mAAAAA")
        }
        #expect(throws: MultiformatsError.invalidEncoding(base: "base64", reason: "non-zero padding bits in the last character")) {
            try Multibase.decode("mAB")
        }
        #expect(throws: MultiformatsError.invalidEncoding(base: "base32", reason: "non-zero padding bits in the last character")) {
            try Multibase.decode("bab")
        }
        // base58 and base64 are case-sensitive, base32 is not.
        #expect(try Multibase.decode("BPFSXGIDNMFXGSIBB").1 == Array("yes mani !".utf8))
        #expect(try Multibase.decode("bPfSxGiDnMfXgSiBb").1 == Array("yes mani !".utf8))
        #expect(try Multibase.decode("z7PANL19XTTACuy").1 != Array("yes mani !".utf8))
    }

    @Test func bigRadixInputIsBounded() {
        let long = "z" + String(repeating: "2", count: BaseCodec.maxRadixTextLength + 1)
        #expect(throws: MultiformatsError.invalidEncoding(base: "base58btc", reason: "8193 characters is over the 8192 limit")) {
            try Multibase.decode(long)
        }
        let atLimit = String(repeating: "z", count: BaseCodec.maxRadixTextLength)
        #expect((try? Multibase.base58btc.decodeWithoutPrefix(atLimit)) != nil)
    }
}
