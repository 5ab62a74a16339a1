import EdgeswapTestSupport
import Foundation
import NIOCore
import Testing
@testable import ObjectStorage

/// The kinds of bucket the same behaviour checks run on.
enum BucketKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case fileSystem
    case s3

    var testDescription: String { rawValue }
}

/// One SeaweedFS for every S3 test that runs at the same time: started by the first user, stopped when the
/// last one is done (a server per test would start a dozen `weed` processes on two cores).
actor SharedSeaweedFS {
    static let shared = SharedSeaweedFS()
    private var server: SeaweedFS?
    private var starting = false
    private var users = 0

    struct Info: Sendable {
        let endpoint: String
        let accessKeyID: String
        let secretAccessKey: String
    }

    func acquire() async throws -> Info {
        users += 1
        do {
            let server = try await current()
            return Info(endpoint: server.endpoint, accessKeyID: server.accessKeyID,
                        secretAccessKey: server.secretAccessKey)
        } catch {
            users -= 1
            throw error
        }
    }

    private func current() async throws -> SeaweedFS {
        // Another caller may be starting it (the actor is reentrant across the await below).
        while starting { try await Task.sleep(for: .milliseconds(20)) }
        if let server { return server }
        starting = true
        defer { starting = false }
        let started = try await SeaweedFS(name: "shared")
        server = started
        return started
    }

    func release() {
        users -= 1
        if users == 0, let server {
            self.server = nil
            server.remove()
        }
    }
}

/// A unique S3 bucket name ("3 to 63 characters ... lowercase letters, numbers, dots and hyphens").
func uniqueBucketName(_ label: String) -> String {
    let safe = label.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(30)
    return "t-\(safe)-\(UInt32.random(in: 0...UInt32.max))"
}

/// Runs `body` with an empty bucket of `kind`, and cleans up afterwards.
func withBucket(_ kind: BucketKind, label: String = #function,
                configure: (inout S3Configuration) -> Void = { _ in },
                _ body: (any Bucket) async throws -> Void) async throws {
    switch kind {
    case .fileSystem:
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("bucket-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try await body(try FileSystemBucket(root: root))
    case .s3:
        let info = try await SharedSeaweedFS.shared.acquire()
        var configuration = try S3Configuration(
            endpoint: info.endpoint, bucket: uniqueBucketName(label), accessKeyID: info.accessKeyID,
            secretAccessKey: info.secretAccessKey)
        configure(&configuration)
        let client = S3Client(configuration: configuration)
        do {
            let bucket = client.bucket()
            try await bucket.createBucketIfMissing()
            try await body(bucket)
        } catch {
            try? await client.shutdown()
            await SharedSeaweedFS.shared.release()
            throw error
        }
        try await client.shutdown()
        await SharedSeaweedFS.shared.release()
    }
}

/// Bytes that differ at every offset, so a shifted range cannot pass.
func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) ^ ($0 >> 8) &+ seed) }
}

/// The same checks on a filesystem bucket and on an S3 bucket (SeaweedFS with SigV4 on): callers must not be
/// able to tell them apart.
@Suite struct BucketConformanceTests {
    @Test(arguments: BucketKind.allCases)
    func putGetHead(_ kind: BucketKind) async throws {
        try await withBucket(kind) { bucket in
            let body = pattern(1000)
            try await bucket.put("a/b/c.car", bytes: body)
            #expect(try await bucket.get("a/b/c.car") == body)
            #expect(try await bucket.head("a/b/c.car") == 1000)
            #expect(try await bucket.exists("a/b/c.car"))
            #expect(try await bucket.head("a/b") == nil)  // a prefix is not an object
            #expect(try await bucket.exists("a/b/d") == false)
            await #expect(throws: BucketError.noSuchKey("a/b/d")) { try await bucket.get("a/b/d") }
            // Replacing.
            try await bucket.put("a/b/c.car", bytes: [1, 2, 3])
            #expect(try await bucket.get("a/b/c.car") == [1, 2, 3])
            #expect(try await bucket.head("a/b/c.car") == 3)
            // Empty bodies are objects too (dudewhere and blockmap keys).
            try await bucket.put("root/car", bytes: [])
            #expect(try await bucket.head("root/car") == 0)
            #expect(try await bucket.get("root/car") == [])
        }
    }

    @Test(arguments: BucketKind.allCases)
    func rangedGets(_ kind: BucketKind) async throws {
        try await withBucket(kind) { bucket in
            let body = pattern(5000, seed: 5)
            try await bucket.put("k", bytes: body)
            #expect(try await bucket.get("k", range: 0...0) == [body[0]])
            #expect(try await bucket.get("k", range: 100...199) == Array(body[100...199]))
            #expect(try await bucket.get("k", range: 4990...4999) == Array(body[4990...]))
            #expect(try await bucket.get("k", range: 4999...4999) == [body[4999]])
            // HTTP semantics: an end past the object is cut; a start at or past it is an error (S3 416).
            #expect(try await bucket.get("k", range: 4990...100_000) == Array(body[4990...]))
            await #expect(throws: BucketError.invalidRange(key: "k", range: 5000...5001, size: 5000)) {
                try await bucket.get("k", range: 5000...5001)
            }
            await #expect(throws: BucketError.invalidRange(key: "k", range: 9000...9999, size: 5000)) {
                try await bucket.get("k", range: 9000...9999)
            }
            await #expect(throws: BucketError.noSuchKey("missing")) { try await bucket.get("missing", range: 0...1) }
        }
    }

    /// `getBuffer` (the serving path's read) answers exactly what `get(_:range:)` answers.
    @Test(arguments: BucketKind.allCases)
    func rangedGetsIntoBuffers(_ kind: BucketKind) async throws {
        try await withBucket(kind) { bucket in
            let body = pattern(300_000, seed: 6)
            try await bucket.put("k", bytes: body)
            for range: ClosedRange<UInt64> in [0...0, 100...199, 4990...4999, 299_990...1_000_000, 0...299_999] {
                let buffer = try await bucket.getBuffer("k", range: range)
                let expected = try await bucket.get("k", range: range)
                #expect(Array(buffer.readableBytesView) == expected, "\(range)")
            }
            await #expect(throws: BucketError.invalidRange(key: "k", range: 300_000...300_001, size: 300_000)) {
                try await bucket.getBuffer("k", range: 300_000...300_001)
            }
            await #expect(throws: BucketError.noSuchKey("missing")) { try await bucket.getBuffer("missing", range: 0...1) }
        }
    }

    /// `read(_:range:chunks:)` (the streamed read) hands on exactly the bytes `get(_:range:)` answers, in order;
    /// a long range arrives in more than one piece (an S3 body as NIO reads it, a file in `readChunkSize` pieces),
    /// and every piece is handed on before the read returns. Errors are those of `getBuffer`, before any piece.
    @Test(arguments: BucketKind.allCases)
    func streamedRangedReads(_ kind: BucketKind) async throws {
        try await withBucket(kind) { bucket in
            let body = pattern(3_000_000, seed: 7)
            try await bucket.put("k", bytes: body)
            for range: ClosedRange<UInt64> in [0...0, 100...199, 2_999_990...4_000_000, 0...2_999_999] {
                var pieces = 0
                var bytes: [UInt8] = []
                try await bucket.read("k", range: range) { piece in
                    pieces += 1
                    bytes.append(contentsOf: piece.readableBytesView)
                }
                #expect(bytes == (try await bucket.get("k", range: range)), "\(range)")
                if bytes.count > 1_000_000 { #expect(pieces > 1, "\(range) in \(pieces) pieces") }
            }
            for (key, range, expected) in [
                ("k", UInt64(3_000_000)...3_000_001, BucketError.invalidRange(key: "k", range: 3_000_000...3_000_001, size: 3_000_000)),
                ("missing", 0...1, .noSuchKey("missing")),
            ] {
                var handed = 0
                do throws(BucketError) {
                    try await bucket.read(key, range: range) { _ in handed += 1 }
                    Issue.record("\(key) \(range): no error")
                } catch {
                    #expect(error == expected)
                }
                #expect(handed == 0)
            }
        }
    }

    @Test(arguments: BucketKind.allCases)
    func listing(_ kind: BucketKind) async throws {
        try await withBucket(kind) { bucket in
            // No sibling whose name sorts between "a" and "a/" (like "a-b"): SeaweedFS 4.48 lists a directory's
            // entries by name, so it puts everything under "a/" before "a-b" although '-' < '/' in UTF-8
            // binary order. The store layout never has such siblings (one directory level of CIDs).
            let keys = ["a/x", "a0b", "a/y/z", "b", "a/y0", "ab/c", "é/1", "Z"]
            for key in keys { try await bucket.put(key, bytes: Array(key.utf8)) }
            let sorted = keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            let all = try await bucket.list(prefix: "", after: nil, limit: 100)
            #expect(all == sorted, "\(all)")
            #expect(try await bucket.list(prefix: "a/", after: nil, limit: 100) == ["a/x", "a/y/z", "a/y0"])
            #expect(try await bucket.list(prefix: "a/y", after: nil, limit: 100) == ["a/y/z", "a/y0"])
            let underA = try await bucket.list(prefix: "a", after: nil, limit: 100)
            #expect(underA == ["a/x", "a/y/z", "a/y0", "a0b", "ab/c"], "\(underA)")
            #expect(try await bucket.list(prefix: "a", after: "a/x", limit: 2) == ["a/y/z", "a/y0"])
            #expect(try await bucket.list(prefix: "a", after: "a/y0", limit: 10) == ["a0b", "ab/c"])
            #expect(try await bucket.list(prefix: "nothing/", after: nil, limit: 10) == [])
            #expect(try await bucket.listAll(prefix: "", pageSize: 3) == sorted)
            #expect(try await bucket.list(prefix: "", after: nil, limit: 0) == [])
            #expect(try await bucket.list(prefix: "é/", after: nil, limit: 10) == ["é/1"])
        }
    }

    /// More keys than one S3 page holds ("returns up to 1,000 key names"): `list` must follow
    /// continuation tokens, `listAll` must page.
    @Test(arguments: BucketKind.allCases)
    func listingPastOneThousandKeys(_ kind: BucketKind) async throws {
        try await withBucket(kind) { bucket in
            let keys = (0..<1105).map { String(format: "p/%05d", $0) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for chunk in stride(from: 0, to: keys.count, by: 139) {
                    let slice = keys[chunk..<min(keys.count, chunk + 139)]
                    group.addTask { for key in slice { try await bucket.put(key, bytes: []) } }
                }
                try await group.waitForAll()
            }
            try await bucket.put("q", bytes: [1])
            #expect(try await bucket.list(prefix: "p/", after: nil, limit: 5000) == keys)
            #expect(try await bucket.list(prefix: "p/", after: nil, limit: 1050) == Array(keys.prefix(1050)))
            #expect(try await bucket.list(prefix: "p/", after: "p/00099", limit: 1001) == Array(keys[100..<1101]))
            #expect(try await bucket.listAll(prefix: "p/") == keys)
            #expect(try await bucket.listAll(prefix: "") == keys + ["q"])
        }
    }

    /// Keys that need URI encoding in the path (and in the signature) and XML escaping in listings.
    @Test(arguments: BucketKind.allCases)
    func specialKeys(_ kind: BucketKind) async throws {
        try await withBucket(kind) { bucket in
            let keys = ["sp ace/a+b=c&d", "ключ/値", "%41~!*'()", "q?x#y;z,@$", "amp&lt;<>\"'", "t/a/b/c/d/e/f/g/h/i/j",
                        "colon:semi;brace{}[]", "tab\there"]
            for (index, key) in keys.enumerated() { try await bucket.put(key, bytes: pattern(10 + index, seed: index)) }
            for (index, key) in keys.enumerated() {
                #expect(try await bucket.get(key) == pattern(10 + index, seed: index), "\(key)")
                #expect(try await bucket.head(key) == UInt64(10 + index), "\(key)")
                #expect(try await bucket.get(key, range: 2...4) == Array(pattern(10 + index, seed: index)[2...4]), "\(key)")
            }
            let sorted = keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            #expect(try await bucket.listAll(prefix: "") == sorted)
            #expect(try await bucket.list(prefix: "sp ace/a+", after: nil, limit: 10) == ["sp ace/a+b=c&d"])
            #expect(try await bucket.list(prefix: "", after: "q?x#y;z,@$", limit: 100)
                    == sorted.filter { "q?x#y;z,@$".utf8.lexicographicallyPrecedes($0.utf8) })
        }
    }

    /// A file larger than the multipart threshold goes up in parts (S3) and reads back whole, and across the
    /// part boundaries.
    @Test(arguments: BucketKind.allCases)
    func putFromFile(_ kind: BucketKind) async throws {
        let partSize = 5 << 20
        let directory = try TestDirectory(name: "put-file")
        defer { directory.remove() }
        let size = 2 * partSize + 12_345
        let (url, data) = try directory.randomFile("big.bin", count: size, seed: 7)
        let body = [UInt8](data)
        let (smallURL, smallData) = try directory.randomFile("small.bin", count: 70_000, seed: 9)
        try await withBucket(kind, configure: {
            $0.multipartThreshold = 6 << 20
            $0.multipartPartSize = partSize
        }) { bucket in
            try await bucket.put("x/y.car", contentsOf: url.path)
            #expect(try await bucket.head("x/y.car") == UInt64(size))
            for boundary in [partSize, 2 * partSize] {
                let range = UInt64(boundary - 10)...UInt64(boundary + 9)
                #expect(try await bucket.get("x/y.car", range: range)
                        == Array(body[(boundary - 10)...(boundary + 9)]))
            }
            #expect(try await bucket.get("x/y.car", range: UInt64(size - 5)...UInt64(size + 100)) == Array(body[(size - 5)...]))
            #expect(try await bucket.get("x/y.car") == body)
            try await bucket.put("small", contentsOf: smallURL.path)
            #expect(try await bucket.get("small") == [UInt8](smallData))
            await #expect(throws: BucketError.self) { try await bucket.put("z", contentsOf: directory.path("nope").path) }
            #expect(try await bucket.exists("z") == false)
        }
    }
}
