#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Multiformats

/// Collects (multihash, section offset) pairs and produces sorted indexes, as go-car's `Load` does:
/// group by multihash code, then by digest length, then sort each group byte-wise by digest.
public struct IndexBuilder: Sendable {
    /// code → digest length → flat records (`digest ‖ u64le offset`), unsorted until `build`.
    private var groups: [UInt64: [Int: [UInt8]]] = [:]
    public private(set) var count = 0

    public init() {}

    /// Adds one entry. Digests longer than the 32 MiB width limit are `digestTooLong`.
    public mutating func add(code: UInt64, digest: UnsafeRawBufferPointer, offset: UInt64) throws(CARError) {
        guard digest.count + 8 <= IndexBucket.maxWidth else { throw .digestTooLong(digest.count) }
        groups[code, default: [:]][digest.count, default: []].append(contentsOf: digest)
        groups[code, default: [:]][digest.count, default: []].appendLE(offset)
        count += 1
    }

    public mutating func add(_ multihash: Multihash, offset: UInt64) throws(CARError) {
        try multihash.digest.withBytes { raw throws(CARError) in try add(code: multihash.code, digest: raw, offset: offset) }
    }

    /// The MultihashIndexSorted (0x0401) of everything added.
    public func buildMultihashSorted() -> MultihashIndexSorted {
        let groups = self.groups.keys.sorted().map { code in
            MultihashIndexSorted.Group(code: code, index: Self.sortedIndex(self.groups[code]!))
        }
        return MultihashIndexSorted(unchecked: groups)
    }

    /// The IndexSorted (0x0400) of everything added: digests of every hash function share buckets by width.
    public func buildSorted() -> IndexSorted {
        var byLength: [Int: [UInt8]] = [:]
        for code in groups.keys.sorted() {
            for (length, records) in groups[code]! { byLength[length, default: []].append(contentsOf: records) }
        }
        return Self.sortedIndex(byLength)
    }

    private static func sortedIndex(_ byLength: [Int: [UInt8]]) -> IndexSorted {
        IndexSorted(unchecked: byLength.keys.sorted().map { length in
            IndexBucket(unchecked: length + 8, records: sortRecords(byLength[length]!, digestLength: length))
        })
    }

    /// Sorts fixed-width records by digest (ties by offset, so the output does not depend on input order).
    static func sortRecords(_ records: [UInt8], digestLength: Int) -> [UInt8] {
        let width = digestLength + 8
        let n = records.count / width
        guard n > 1 else { return records }
        return records.withUnsafeBytes { base -> [UInt8] in
            let p = base.baseAddress!
            var order = Array(0..<n)
            order.sort { a, b in
                let c = digestLength == 0 ? 0 : memcmp(p + a * width, p + b * width, digestLength)
                if c != 0 { return c < 0 }
                return base.loadLE(at: a * width + digestLength, as: UInt64.self)
                    < base.loadLE(at: b * width + digestLength, as: UInt64.self)
            }
            return [UInt8](unsafeUninitializedCapacity: records.count) { out, initialized in
                let dst = UnsafeMutableRawPointer(out.baseAddress!)
                for (i, j) in order.enumerated() {
                    (dst + i * width).copyMemory(from: p + j * width, byteCount: width)
                }
                initialized = records.count
            }
        }
    }
}

/// Builds indexes from CAR files, streaming.
public enum CARIndexer {
    /// Reads every section of the CARv1 or CARv2 in `source` and collects `(multihash, section offset)`.
    ///
    /// go-car `LoadIndex`: identity CIDs are left out "unless StoreIdentityCIDs is set" (`includeIdentity`);
    /// offsets are those of each section's varint relative to the CARv1 payload. An index already inside a
    /// CARv2 is ignored (go-car: "the index is re-generated every time").
    public static func collect(_ source: some ByteSource, options: CARReadOptions = CARReadOptions(),
                               includeIdentity: Bool = false) throws(CARError) -> IndexBuilder {
        let reader = try CARReader(source: source, options: options)
        var builder = IndexBuilder()
        while let section = try reader.next() {
            let mh = section.cid.multihash
            if mh.code == Multicodec.identity && !includeIdentity { continue }
            try builder.add(mh, offset: section.offset)
        }
        return builder
    }

    /// The MultihashIndexSorted (0x0401) of a CAR file, as go-car `GenerateIndex` writes it by default.
    public static func multihashIndexSorted(of source: some ByteSource, options: CARReadOptions = CARReadOptions(),
                                            includeIdentity: Bool = false) throws(CARError) -> MultihashIndexSorted {
        try collect(source, options: options, includeIdentity: includeIdentity).buildMultihashSorted()
    }

    /// Builds the MultihashIndexSorted of the CAR at `carPath` and writes it (codec varint included) to
    /// `outputPath`; returns the number of entries. This is `edgeswap index`.
    @discardableResult
    public static func writeIndex(carPath: String, outputPath: String,
                                  options: CARReadOptions = CARReadOptions()) throws(CARError) -> Int {
        let index = try multihashIndexSorted(of: try FileByteSource(path: carPath), options: options)
        try CARIndex.multihashSorted(index).write(toFile: outputPath)
        return index.entryCount
    }
}
