import Multiformats

/// What `edgeswap inspect` reports about a file: a CAR (v1 or v2) or a standalone CAR index.
public enum Inspection: Hashable, Sendable {
    case car(CARSummary)
    case index(IndexSummary)
}

/// A scan of a CAR file's sections (block bytes are skipped, not hashed).
public struct CARSummary: Hashable, Sendable {
    public var version: UInt64
    public var v2Header: CARv2Header?
    public var roots: [CID]
    public var blockCount: Int
    /// Content codec → number of blocks.
    public var codecCounts: [UInt64: Int]
    /// Multihash code → number of blocks.
    public var hashCounts: [UInt64: Int]
    /// The codec of the index a CARv2 carries, nil when it has none (always nil for a CARv1).
    public var indexCodec: UInt64?
    public var hasIndex: Bool { indexCodec != nil }
}

/// The contents of a standalone index.
public struct IndexSummary: Hashable, Sendable {
    public struct Bucket: Hashable, Sendable {
        /// The multihash code (nil in an IndexSorted, which has none).
        public var code: UInt64?
        public var width: Int
        public var count: Int
        public init(code: UInt64?, width: Int, count: Int) {
            self.code = code
            self.width = width
            self.count = count
        }
    }
    public struct Entry: Hashable, Sendable {
        public var code: UInt64?
        public var digest: [UInt8]
        public var offset: UInt64
        public init(code: UInt64?, digest: [UInt8], offset: UInt64) {
            self.code = code
            self.digest = digest
            self.offset = offset
        }
        /// The multihash in base58btc (for an IndexSorted entry, which has no code, the bare digest).
        public var key: String {
            guard let code else { return Multibase.base58btc.encodeWithoutPrefix(digest) }
            return Multibase.base58btc.encodeWithoutPrefix(Multihash(code: code, digest: digest).bytes)
        }
    }
    public var codec: UInt64
    public var buckets: [Bucket]
    public var entries: [Entry]
    /// Multihash codes present, ascending (empty for an IndexSorted).
    public var codes: [UInt64] {
        var seen: [UInt64] = []
        for b in buckets { if let c = b.code, seen.last != c { seen.append(c) } }
        return seen
    }
}

/// The logic behind `edgeswap inspect` and `edgeswap index`, kept here so that tests can call it.
public enum CARInspector {
    /// Summarises the CAR or index in `source`.
    public static func inspect(_ source: some ByteSource, options: CARReadOptions = CARReadOptions()) throws(CARError) -> Inspection {
        if isIndex(source) {
            let source = source
            return .index(summary(of: try CARIndex.read(from: source, range: 0..<source.count)))
        }
        let reader = try CARReader(source: source, options: options)
        var summary = CARSummary(version: reader.layout.version, v2Header: reader.layout.v2Header,
                                 roots: reader.header.roots, blockCount: 0, codecCounts: [:], hashCounts: [:],
                                 indexCodec: nil)
        while let section = try reader.next() {
            summary.blockCount += 1
            summary.codecCounts[section.cid.codec, default: 0] += 1
            summary.hashCounts[section.cid.multihash.code, default: 0] += 1
        }
        if let range = reader.layout.index {
            let head = try source.bytes(at: range.lowerBound, length: Varint.maxLength)
            do throws(Varint.DecodeError) { summary.indexCodec = try Varint.decode(head).value } catch {
                if error == .truncated { throw .truncatedIndex("codec") }
                throw .invalidIndexCodecVarint(error)
            }
        }
        return .car(summary)
    }

    /// Opens and inspects the file at `path`.
    public static func inspect(path: String, options: CARReadOptions = CARReadOptions()) throws(CARError) -> Inspection {
        try inspect(FileByteSource(path: path), options: options)
    }

    /// Whether `source` starts like a standalone index rather than a CAR: a codec varint 0x0400 or 0x0401
    /// (`80 08` / `81 08`) not followed by a CBOR map head (a CAR whose header is 1,024 or 1,025 bytes long
    /// starts with the same two bytes, then `a1`/`a2`).
    public static func isIndex(_ source: some ByteSource) -> Bool {
        guard let head = try? source.bytes(at: 0, length: 3), head.count == 3 else { return false }
        guard head[0] == 0x80 || head[0] == 0x81, head[1] == 0x08 else { return false }
        return head[2] != 0xa1 && head[2] != 0xa2
    }

    static func summary(of index: CARIndex) -> IndexSummary {
        var buckets: [IndexSummary.Bucket] = []
        var entries: [IndexSummary.Entry] = []
        switch index {
        case .sorted(let sorted):
            for b in sorted.buckets { buckets.append(.init(code: nil, width: b.width, count: b.count)) }
        case .multihashSorted(let mh):
            for g in mh.groups {
                for b in g.index.buckets { buckets.append(.init(code: g.code, width: b.width, count: b.count)) }
            }
        }
        entries.reserveCapacity(index.entryCount)
        index.forEach { code, digest, offset in entries.append(.init(code: code, digest: Array(digest), offset: offset)) }
        return IndexSummary(codec: index.codec, buckets: buckets, entries: entries)
    }
}

extension Inspection {
    /// Human-readable report, one fact per line.
    public func text() -> String {
        var lines: [String] = []
        switch self {
        case .car(let s):
            lines.append("Kind: CARv\(s.version)")
            lines.append("Version: \(s.version)")
            if let h = s.v2Header {
                lines.append("Fully indexed: \(h.isFullyIndexed ? "yes" : "no")")
                lines.append("Data offset: \(h.dataOffset)")
                lines.append("Data (payload) length: \(h.dataSize)")
                lines.append("Index offset: \(h.indexOffset)")
            }
            lines.append("Roots: " + (s.roots.isEmpty ? "(none)" : s.roots.map(\.description).joined(separator: ", ")))
            lines.append("Block count: \(s.blockCount)")
            lines.append("Block count per codec:")
            for (code, n) in s.codecCounts.sorted(by: { $0.key < $1.key }) { lines.append("\t\(Multicodec.name(of: code)): \(n)") }
            lines.append("CID count per multihash:")
            for (code, n) in s.hashCounts.sorted(by: { $0.key < $1.key }) { lines.append("\t\(Multicodec.name(of: code)): \(n)") }
            lines.append("Index: " + (s.indexCodec.map { "present (\(Multicodec.name(of: $0)))" } ?? "none"))
        case .index(let s):
            lines.append("Kind: index")
            lines.append("Codec: \(Multicodec.name(of: s.codec)) (0x\(String(s.codec, radix: 16)))")
            lines.append("Multihash codes: " + (s.codes.isEmpty ? "(none in this format)" : s.codes.map { Multicodec.name(of: $0) }.joined(separator: ", ")))
            lines.append("Buckets:")
            for b in s.buckets {
                let code = b.code.map { Multicodec.name(of: $0) + " " } ?? ""
                lines.append("\t\(code)width \(b.width) (digest \(b.width - 8) B): \(b.count) entries")
            }
            lines.append("Entries: \(s.entries.count)")
            for e in s.entries { lines.append("\t\(e.key) \(e.offset)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The same report as JSON.
    public func json() -> String {
        func names(_ counts: [UInt64: Int]) -> String {
            "{" + counts.sorted(by: { $0.key < $1.key }).map { "\"\(Multicodec.name(of: $0.key))\":\($0.value)" }.joined(separator: ",") + "}"
        }
        switch self {
        case .car(let s):
            var fields = ["\"kind\":\"car\"", "\"version\":\(s.version)"]
            if let h = s.v2Header {
                fields.append("\"fullyIndexed\":\(h.isFullyIndexed)")
                fields.append("\"dataOffset\":\(h.dataOffset)")
                fields.append("\"dataSize\":\(h.dataSize)")
                fields.append("\"indexOffset\":\(h.indexOffset)")
            }
            fields.append("\"roots\":[" + s.roots.map { "\"\($0)\"" }.joined(separator: ",") + "]")
            fields.append("\"blockCount\":\(s.blockCount)")
            fields.append("\"codecs\":" + names(s.codecCounts))
            fields.append("\"multihashes\":" + names(s.hashCounts))
            fields.append("\"index\":" + (s.indexCodec.map { "\"\(Multicodec.name(of: $0))\"" } ?? "null"))
            return "{" + fields.joined(separator: ",") + "}\n"
        case .index(let s):
            var fields = ["\"kind\":\"index\"", "\"codec\":\"\(Multicodec.name(of: s.codec))\""]
            fields.append("\"multihashCodes\":[" + s.codes.map { "\"\(Multicodec.name(of: $0))\"" }.joined(separator: ",") + "]")
            fields.append("\"buckets\":[" + s.buckets.map { b in
                "{" + (b.code.map { "\"code\":\"\(Multicodec.name(of: $0))\"," } ?? "") + "\"width\":\(b.width),\"count\":\(b.count)}"
            }.joined(separator: ",") + "]")
            fields.append("\"entries\":[" + s.entries.map { "{\"multihash\":\"\($0.key)\",\"offset\":\($0.offset)}" }.joined(separator: ",") + "]")
            return "{" + fields.joined(separator: ",") + "}\n"
        }
    }
}
