#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Multiformats

/// Why a CAR file, CAR header or CAR index was rejected. Every case names the rule that failed, so a
/// log line (or a test) can tell a truncated file from an oversized section from a bad index.
public enum CARError: Error, Equatable, Sendable, CustomStringConvertible {
    // MARK: I/O
    /// The operating system refused an open, read, write or stat.
    case io(operation: String, errno: Int32)

    // MARK: CARv1 header
    /// The input ended inside the header's length varint, or before the declared header bytes.
    case truncatedHeader
    /// The header length varint is malformed.
    case invalidHeaderLengthVarint(Varint.DecodeError)
    /// A zero-length header: a CAR must begin with a DAG-CBOR map.
    case emptyHeader
    /// go-car `ErrHeaderTooLarge`: "invalid header data, length of read beyond allowable maximum".
    case headerTooLarge(length: UInt64, limit: UInt64)
    /// The header bytes are not the DAG-CBOR map `{roots: [CID…], version: uint}`; the string says which rule.
    case invalidHeader(String)
    /// A root CID inside the header could not be parsed.
    case invalidRootCID(MultiformatsError)
    /// A version other than 1 (CARv1) or 2 (CARv2 pragma); go-car: "invalid car version: 42".
    case unsupportedVersion(UInt64)
    /// A CARv1 header (or the CARv1 payload inside a CARv2) whose version is not 1.
    case unexpectedPayloadVersion(UInt64)
    /// The header says version 2 but its bytes differ from the fixed 11-byte CARv2 pragma.
    case invalidPragma

    // MARK: CARv1 sections
    /// The section length varint is malformed (`offset` is relative to the CARv1 payload start).
    case invalidSectionLengthVarint(offset: UInt64, Varint.DecodeError)
    /// The payload ended inside a section length varint.
    case truncatedSectionLength(offset: UInt64)
    /// go-car: "carv1 null padding not allowed by default; see ZeroLengthSectionAsEOF".
    case zeroLengthSection(offset: UInt64)
    /// go-car `ErrSectionTooLarge`: "invalid section data, length of read beyond allowable maximum".
    case sectionTooLarge(offset: UInt64, length: UInt64, limit: UInt64)
    /// A section declares more bytes than remain in the payload.
    case truncatedSection(offset: UInt64, length: UInt64, available: UInt64)
    /// The CID at the start of a section could not be parsed.
    case invalidSectionCID(offset: UInt64, MultiformatsError)

    // MARK: CARv2
    /// The file ended inside the 40-byte CARv2 header.
    case truncatedV2Header
    /// go-car: "invalid data payload offset": it must be at least 51 and inside the file.
    case invalidDataOffset(UInt64)
    /// go-car: "invalid data payload size": it must be positive and end inside the file.
    case invalidDataSize(offset: UInt64, size: UInt64, fileSize: UInt64)
    /// The data offset plus the data size overflows a u64: the payload cannot lie anywhere.
    case dataSizeOverflow(offset: UInt64, size: UInt64)
    /// The index offset points inside the data payload, inside the headers, or past the end of the file.
    case invalidIndexOffset(UInt64)

    // MARK: Indexes
    /// An index codec this reader does not know (0x0400 and 0x0401 are supported).
    case unsupportedIndexCodec(UInt64)
    /// The index codec varint is malformed.
    case invalidIndexCodecVarint(Varint.DecodeError)
    /// The index ended early; the string names the field being read.
    case truncatedIndex(String)
    /// go-car: "index too big; … count is overflowing int32" (a negative i32 count).
    case negativeIndexCount(Int32)
    /// go-car: "malformed index; width must be at least 8" / "width is larger than allowed maximum" (32 MiB).
    case invalidIndexWidth(UInt32)
    /// A bucket's byte length is not a whole number of `width`-byte records, or overflows.
    case invalidBucketLength(width: UInt32, length: UInt64)
    /// Two buckets with the same width, or two groups with the same multihash code.
    case duplicateIndexBucket(code: UInt64?, width: UInt32)
    /// Entries of a bucket are not in byte-wise ascending digest order, so lookups would miss.
    case unsortedIndexBucket(code: UInt64?, width: UInt32, entry: Int)
    /// Bytes after the last bucket of a standalone index.
    case trailingIndexBytes(Int)
    /// A digest too long to index (width would exceed the 32 MiB limit).
    case digestTooLong(Int)

    // MARK: Writing
    /// A section or header over the writer's limits.
    case writeTooLarge(UInt64)

    // MARK: Detection
    /// A file that is neither a CARv1, a CARv2 nor a CAR index.
    case unrecognizedFormat(String)

    public var description: String {
        switch self {
        case .io(let op, let code):
            return "\(op) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .truncatedHeader: return "truncated CAR header"
        case .invalidHeaderLengthVarint(let e): return "invalid CAR header length varint: \(e)"
        case .emptyHeader: return "empty CAR header"
        case .headerTooLarge(let l, let limit):
            return "invalid header data, length of read beyond allowable maximum (\(l) > \(limit))"
        case .invalidHeader(let why): return "invalid CAR header: \(why)"
        case .invalidRootCID(let e): return "invalid root CID in CAR header: \(e)"
        case .unsupportedVersion(let v): return "invalid car version: \(v)"
        case .unexpectedPayloadVersion(let v): return "expected data payload header version of 1; got \(v)"
        case .invalidPragma: return "invalid CARv2 pragma"
        case .invalidSectionLengthVarint(let o, let e): return "invalid section length varint at offset \(o): \(e)"
        case .truncatedSectionLength(let o): return "truncated section length varint at offset \(o)"
        case .zeroLengthSection(let o):
            return "zero-length section at offset \(o) (carv1 null padding not allowed; see ZeroLengthSectionAsEOF)"
        case .sectionTooLarge(let o, let l, let limit):
            return "invalid section data at offset \(o), length of read beyond allowable maximum (\(l) > \(limit))"
        case .truncatedSection(let o, let l, let a):
            return "truncated section at offset \(o): declares \(l) bytes, \(a) remain"
        case .invalidSectionCID(let o, let e): return "invalid CID in section at offset \(o): \(e)"
        case .truncatedV2Header: return "truncated CARv2 header"
        case .invalidDataOffset(let o): return "invalid data payload offset: \(o)"
        case .invalidDataSize(let o, let s, let f):
            return "invalid data payload size: \(s) at offset \(o) in a \(f)-byte file"
        case .dataSizeOverflow(let o, let s): return "invalid data payload size: \(s) at offset \(o) overflows"
        case .invalidIndexOffset(let o): return "invalid index offset: \(o)"
        case .unsupportedIndexCodec(let c): return "unsupported index codec 0x\(String(c, radix: 16))"
        case .invalidIndexCodecVarint(let e): return "invalid index codec varint: \(e)"
        case .truncatedIndex(let what): return "truncated index: \(what)"
        case .negativeIndexCount(let n): return "index too big; count is overflowing int32 (\(n))"
        case .invalidIndexWidth(let w): return "malformed index; invalid record width \(w) (must be 8...33554432)"
        case .invalidBucketLength(let w, let l):
            return "malformed index; bucket of width \(w) has byte length \(l), not a multiple of the width"
        case .duplicateIndexBucket(let code, let w):
            return "malformed index; duplicate bucket (code \(code.map { "0x" + String($0, radix: 16) } ?? "-"), width \(w))"
        case .unsortedIndexBucket(let code, let w, let e):
            return "malformed index; entries not sorted (code \(code.map { "0x" + String($0, radix: 16) } ?? "-"), width \(w), entry \(e))"
        case .trailingIndexBytes(let n): return "\(n) trailing bytes after the index"
        case .digestTooLong(let n): return "digest of \(n) bytes is too long to index"
        case .writeTooLarge(let n): return "refusing to write a \(n)-byte section or header"
        case .unrecognizedFormat(let why): return "not a CAR file or CAR index: \(why)"
        }
    }
}
