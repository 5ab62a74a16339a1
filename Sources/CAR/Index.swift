#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Multiformats

// CARv2 index formats in go-car's real byte layout (`go-car:v2/index/indexsorted.go`, `mhindexsorted.go`;
// `alanshaw/cardex:src/mh-index-sorted/README.md`). The carv2 spec prose says a bucket stores its entry
// count; go-car writes its byte length ("in struct, len is #items. when marshaled, it's saved as #bytes"),
// and every index in the wild follows go-car:
//
//   IndexSorted (0x0400):          i32le bucketCount ‖ { u32le width ‖ u64le byteLength ‖ records }…
//   MultihashIndexSorted (0x0401): i32le codeCount ‖ { u64le multihash code ‖ IndexSorted body }…
//   record:                         digest (width − 8 bytes) ‖ u64le offset of the section's varint
//
// Buckets are in ascending width, codes ascending, records byte-wise ascending by digest.

/// One bucket of an index: every record has the same `width` (digest length + 8), records sorted by digest.
///
/// The records are kept as the one contiguous byte array they are on disk, so an index of a million
/// entries is a handful of allocations, and a lookup is a binary search with `memcmp`.
public struct IndexBucket: Hashable, Sendable {
    /// Bytes per record: digest length + 8.
    public let width: Int
    /// `count × width` bytes: `digest ‖ u64le offset` per record.
    public let records: [UInt8]
    /// For large buckets, `table[p]` is the first record whose digest's top `prefixBits` bits are ≥ p, so a
    /// lookup binary-searches only the few records sharing its prefix instead of ~20 levels spread over
    /// the whole array (each a cache miss on a 40 MB bucket). Derived from `records`.
    private let table: [UInt32]
    private let prefixBits: Int

    /// go-car `checkUnmarshalLengths`: "width must be at least 8"; "larger than allowed maximum" past 32 MiB.
    public static let maxWidth = 32 << 20

    /// A bucket from records already sorted by digest (checked: `unsortedIndexBucket` otherwise).
    public init(width: Int, records: [UInt8], code: UInt64? = nil) throws(CARError) {
        guard width >= 8, width <= Self.maxWidth else { throw .invalidIndexWidth(UInt32(clamping: width)) }
        guard records.count % width == 0 else {
            throw .invalidBucketLength(width: UInt32(width), length: UInt64(records.count))
        }
        self.init(unchecked: width, records: records)
        if let bad = firstUnsorted() { throw .unsortedIndexBucket(code: code, width: UInt32(width), entry: bad) }
    }

    init(unchecked width: Int, records: [UInt8]) {
        self.width = width
        self.records = records
        (self.table, self.prefixBits) = Self.prefixTable(width: width, records: records)
    }

    public static func == (a: IndexBucket, b: IndexBucket) -> Bool { a.width == b.width && a.records == b.records }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(width)
        hasher.combine(records)
    }

    public var digestLength: Int { width - 8 }
    public var count: Int { records.count / width }

    /// About 8 records per prefix, at most 2^16 prefixes (a 256 KiB table), none below 4,096 records.
    private static func prefixTable(width: Int, records: [UInt8]) -> ([UInt32], Int) {
        let n = records.count / width
        let digestBits = (width - 8) * 8
        guard n >= 4096, n <= Int(UInt32.max), digestBits >= 16 else { return ([], 0) }
        var bits = 0
        while bits < 16 && (n >> (bits + 1)) >= 8 { bits += 1 }
        var table = [UInt32](repeating: UInt32(n), count: (1 << bits) + 1)
        records.withUnsafeBytes { base in
            var next = 0  // the next prefix whose start is not yet recorded
            for i in 0..<n {
                let p = prefix(base, i * width, bits)
                while next <= p {
                    table[next] = UInt32(i)
                    next += 1
                }
            }
        }
        return (table, bits)
    }

    @inline(__always)
    private static func prefix(_ base: UnsafeRawBufferPointer, _ at: Int, _ bits: Int) -> Int {
        (Int(base[at]) << 8 | Int(base[at + 1])) >> (16 - bits)
    }

    /// The offset stored for `digest`, or nil. With duplicate digests, the first record's offset.
    public func offset(ofDigest digest: UnsafeRawBufferPointer) -> UInt64? {
        guard digest.count == digestLength else { return nil }
        let w = width, d = digestLength
        var low = 0, high = count
        if prefixBits > 0 {
            let p = Self.prefix(digest, 0, prefixBits)
            low = Int(table[p])
            high = Int(table[p + 1])
        }
        return records.withUnsafeBytes { base -> UInt64? in
            while low < high {
                let mid = (low + high) >> 1
                if compare(base.baseAddress! + mid * w, digest.baseAddress, d) < 0 { low = mid + 1 } else { high = mid }
            }
            guard low < count, compare(base.baseAddress! + low * w, digest.baseAddress, d) == 0 else { return nil }
            return base.loadLE(at: low * w + d)
        }
    }

    /// Calls `body` with each record's digest and offset, in order.
    public func forEach(_ body: (_ digest: UnsafeRawBufferPointer, _ offset: UInt64) throws -> Void) rethrows {
        let w = width, d = digestLength
        try records.withUnsafeBytes { base in
            for i in 0..<count {
                try body(UnsafeRawBufferPointer(rebasing: base[i * w..<i * w + d]), base.loadLE(at: i * w + d))
            }
        }
    }

    /// The index of the first record whose digest is smaller than the one before it, if any.
    private func firstUnsorted() -> Int? {
        let w = width, d = digestLength
        guard d > 0 else { return nil }
        return records.withUnsafeBytes { base -> Int? in
            var i = 1
            while i < count {
                if compare(base.baseAddress! + (i - 1) * w, base.baseAddress! + i * w, d) > 0 { return i }
                i += 1
            }
            return nil
        }
    }
}

@inline(__always)
private func compare(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer?, _ n: Int) -> Int32 {
    n == 0 ? 0 : memcmp(a, b!, n)
}

/// The IndexSorted (0x0400) body: buckets keyed by record width, for digests of any hash function.
public struct IndexSorted: Hashable, Sendable {
    /// Buckets in ascending width.
    public let buckets: [IndexBucket]

    /// Buckets in any order (sorted here); two buckets of one width are `duplicateIndexBucket`.
    public init(buckets: [IndexBucket], code: UInt64? = nil) throws(CARError) {
        let sorted = buckets.sorted { $0.width < $1.width }
        for i in sorted.indices.dropFirst() where sorted[i].width == sorted[i - 1].width {
            throw .duplicateIndexBucket(code: code, width: UInt32(sorted[i].width))
        }
        self.buckets = sorted
    }

    init(unchecked buckets: [IndexBucket]) { self.buckets = buckets }

    public var entryCount: Int { buckets.reduce(0) { $0 + $1.count } }

    /// The bucket for digests of `length` bytes.
    public func bucket(digestLength length: Int) -> IndexBucket? {
        buckets.first { $0.digestLength == length }
    }

    public func offset(ofDigest digest: UnsafeRawBufferPointer) -> UInt64? {
        // Index loops rather than `first(where:)`: no copy (and retain) of a bucket per lookup.
        for i in buckets.indices where buckets[i].digestLength == digest.count {
            return buckets[i].offset(ofDigest: digest)
        }
        return nil
    }

    public func offset(ofDigest digest: [UInt8]) -> UInt64? {
        digest.withUnsafeBytes { offset(ofDigest: $0) }
    }

    /// Calls `body` with every digest and offset, bucket by bucket in ascending width.
    public func forEach(_ body: (_ digest: UnsafeRawBufferPointer, _ offset: UInt64) throws -> Void) rethrows {
        for bucket in buckets { try bucket.forEach(body) }
    }

    func write(to out: inout IndexOutput) throws(CARError) {
        try out.append(le: Int32(buckets.count))
        for bucket in buckets {
            try out.append(le: UInt32(bucket.width))
            try out.append(le: Int64(bucket.records.count))
            try out.append(bucket.records)
        }
    }

    static func read(from input: inout IndexInput, code: UInt64?) throws(CARError) -> IndexSorted {
        let count: Int32 = try input.readLE("bucket count")
        guard count >= 0 else { throw .negativeIndexCount(count) }
        var buckets: [IndexBucket] = []
        for _ in 0..<count {
            let width: UInt32 = try input.readLE("bucket width")
            let length: UInt64 = try input.readLE("bucket length")
            guard width >= 8, width <= UInt32(IndexBucket.maxWidth) else { throw .invalidIndexWidth(width) }
            guard length <= UInt64(Int64.max), length % UInt64(width) == 0 else {
                throw .invalidBucketLength(width: width, length: length)
            }
            // The length is checked against the bytes that remain before anything is allocated for it.
            let records = try input.readBytes(length, "bucket records")
            buckets.append(try IndexBucket(width: Int(width), records: records, code: code))
        }
        return try IndexSorted(buckets: buckets, code: code)
    }
}

/// The MultihashIndexSorted (0x0401) body: one IndexSorted per multihash code.
public struct MultihashIndexSorted: Hashable, Sendable {
    /// One multihash code's buckets.
    public struct Group: Hashable, Sendable {
        public let code: UInt64
        public let index: IndexSorted
        public init(code: UInt64, index: IndexSorted) {
            self.code = code
            self.index = index
        }
    }

    /// Groups in ascending code.
    public let groups: [Group]

    /// Groups in any order (sorted here); two groups of one code are `duplicateIndexBucket`.
    public init(groups: [Group]) throws(CARError) {
        let sorted = groups.sorted { $0.code < $1.code }
        for i in sorted.indices.dropFirst() where sorted[i].code == sorted[i - 1].code {
            throw .duplicateIndexBucket(code: sorted[i].code, width: 0)
        }
        self.groups = sorted
    }

    init(unchecked groups: [Group]) { self.groups = groups }

    public var entryCount: Int { groups.reduce(0) { $0 + $1.index.entryCount } }

    /// The offset (of the section's varint, relative to the CARv1 payload) stored for `multihash`, or nil.
    public func offset(of multihash: Multihash) -> UInt64? {
        multihash.digest.withUnsafeBytes { offset(code: multihash.code, digest: $0) }
    }

    /// The offset stored for the multihash `code` + `digest`, or nil.
    public func offset(code: UInt64, digest: UnsafeRawBufferPointer) -> UInt64? {
        for i in groups.indices where groups[i].code == code { return groups[i].index.offset(ofDigest: digest) }
        return nil
    }

    /// Calls `body` with every entry: code ascending, then width ascending, then digest ascending.
    public func forEach(_ body: (_ code: UInt64, _ digest: UnsafeRawBufferPointer, _ offset: UInt64) throws -> Void) rethrows {
        for group in groups { try group.index.forEach { try body(group.code, $0, $1) } }
    }

    func write(to out: inout IndexOutput) throws(CARError) {
        try out.append(le: Int32(groups.count))
        for group in groups {
            try out.append(le: group.code)
            try group.index.write(to: &out)
        }
    }

    static func read(from input: inout IndexInput) throws(CARError) -> MultihashIndexSorted {
        let count: Int32 = try input.readLE("code count")
        guard count >= 0 else { throw .negativeIndexCount(count) }
        var groups: [Group] = []
        for _ in 0..<count {
            let code: UInt64 = try input.readLE("multihash code")
            groups.append(Group(code: code, index: try IndexSorted.read(from: &input, code: code)))
        }
        return try MultihashIndexSorted(groups: groups)
    }
}

/// A CARv2 index of either supported codec, as stored: `uvarint codec ‖ body`.
public enum CARIndex: Hashable, Sendable {
    /// car-index-sorted, 0x0400.
    case sorted(IndexSorted)
    /// car-multihash-index-sorted, 0x0401.
    case multihashSorted(MultihashIndexSorted)

    public var codec: UInt64 {
        switch self {
        case .sorted: return Multicodec.carIndexSorted
        case .multihashSorted: return Multicodec.carMultihashIndexSorted
        }
    }

    public var entryCount: Int {
        switch self {
        case .sorted(let i): return i.entryCount
        case .multihashSorted(let i): return i.entryCount
        }
    }

    /// The offset stored for `multihash`. An IndexSorted has no codes, so only the digest is matched there.
    public func offset(of multihash: Multihash) -> UInt64? {
        switch self {
        case .sorted(let i): return i.offset(ofDigest: multihash.digest)
        case .multihashSorted(let i): return i.offset(of: multihash)
        }
    }

    /// Every entry; `code` is nil for an IndexSorted.
    public func forEach(_ body: (_ code: UInt64?, _ digest: UnsafeRawBufferPointer, _ offset: UInt64) throws -> Void) rethrows {
        switch self {
        case .sorted(let i): try i.forEach { try body(nil, $0, $1) }
        case .multihashSorted(let i): try i.forEach { try body($0, $1, $2) }
        }
    }

    /// The stored form, codec varint included (go-car `index.WriteTo`).
    public func encode() -> [UInt8] {
        var out = IndexOutput.memory([])
        try! write(to: &out)  // memory output cannot fail
        guard case .memory(let bytes) = out else { return [] }
        return bytes
    }

    /// Writes the stored form to a new file at `path` (records go straight from the bucket arrays).
    public func write(toFile path: String) throws(CARError) {
        var out = IndexOutput.file(try FileSink(path: path))
        try write(to: &out)
        guard case .file(let sink) = out else { return }
        try sink.close()
    }

    private func write(to out: inout IndexOutput) throws(CARError) {
        var codecBytes: [UInt8] = []
        Varint.encode(codec, into: &codecBytes)
        try out.append(codecBytes)
        switch self {
        case .sorted(let i): try i.write(to: &out)
        case .multihashSorted(let i): try i.write(to: &out)
        }
    }

    /// Parses a standalone index (a `.carindex` / `.idx` file); trailing bytes are an error.
    public static func decode(_ bytes: [UInt8]) throws(CARError) -> CARIndex {
        let source = MemoryByteSource(bytes)
        return try read(from: source, range: 0..<source.count, allowTrailingBytes: false)
    }

    /// Reads an index from `range` of `source` (a CARv2's index runs to the end of the file). Every
    /// count, width and length is checked against the bytes left in `range` before it is used.
    public static func read(from source: some ByteSource, range: Range<UInt64>,
                            allowTrailingBytes: Bool = false) throws(CARError) -> CARIndex {
        var input = IndexInput(source: source, position: range.lowerBound, end: min(range.upperBound, source.count))
        let head = try input.peek(Varint.maxLength)
        let codec: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) { codec = try Varint.decode(head) } catch {
            if error == .truncated { throw .truncatedIndex("codec") }
            throw .invalidIndexCodecVarint(error)
        }
        input.position += UInt64(codec.length)
        let index: CARIndex
        switch codec.value {
        case Multicodec.carIndexSorted: index = .sorted(try IndexSorted.read(from: &input, code: nil))
        case Multicodec.carMultihashIndexSorted: index = .multihashSorted(try MultihashIndexSorted.read(from: &input))
        default: throw .unsupportedIndexCodec(codec.value)
        }
        if !allowTrailingBytes && input.position < input.end {
            throw .trailingIndexBytes(Int(input.end - input.position))
        }
        return index
    }
}

/// Where an index is encoded to.
enum IndexOutput {
    case memory([UInt8])
    case file(FileSink)

    mutating func append(_ bytes: [UInt8]) throws(CARError) {
        switch self {
        case .memory(var out):
            self = .memory([])  // keep the array uniquely referenced while it grows
            out.append(contentsOf: bytes)
            self = .memory(out)
        case .file(let sink): try sink.write(bytes)
        }
    }

    mutating func append<T: FixedWidthInteger>(le value: T) throws(CARError) {
        var bytes: [UInt8] = []
        bytes.appendLE(value)
        try append(bytes)
    }
}

/// A bounded cursor over an index in a `ByteSource`.
struct IndexInput {
    let source: any ByteSource
    var position: UInt64
    let end: UInt64

    init(source: some ByteSource, position: UInt64, end: UInt64) {
        self.source = source
        self.position = position
        self.end = max(position, end)
    }

    func peek(_ n: Int) throws(CARError) -> [UInt8] {
        try source.bytes(at: position, length: Int(min(UInt64(n), end - position)))
    }

    mutating func readBytes(_ n: UInt64, _ what: String) throws(CARError) -> [UInt8] {
        guard n <= end - position else { throw .truncatedIndex(what) }
        let bytes = try source.bytes(at: position, length: Int(n))
        guard bytes.count == Int(n) else { throw .truncatedIndex(what) }
        position += n
        return bytes
    }

    mutating func readLE<T: FixedWidthInteger>(_ what: String) throws(CARError) -> T {
        let bytes = try readBytes(UInt64(MemoryLayout<T>.size), what)
        return bytes.withUnsafeBytes { $0.loadLE(at: 0) }
    }
}
