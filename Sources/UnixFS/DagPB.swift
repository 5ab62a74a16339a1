import ProtobufWire
import Multiformats

/// A dag-pb link (`PBLink` in the dag-pb spec).
///
/// dag-pb spec, serial format: `optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3;`
/// and "an omitted `Hash` should be interpreted as a bad block", so `hash` is not optional here.
public struct PBLink: Hashable, Sendable {
    /// The target's CID.
    public var hash: CID
    /// The link name; kubo writes `""` (encoded as an empty field 2) for the links inside a file DAG.
    public var name: String?
    /// The cumulative size of the target: its encoded block plus the `tsize` of all its links.
    public var tsize: UInt64?

    public init(hash: CID, name: String? = nil, tsize: UInt64? = nil) {
        self.hash = hash
        self.name = name
        self.tsize = tsize
    }
}

/// A dag-pb node (`PBNode` in the dag-pb spec): links, then optional opaque data (UnixFS puts its
/// `Data` protobuf there).
public struct PBNode: Hashable, Sendable {
    public var links: [PBLink]
    public var data: [UInt8]?

    public init(links: [PBLink] = [], data: [UInt8]? = nil) {
        self.links = links
        self.data = data
    }
}

/// Why bytes are not a valid dag-pb block. Each case names the rule of the dag-pb spec that failed.
public enum DagPBError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(what: String)
    case varintOverflow(what: String)
    /// A field number the schema does not have ("Fields and wire types other than those that appear in the
    /// Protobuf schema above are invalid").
    case unknownField(message: String, field: UInt64)
    case wrongWireType(message: String, field: UInt64, wireType: UInt8)
    /// "Duplicate entries in the binary form are invalid".
    case duplicateField(message: String, field: UInt64)
    /// "Fields in the `PBLink` message must appear in the order as defined by the Protobuf schema".
    case linkFieldOutOfOrder(field: UInt64)
    /// Links after Data: go-codec-dagpb and js-dag-pb both refuse this ("invalid order, found Data before
    /// Links content").
    case linksAfterData
    /// "an omitted `Hash` should be interpreted as a bad block".
    case missingHash(linkIndex: Int)
    /// "if the bytes cannot be converted to a CID then it should be treated as a bad block".
    case invalidHash(linkIndex: Int, reason: MultiformatsError)
    case invalidName(linkIndex: Int)

    public var description: String {
        switch self {
        case .truncated(let what): return "dag-pb: truncated \(what)"
        case .varintOverflow(let what): return "dag-pb: varint overflow in \(what)"
        case .unknownField(let message, let field): return "dag-pb: unknown field \(field) in \(message)"
        case .wrongWireType(let message, let field, let wireType):
            return "dag-pb: field \(field) of \(message) has wire type \(wireType)"
        case .duplicateField(let message, let field): return "dag-pb: duplicate field \(field) in \(message)"
        case .linkFieldOutOfOrder(let field): return "dag-pb: PBLink field \(field) out of order"
        case .linksAfterData: return "dag-pb: Links after Data"
        case .missingHash(let i): return "dag-pb: link \(i) has no Hash"
        case .invalidHash(let i, let reason): return "dag-pb: link \(i) Hash is not a CID: \(reason)"
        case .invalidName(let i): return "dag-pb: link \(i) Name is not UTF-8"
        }
    }
}

extension PBNode {
    /// The canonical encoding, byte for byte what go-codec-dagpb (and so boxo/kubo) writes: every link
    /// (field 2) before Data (field 1), and inside a link Hash (1), Name (2), Tsize (3), each only if present.
    ///
    /// Links are written in the order given; dag-pb says "when encoding, elements must be sorted in ascending
    /// order by their `Name` values", which directory builders do (`UnixFSDirectory`), while file DAGs have
    /// all-empty names whose order is the data order.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(encodedLength)
        for link in links {
            ProtoWire.appendTag(field: 2, wireType: ProtoWire.lengthDelimited, to: &out)
            ProtoWire.appendVarint(UInt64(link.encodedLength), to: &out)
            link.write(into: &out)
        }
        if let data {
            ProtoWire.appendBytesField(field: 1, data, to: &out)
        }
        return out
    }

    /// The length of `encoded()` without building it.
    public var encodedLength: Int {
        var n = 0
        for link in links {
            let l = link.encodedLength
            n += 1 + ProtoWire.varintLength(UInt64(l)) + l
        }
        if let data { n += 1 + ProtoWire.varintLength(UInt64(data.count)) + data.count }
        return n
    }

    /// Decodes a dag-pb block with the spec's strictness rules (field order, no duplicates, no unknown
    /// fields, Hash required and a valid CID).
    public init(decoding bytes: UnsafeRawBufferPointer) throws(DagPBError) {
        var reader = ProtoReader(bytes)
        var links: [PBLink] = []
        var data: [UInt8]?
        while !reader.isAtEnd {
            let (field, wireType) = try dagPBRead("PBNode") { () throws(ProtoReader.ReadError) in try reader.readTag() }
            guard field == 1 || field == 2 else { throw .unknownField(message: "PBNode", field: field) }
            guard wireType == ProtoWire.lengthDelimited else {
                throw .wrongWireType(message: "PBNode", field: field, wireType: wireType)
            }
            let payload = try dagPBRead("PBNode") { () throws(ProtoReader.ReadError) in
                try reader.readLengthDelimited()
            }
            if field == 1 {
                guard data == nil else { throw .duplicateField(message: "PBNode", field: 1) }
                data = Array(payload)
            } else {
                guard data == nil else { throw .linksAfterData }
                links.append(try PBLink(decoding: payload, index: links.count))
            }
        }
        self.init(links: links, data: data)
    }

    /// Decodes a dag-pb block held in an array.
    public init(decoding bytes: [UInt8]) throws(DagPBError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(DagPBError) in try PBNode(decoding: raw) } }
        self = try result.get()
    }
}

extension PBLink {
    var encodedLength: Int {
        let h = hash.bytes.count
        var n = 1 + ProtoWire.varintLength(UInt64(h)) + h
        if let name { let c = name.utf8.count; n += 1 + ProtoWire.varintLength(UInt64(c)) + c }
        if let tsize { n += 1 + ProtoWire.varintLength(tsize) }
        return n
    }

    func write(into out: inout [UInt8]) {
        ProtoWire.appendBytesField(field: 1, hash.bytes, to: &out)
        if let name { ProtoWire.appendBytesField(field: 2, name.utf8, to: &out) }
        if let tsize { ProtoWire.appendVarintField(field: 3, tsize, to: &out) }
    }

    init(decoding bytes: UnsafeRawBufferPointer, index: Int) throws(DagPBError) {
        var reader = ProtoReader(bytes)
        var hash: CID?
        var name: String?
        var tsize: UInt64?
        var lastField: UInt64 = 0
        while !reader.isAtEnd {
            let (field, wireType) = try dagPBRead("PBLink") { () throws(ProtoReader.ReadError) in try reader.readTag() }
            guard (1...3).contains(field) else { throw .unknownField(message: "PBLink", field: field) }
            let expectedWire = field == 3 ? ProtoWire.varint : ProtoWire.lengthDelimited
            guard wireType == expectedWire else {
                throw .wrongWireType(message: "PBLink", field: field, wireType: wireType)
            }
            if field == lastField { throw .duplicateField(message: "PBLink", field: field) }
            guard field > lastField else { throw .linkFieldOutOfOrder(field: field) }
            lastField = field
            switch field {
            case 1:
                let raw = try dagPBRead("PBLink Hash") { () throws(ProtoReader.ReadError) in
                    try reader.readLengthDelimited()
                }
                do throws(MultiformatsError) {
                    hash = try CID(bytes: raw)
                } catch {
                    throw .invalidHash(linkIndex: index, reason: error)
                }
            case 2:
                let raw = try dagPBRead("PBLink Name") { () throws(ProtoReader.ReadError) in
                    try reader.readLengthDelimited()
                }
                guard let s = String(validating: raw, as: UTF8.self) else { throw .invalidName(linkIndex: index) }
                name = s
            default:
                tsize = try dagPBRead("PBLink Tsize") { () throws(ProtoReader.ReadError) in try reader.readVarint() }
            }
        }
        guard let hash else { throw .missingHash(linkIndex: index) }
        self.init(hash: hash, name: name, tsize: tsize)
    }
}

/// Runs one protobuf read, naming the place in the error if the bytes run out or a varint overflows.
@inline(__always)
private func dagPBRead<T>(
    _ what: String, _ body: () throws(ProtoReader.ReadError) -> T
) throws(DagPBError) -> T {
    do throws(ProtoReader.ReadError) {
        return try body()
    } catch {
        throw error == .truncated ? .truncated(what: what) : .varintOverflow(what: what)
    }
}
