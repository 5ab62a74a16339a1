import Foundation
import Multiformats
import Testing
@testable import ObjectStorage

private func temporaryRoot() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("bucket-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct FileSystemBucketTests {
    // put/get/head, ranged reads and listing are checked on both bucket kinds in BucketConformanceTests;
    // what follows is particular to the filesystem.

    @Test func directoriesAreNotObjectsAndReplacingLeavesNoTemporaryFile() async throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bucket = try FileSystemBucket(root: root)
        try await bucket.put("a/b/c.car", bytes: Array(repeating: 7, count: 1000))
        await #expect(throws: BucketError.noSuchKey("a/b")) { try await bucket.get("a/b") }
        await #expect(throws: BucketError.noSuchKey("a/b/c.car/x")) { try await bucket.get("a/b/c.car/x") }
        // Replacing is atomic (write to a temporary file, rename) and leaves no temporary file behind.
        try await bucket.put("a/b/c.car", bytes: [1, 2, 3])
        #expect(try await bucket.get("a/b/c.car") == [1, 2, 3])
        let temp = try FileManager.default.contentsOfDirectory(
            atPath: root + "/" + FileSystemBucket.temporaryDirectoryName)
        #expect(temp.isEmpty)
    }

    @Test func aMissingPrefixListsNothingButAMissingRootIsAnError() async throws {
        let root = try temporaryRoot()
        let bucket = try FileSystemBucket(root: root)
        try await bucket.put("a/b", bytes: [1])
        #expect(try await bucket.list(prefix: "nothing/here", after: nil, limit: 10) == [])
        try FileManager.default.removeItem(atPath: root)
        // The store went away: readiness and lookups must see an error, not an empty store.
        for prefix in ["", "a/", "nothing/here"] {
            await #expect(throws: BucketError.self, "list(\(prefix))") {
                _ = try await bucket.list(prefix: prefix, after: nil, limit: 10)
            }
        }
    }

    /// UTF-8 binary order with a sibling between "a" and "a/" ("a-b"), which SeaweedFS cannot list in that
    /// order (see BucketConformanceTests.listing).
    @Test func listIsOrderedAndPaged() async throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bucket = try FileSystemBucket(root: root)
        let keys = ["a/x", "a-b", "a/y/z", "b", "a/y0", "ab/c", "é/1", "Z"]
        for key in keys { try await bucket.put(key, bytes: Array(key.utf8)) }
        let sorted = keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        #expect(try await bucket.list(prefix: "", after: nil, limit: 100) == sorted)
        #expect(try await bucket.list(prefix: "a/", after: nil, limit: 100) == ["a/x", "a/y/z", "a/y0"])
        #expect(try await bucket.list(prefix: "a/y", after: nil, limit: 100) == ["a/y/z", "a/y0"])
        #expect(try await bucket.list(prefix: "a", after: nil, limit: 100)
                == ["a-b", "a/x", "a/y/z", "a/y0", "ab/c"])
        #expect(try await bucket.list(prefix: "a", after: "a/x", limit: 2) == ["a/y/z", "a/y0"])
        #expect(try await bucket.list(prefix: "nothing/", after: nil, limit: 10) == [])
        #expect(try await bucket.listAll(prefix: "", pageSize: 3) == sorted)
        #expect(try await bucket.list(prefix: "", after: nil, limit: 0) == [])
    }

    @Test func rejectsBadKeys() async throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bucket = try FileSystemBucket(root: root)
        let bad = ["", "/abs", "a//b", "a/", "../x", "a/../b", "./a", "a/./b", ".edgeswap-tmp/x", "a\u{0}b",
                   String(repeating: "x", count: 256), String(repeating: "a/", count: 600) + "a"]
        for key in bad {
            do {
                try await bucket.put(key, bytes: [1])
                Issue.record("put accepted \(key.debugDescription)")
            } catch {
                guard case .invalidKey = error else {
                    Issue.record("put \(key.debugDescription): \(error)")
                    continue
                }
            }
            do {
                _ = try await bucket.get(key)
                Issue.record("get accepted \(key.debugDescription)")
            } catch {
                guard case .invalidKey = error else {
                    Issue.record("get \(key.debugDescription): \(error)")
                    continue
                }
            }
        }
        await #expect(throws: BucketError.self) { try await bucket.list(prefix: "../", after: nil, limit: 1) }
        // Nothing escaped the root.
        #expect(!FileManager.default.fileExists(atPath: (root as NSString).deletingLastPathComponent + "/x"))
    }

    @Test func fileAndPrefixConflict() async throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bucket = try FileSystemBucket(root: root)
        try await bucket.put("a", bytes: [1])
        await #expect(throws: BucketError.conflict(key: "a/b", reason: "a prefix of the key is an object")) {
            try await bucket.put("a/b", bytes: [2])
        }
        try await bucket.put("c/d", bytes: [1])
        await #expect(throws: BucketError.conflict(key: "c", reason: "the key is a prefix of other keys")) {
            try await bucket.put("c", bytes: [2])
        }
        #expect(try await bucket.get("a") == [1])
    }

    @Test func streamingPutFromFile() async throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bucket = try FileSystemBucket(root: root + "/store")
        let source = root + "/source.bin"
        let body = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 >> 3 ^ $0) }
        try Data(body).write(to: URL(fileURLWithPath: source))
        try await bucket.put("x/y.car", contentsOf: source)
        #expect(try await bucket.head("x/y.car") == 3_000_000)
        #expect(try await bucket.get("x/y.car", range: 2_999_000...2_999_999) == Array(body[2_999_000...]))
        #expect(try await bucket.get("x/y.car") == body)
        await #expect(throws: BucketError.self) { try await bucket.put("z", contentsOf: root + "/nope") }
        #expect(try await bucket.exists("z") == false)
    }
}

@Suite struct StoreLayoutTests {
    @Test func keys() throws {
        let car = StoreLayout.carCID(sha256Digest: Array(repeating: 0xab, count: 32))
        #expect(car.description.hasPrefix("bagbaiera"))
        let c = car.description
        #expect(StoreLayout.carKey(car) == "\(c)/\(c).car")
        #expect(StoreLayout.indexKey(car) == "\(c)/\(c).car.idx")
        // A CIDv0 root is written in its v1 form.
        let root = try CID(string: "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n")
        #expect(StoreLayout.rootKey(root: root, car: car)
                == "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku/\(c)")
        #expect(StoreLayout.rootPrefix(root.v1) == StoreLayout.rootPrefix(root))
        // Multihash keys carry the base58btc prefix `z`, so they never equal a CIDv0 string.
        #expect(StoreLayout.blockKey(multihash: root.multihash, car: car)
                == "zQmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n/\(c)")
        let key = StoreLayout.rootKey(root: root, car: car)
        #expect(StoreLayout.carCID(fromKey: key, prefix: StoreLayout.rootPrefix(root)) == car)
        #expect(StoreLayout.carCID(fromKey: key, prefix: "other/") == nil)
        #expect(StoreLayout.carCID(fromKey: StoreLayout.rootPrefix(root) + "bafkqaaa",
                                   prefix: StoreLayout.rootPrefix(root)) == nil)
        for k in [StoreLayout.carKey(car), StoreLayout.indexKey(car), key] {
            try FileSystemBucket.validateKey(k)
        }
    }
}
