import Crypto
import Denylist
import Foundation
import Multiformats
import Testing

/// The text of a file under `Fixtures/denylist/` (located from this source file).
func denylistFixturePath(_ name: String) -> String {
    URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/denylist").appendingPathComponent(name).path
}

/// The 1-based line of `text` that is exactly `line`.
func lineNumber(of line: String, in text: String) throws -> Int {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    let index = try #require(lines.firstIndex { $0 == line }, "no line `\(line)`")
    return index + 1
}

func cid(_ text: String) throws -> CID {
    try CID(string: text)
}

/// The sha2-256 multihash of `text`, computed with swift-crypto directly (not through the module's code).
func sha256Multihash(_ text: String) -> Multihash {
    Multihash(code: Multicodec.sha2_256, digest: Array(SHA256.hash(data: Array(text.utf8))))
}

func sha256Hex(_ text: String) -> String {
    SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
}

func b58(_ multihash: Multihash) -> String {
    Multibase.base58btc.encodeWithoutPrefix(multihash.bytes)
}

func parse(_ text: String, file: String = "test.deny") throws -> DenylistFile {
    try DenylistFile(parsing: text, file: file)
}

/// The error parsing `text` throws (the test fails if it parses).
func parseError(_ text: String, file: String = "bad.deny") -> DenylistError? {
    do throws(DenylistError) {
        _ = try DenylistFile(parsing: text, file: file)
        Issue.record("parsed, but should have failed")
        return nil
    } catch {
        return error
    }
}

extension DenylistDecision {
    var reason: DenylistReason? {
        if case .denied(let reason) = self { return reason }
        return nil
    }
}
