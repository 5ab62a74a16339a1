import ProtobufWire

/// The UnixFS `Data` message that dag-pb nodes of files and directories carry in their `Data` field
/// (ipfs/specs UNIXFS.md):
///
/// ```protobuf
/// message Data {
///   enum DataType { Raw = 0; Directory = 1; File = 2; Metadata = 3; Symlink = 4; HAMTShard = 5; }
///   required DataType Type = 1;
///   optional bytes Data = 2;
///   optional uint64 filesize = 3;
///   repeated uint64 blocksizes = 4;
///   optional uint64 hashType = 5;
///   optional uint64 fanout = 6;
///   optional uint32 mode = 7;
///   optional UnixTime mtime = 8;
/// }
/// ```
public struct UnixFSData: Hashable, Sendable {
    public enum DataType: UInt64, Sendable {
        case raw = 0, directory = 1, file = 2, metadata = 3, symlink = 4, hamtShard = 5
    }

    public var type: DataType
    public var data: [UInt8]?
    public var filesize: UInt64?
    public var blocksizes: [UInt64]
    public var hashType: UInt64?
    public var fanout: UInt64?
    public var mode: UInt32?
    /// The `UnixTime` message, kept encoded (edgeswap neither writes nor interprets it).
    public var mtime: [UInt8]?

    public init(
        type: DataType, data: [UInt8]? = nil, filesize: UInt64? = nil, blocksizes: [UInt64] = [],
        hashType: UInt64? = nil, fanout: UInt64? = nil, mode: UInt32? = nil, mtime: [UInt8]? = nil
    ) {
        self.type = type
        self.data = data
        self.filesize = filesize
        self.blocksizes = blocksizes
        self.hashType = hashType
        self.fanout = fanout
        self.mode = mode
        self.mtime = mtime
    }
}

/// Why bytes are not a UnixFS `Data` message.
public enum UnixFSDataError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated
    case varintOverflow
    case missingType
    case unknownType(UInt64)
    case wrongWireType(field: UInt64, wireType: UInt8)
    case unskippableWireType(field: UInt64, wireType: UInt8)

    public var description: String {
        switch self {
        case .truncated: return "unixfs: truncated Data message"
        case .varintOverflow: return "unixfs: varint overflow"
        case .missingType: return "unixfs: required field Type is missing"
        case .unknownType(let t): return "unixfs: unknown DataType \(t)"
        case .wrongWireType(let f, let w): return "unixfs: field \(f) has wire type \(w)"
        case .unskippableWireType(let f, let w): return "unixfs: unknown field \(f) with wire type \(w)"
        }
    }
}

extension UnixFSData {
    /// The encoding go-unixfs writes: fields in number order, `blocksizes` unpacked (proto2 default), each
    /// optional field only when set. kubo's file leaves are `Type=File, Data, filesize`; its inner file nodes
    /// `Type=File, filesize, blocksizes…`; its directories just `Type=Directory`.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 + (data?.count ?? 0) + blocksizes.count * 4)
        ProtoWire.appendVarintField(field: 1, type.rawValue, to: &out)
        if let data { ProtoWire.appendBytesField(field: 2, data, to: &out) }
        if let filesize { ProtoWire.appendVarintField(field: 3, filesize, to: &out) }
        for size in blocksizes { ProtoWire.appendVarintField(field: 4, size, to: &out) }
        if let hashType { ProtoWire.appendVarintField(field: 5, hashType, to: &out) }
        if let fanout { ProtoWire.appendVarintField(field: 6, fanout, to: &out) }
        if let mode { ProtoWire.appendVarintField(field: 7, UInt64(mode), to: &out) }
        if let mtime { ProtoWire.appendBytesField(field: 8, mtime, to: &out) }
        return out
    }

    /// Decodes a UnixFS `Data` message. This is ordinary protobuf (UnixFS has no canonical-form rule):
    /// fields in any order, later values win, unknown fields skipped, `blocksizes` packed or not.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(UnixFSDataError) {
        var reader = ProtoReader(bytes)
        var type: DataType?
        self.init(type: .raw)
        while !reader.isAtEnd {
            let (field, wireType) = try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readTag() }
            let expected: UInt8? = switch field {
            case 1, 3, 5, 6, 7: ProtoWire.varint
            case 2, 8: ProtoWire.lengthDelimited
            default: nil
            }
            // blocksizes may be packed (length-delimited) or not (varint).
            if let expected, wireType != expected {
                throw .wrongWireType(field: field, wireType: wireType)
            }
            switch field {
            case 1:
                let raw = try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readVarint() }
                guard let t = DataType(rawValue: raw) else { throw .unknownType(raw) }
                type = t
            case 2:
                data = Array(try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readLengthDelimited() })
            case 3:
                filesize = try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readVarint() }
            case 4 where wireType == ProtoWire.lengthDelimited:
                var packed = ProtoReader(
                    try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readLengthDelimited() })
                while !packed.isAtEnd {
                    blocksizes.append(try unixFSRead { () throws(ProtoReader.ReadError) in try packed.readVarint() })
                }
            case 4 where wireType == ProtoWire.varint:
                blocksizes.append(try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readVarint() })
            case 4:
                throw .wrongWireType(field: field, wireType: wireType)
            case 5:
                hashType = try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readVarint() }
            case 6:
                fanout = try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readVarint() }
            case 7:
                let raw = try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readVarint() }
                mode = UInt32(truncatingIfNeeded: raw)
            case 8:
                mtime = Array(try unixFSRead { () throws(ProtoReader.ReadError) in try reader.readLengthDelimited() })
            default:
                let skipped = try unixFSRead { () throws(ProtoReader.ReadError) in try reader.skip(wireType: wireType) }
                guard skipped else { throw .unskippableWireType(field: field, wireType: wireType) }
            }
        }
        guard let type else { throw .missingType }
        self.type = type
    }

    /// Decodes a UnixFS `Data` message held in an array.
    public init(decoding bytes: [UInt8]) throws(UnixFSDataError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(UnixFSDataError) in try UnixFSData(decoding: raw) }
        }
        self = try result.get()
    }
}

@inline(__always)
private func unixFSRead<T>(_ body: () throws(ProtoReader.ReadError) -> T) throws(UnixFSDataError) -> T {
    do throws(ProtoReader.ReadError) {
        return try body()
    } catch {
        throw error == .truncated ? .truncated : .varintOverflow
    }
}
