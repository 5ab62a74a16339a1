import NIOCore

/// An object store with S3's semantics: flat keys (that may contain `/`), whole-object writes, ranged
/// reads, and listing in key order. `FileSystemBucket` implements it on a directory; an S3 client will
/// implement it on ListObjectsV2, GET with `Range`, HEAD and PUT, and callers will not tell them apart.
public protocol Bucket: Sendable {
    /// The whole object. Throws `.noSuchKey` if there is none.
    func get(_ key: String) async throws(BucketError) -> [UInt8]

    /// Bytes `range` of the object, as an HTTP `Range: bytes=a-b` GET: an upper bound past the end is cut at
    /// the end; a lower bound at or past the end is `.invalidRange` (S3 answers 416 InvalidRange).
    func get(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> [UInt8]

    /// Bytes `range` as a `ByteBuffer`, with the semantics of `get(_:range:)`. The serving path reads CAR
    /// bytes with this and hands slices of the buffer to the network without copying them again.
    func getBuffer(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> ByteBuffer

    /// Bytes `range`, with the semantics of `get(_:range:)`, handed to `chunks` in order as they arrive, in
    /// pieces of any size (each its own buffer, or a slice of one; none is handed on twice). It returns once the
    /// last piece was handed on. A failure after some pieces were handed on is thrown after them: those were
    /// the object's bytes, so whatever the caller made of them stands, and the rest of the range is missing.
    /// The serving path parses, verifies and hands on each CAR section as soon as its bytes are in.
    func read(_ key: String, range: ClosedRange<UInt64>, chunks: (ByteBuffer) async -> Void) async throws(BucketError)

    /// The object's size, or nil if there is no such key (S3 HEAD).
    func head(_ key: String) async throws(BucketError) -> UInt64?

    /// Whether the key exists.
    func exists(_ key: String) async throws(BucketError) -> Bool

    /// Stores `bytes` under `key`, replacing any object there. Readers see the old object or the new one,
    /// never a part of it.
    func put(_ key: String, bytes: [UInt8]) async throws(BucketError)

    /// Stores the contents of the local file at `path` under `key` without holding it all in memory.
    func put(_ key: String, contentsOf path: String) async throws(BucketError)

    /// Up to `limit` keys that start with `prefix` and sort after `after` (exclusive; S3 `start-after`),
    /// in ascending order of their UTF-8 bytes (S3: "returned in UTF-8 binary order").
    func list(prefix: String, after: String?, limit: Int) async throws(BucketError) -> [String]
}

extension Bucket {
    /// Default: `get(_:range:)`, copied once into a buffer.
    public func getBuffer(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> ByteBuffer {
        ByteBuffer(bytes: try await get(key, range: range))
    }

    public func exists(_ key: String) async throws(BucketError) -> Bool {
        try await head(key) != nil
    }

    /// Default: the whole range with `getBuffer`, handed on as one piece.
    public func read(_ key: String, range: ClosedRange<UInt64>,
                     chunks: (ByteBuffer) async -> Void) async throws(BucketError)
    {
        await chunks(try await getBuffer(key, range: range))
    }

    /// Every key under `prefix`, fetched page by page.
    public func listAll(prefix: String, pageSize: Int = 1000) async throws(BucketError) -> [String] {
        var keys: [String] = []
        var after: String?
        while true {
            let page = try await list(prefix: prefix, after: after, limit: pageSize)
            keys.append(contentsOf: page)
            guard page.count == pageSize, let last = page.last else { return keys }
            after = last
        }
    }
}

/// Why a bucket operation failed. `noSuchKey` is kept apart from every other failure so that callers can
/// treat "not there" as an answer and the rest as errors.
public enum BucketError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The key does not exist (S3 404 NoSuchKey).
    case noSuchKey(String)
    /// The key cannot name an object here (empty, absolute, `..`, empty segments, NUL, …).
    case invalidKey(String, reason: String)
    /// The range starts at or past the end of the object (S3 416 InvalidRange).
    case invalidRange(key: String, range: ClosedRange<UInt64>, size: UInt64)
    /// A key is both an object and a prefix of another key, which a filesystem cannot hold.
    case conflict(key: String, reason: String)
    /// A local I/O failure: the operation, the path and the errno text.
    case io(operation: String, path: String, errno: Int32, message: String)
    /// The storage service answered something other than success (for remote buckets).
    case service(status: Int, code: String, message: String)
    /// The storage service could not be reached (for remote buckets): connection refused, DNS failure,
    /// timeout, connection lost; reported after the client's retries.
    case transport(String)
    /// The bucket does not exist (S3 404 NoSuchBucket).
    case noSuchBucket(String)
    /// The service refused the credentials or the signature (S3 403 InvalidAccessKeyId,
    /// SignatureDoesNotMatch, AccessDenied, ...).
    case accessDenied(code: String, message: String)

    public var description: String {
        switch self {
        case .noSuchKey(let k): return "no such key: \(k)"
        case .invalidKey(let k, let why): return "invalid key \"\(k)\": \(why)"
        case .invalidRange(let k, let r, let size):
            return "range \(r.lowerBound)-\(r.upperBound) is outside \(k) (\(size) bytes)"
        case .conflict(let k, let why): return "key \(k): \(why)"
        case .io(let op, let path, let errno, let message): return "\(op) \(path): \(message) (errno \(errno))"
        case .service(let status, let code, let message): return "storage service \(status) \(code): \(message)"
        case .transport(let why): return "storage unreachable: \(why)"
        case .noSuchBucket(let bucket): return "no such bucket: \(bucket)"
        case .accessDenied(let code, let message): return "storage access denied (\(code)): \(message)"
        }
    }
}
