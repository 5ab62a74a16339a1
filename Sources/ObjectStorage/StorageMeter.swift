import NIOConcurrencyHelpers
import NIOCore

/// Counts the storage subrequests (LISTs, HEADs, GETs) made on behalf of one piece of work, such as one Bitswap
/// lookup batch, for per-peer quotas. Bound as a task-local around the work (`StorageMeter.$current.withValue`);
/// a `MeteredBucket` adds one for every request it passes on, including from the tasks the work starts (child
/// and unstructured tasks inherit task-locals). A cold index load shared by several lookups (single flight) is
/// charged to the lookup that started it.
public final class StorageMeter: Sendable {
    @TaskLocal public static var current: StorageMeter?

    private let counter = NIOLockedValueBox(0)

    public init() {}

    /// Subrequests so far.
    public var count: Int { counter.withLockedValue { $0 } }

    /// Adds `n` subrequests (for storage layers that are not `Bucket`s).
    public func add(_ n: Int) {
        counter.withLockedValue { $0 += n }
    }
}

/// A `Bucket` that counts every request it passes on to `base` in the `StorageMeter` in scope (if any): the one
/// place subrequests are counted, so no call site has to remember to.
public struct MeteredBucket: Bucket {
    public let base: any Bucket

    public init(_ base: any Bucket) {
        self.base = base
    }

    private func record() { StorageMeter.current?.add(1) }

    public func get(_ key: String) async throws(BucketError) -> [UInt8] {
        record()
        return try await base.get(key)
    }

    public func get(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> [UInt8] {
        record()
        return try await base.get(key, range: range)
    }

    public func getBuffer(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> ByteBuffer {
        record()
        return try await base.getBuffer(key, range: range)
    }

    /// One subrequest per read, however many pieces its body arrives in.
    public func read(_ key: String, range: ClosedRange<UInt64>,
                     chunks: (ByteBuffer) async -> Void) async throws(BucketError)
    {
        record()
        try await base.read(key, range: range, chunks: chunks)
    }

    public func head(_ key: String) async throws(BucketError) -> UInt64? {
        record()
        return try await base.head(key)
    }

    public func exists(_ key: String) async throws(BucketError) -> Bool {
        record()
        return try await base.exists(key)
    }

    public func put(_ key: String, bytes: [UInt8]) async throws(BucketError) {
        record()
        try await base.put(key, bytes: bytes)
    }

    public func put(_ key: String, contentsOf path: String) async throws(BucketError) {
        record()
        try await base.put(key, contentsOf: path)
    }

    public func list(prefix: String, after: String?, limit: Int) async throws(BucketError) -> [String] {
        record()
        return try await base.list(prefix: prefix, after: after, limit: limit)
    }
}

extension StoreBuckets {
    /// The same buckets, each behind a `MeteredBucket` (a bucket used for several roles is wrapped once per
    /// role; each request still goes through exactly one wrapper).
    public func metered() -> StoreBuckets {
        StoreBuckets(carpark: MeteredBucket(carpark), satnav: MeteredBucket(satnav),
                     dudewhere: MeteredBucket(dudewhere), blockmap: MeteredBucket(blockmap))
    }
}
