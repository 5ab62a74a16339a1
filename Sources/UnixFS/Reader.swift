import Multiformats

/// One entry of a UnixFS directory.
public struct DirectoryEntry: Hashable, Sendable {
    public let name: String
    public let cid: CID
    /// The link's `Tsize` (cumulative size of the entry's DAG), if the link has one.
    public let tsize: UInt64?
}

/// Why a DAG could not be read back.
public enum UnixFSReadError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingBlock(CID)
    case hashMismatch(CID)
    case unverifiableHash(CID, MultiformatsError)
    case unsupportedCodec(CID, UInt64)
    case dagPB(CID, DagPBError)
    case unixfs(CID, UnixFSDataError)
    case missingUnixFSData(CID)
    /// The node is not of the kind asked for (a directory where a file was expected, a HAMT shard, …).
    case unexpectedType(CID, expected: String, found: UnixFSData.DataType)
    /// `blocksizes`, `filesize` and the children disagree.
    case sizeMismatch(CID, String)
    case tooDeep(CID)

    public var description: String {
        switch self {
        case .missingBlock(let c): return "block \(c) is missing"
        case .hashMismatch(let c): return "block \(c) does not hash to its CID"
        case .unverifiableHash(let c, let e): return "block \(c) cannot be verified: \(e)"
        case .unsupportedCodec(let c, let codec): return "block \(c) has codec \(Multicodec.name(of: codec))"
        case .dagPB(let c, let e): return "block \(c): \(e)"
        case .unixfs(let c, let e): return "block \(c): \(e)"
        case .missingUnixFSData(let c): return "block \(c) has no UnixFS Data"
        case .unexpectedType(let c, let expected, let found): return "block \(c) is a \(found), expected \(expected)"
        case .sizeMismatch(let c, let why): return "block \(c): \(why)"
        case .tooDeep(let c): return "DAG under \(c) is deeper than the reader allows"
        }
    }
}

/// Reads UnixFS DAGs back from blocks: file bytes, directory entries, and the list of blocks a DAG holds.
/// Every block is checked against its CID before it is used.
public struct UnixFSReader {
    /// Returns a block's bytes, or nil if the block is not there.
    public typealias Lookup = (CID) throws -> [UInt8]?

    private let lookup: Lookup
    /// Files nest at most a handful of levels (174^6 chunks of 256 KiB is far past any file); anything deeper
    /// is a cycle or a hostile DAG.
    public static let maxDepth = 64

    public init(lookup: @escaping Lookup) {
        self.lookup = lookup
    }

    /// A block's bytes, verified against its CID.
    public func block(_ cid: CID) throws -> [UInt8] {
        guard let bytes = try lookup(cid) else { throw UnixFSReadError.missingBlock(cid) }
        let ok: Bool
        do {
            ok = try bytes.withUnsafeBytes { raw in
                try Result { () throws(MultiformatsError) in try cid.multihash.verify(raw) }.get()
            }
        } catch let error as MultiformatsError {
            throw UnixFSReadError.unverifiableHash(cid, error)
        }
        guard ok else { throw UnixFSReadError.hashMismatch(cid) }
        return bytes
    }

    /// The bytes of the file rooted at `root` (a raw block, or a dag-pb UnixFS `File`/`Raw` DAG).
    public func readFile(_ root: CID) throws -> [UInt8] {
        var out: [UInt8] = []
        let size = try appendFile(root, into: &out, depth: 0)
        guard size == UInt64(out.count) else {
            throw UnixFSReadError.sizeMismatch(root, "read \(out.count) bytes, DAG says \(size)")
        }
        return out
    }

    /// The entries of the (non-sharded) directory at `root`, in link order.
    public func listDirectory(_ root: CID) throws -> [DirectoryEntry] {
        let (node, unixfs) = try dagPBNode(root)
        guard unixfs.type == .directory else {
            throw UnixFSReadError.unexpectedType(root, expected: "directory", found: unixfs.type)
        }
        return node.links.map { DirectoryEntry(name: $0.name ?? "", cid: $0.hash, tsize: $0.tsize) }
    }

    /// Every distinct block of the DAG under `root`, depth-first, parents before children (the order of
    /// `ipfs dag export`). Follows the links of any dag-pb node; raw blocks have none.
    public func blocks(under root: CID) throws -> [CID] {
        var seen = Set<CID>()
        var order: [CID] = []
        // Explicit stack: (cid, depth); children are pushed in reverse so they pop in link order.
        var stack: [(CID, Int)] = [(root, 0)]
        while let (cid, depth) = stack.popLast() {
            guard seen.insert(cid).inserted else { continue }
            guard depth <= Self.maxDepth else { throw UnixFSReadError.tooDeep(root) }
            order.append(cid)
            let bytes = try block(cid)
            switch cid.codec {
            case Multicodec.raw: continue
            case Multicodec.dagPB:
                let node: PBNode
                do throws(DagPBError) {
                    node = try PBNode(decoding: bytes)
                } catch {
                    throw UnixFSReadError.dagPB(cid, error)
                }
                for link in node.links.reversed() { stack.append((link.hash, depth + 1)) }
            default:
                throw UnixFSReadError.unsupportedCodec(cid, cid.codec)
            }
        }
        return order
    }

    /// Appends the file bytes under `cid`; returns the size the node claims (checked by the caller).
    private func appendFile(_ cid: CID, into out: inout [UInt8], depth: Int) throws -> UInt64 {
        guard depth <= Self.maxDepth else { throw UnixFSReadError.tooDeep(cid) }
        if cid.codec == Multicodec.raw {
            let bytes = try block(cid)
            out.append(contentsOf: bytes)
            return UInt64(bytes.count)
        }
        let (node, unixfs) = try dagPBNode(cid)
        guard unixfs.type == .file || unixfs.type == .raw else {
            throw UnixFSReadError.unexpectedType(cid, expected: "file", found: unixfs.type)
        }
        let start = out.count
        out.append(contentsOf: unixfs.data ?? [])
        // UNIXFS.md: "blocksizes: This field is used to store the size of each child node"; there is one per link.
        guard node.links.isEmpty || unixfs.blocksizes.count == node.links.count else {
            throw UnixFSReadError.sizeMismatch(
                cid, "\(node.links.count) links but \(unixfs.blocksizes.count) blocksizes")
        }
        for (index, link) in node.links.enumerated() {
            let before = out.count
            let claimed = try appendFile(link.hash, into: &out, depth: depth + 1)
            let got = UInt64(out.count - before)
            guard got == claimed, got == unixfs.blocksizes[index] else {
                throw UnixFSReadError.sizeMismatch(
                    cid, "child \(index) holds \(got) bytes, blocksizes says \(unixfs.blocksizes[index])")
            }
        }
        let total = UInt64(out.count - start)
        if let filesize = unixfs.filesize, filesize != total {
            throw UnixFSReadError.sizeMismatch(cid, "filesize \(filesize) but \(total) bytes under the node")
        }
        return total
    }

    private func dagPBNode(_ cid: CID) throws -> (PBNode, UnixFSData) {
        guard cid.codec == Multicodec.dagPB else { throw UnixFSReadError.unsupportedCodec(cid, cid.codec) }
        let bytes = try block(cid)
        let node: PBNode
        do throws(DagPBError) {
            node = try PBNode(decoding: bytes)
        } catch {
            throw UnixFSReadError.dagPB(cid, error)
        }
        guard let data = node.data else { throw UnixFSReadError.missingUnixFSData(cid) }
        do throws(UnixFSDataError) {
            return (node, try UnixFSData(decoding: data))
        } catch {
            throw UnixFSReadError.unixfs(cid, error)
        }
    }
}
