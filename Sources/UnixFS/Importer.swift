import Multiformats

/// One block of a DAG: its CID and its encoded bytes.
public struct DAGBlock: Hashable, Sendable {
    public let cid: CID
    public let bytes: [UInt8]

    public init(cid: CID, bytes: [UInt8]) {
        self.cid = cid
        self.bytes = bytes
    }
}

/// How files are cut into blocks and how those blocks are named. The presets match `ipfs add` flags.
public struct ImportOptions: Hashable, Sendable {
    /// The hash functions the importer can name blocks with.
    public enum HashFunction: Hashable, Sendable {
        case sha2_256, blake3

        public var code: UInt64 {
            switch self {
            case .sha2_256: return Multicodec.sha2_256
            case .blake3: return Multicodec.blake3
            }
        }
    }

    /// CID version of the dag-pb nodes (raw leaves are always CIDv1: CIDv0 can only name dag-pb).
    public var cidVersion: CID.Version
    /// Leaves as raw blocks (codec 0x55) rather than dag-pb nodes holding a UnixFS `File`.
    public var rawLeaves: Bool
    public var hashFunction: HashFunction
    public var chunkSize: Int
    /// Most links per inner node: boxo's `DefaultLinksPerBlock`, 174 ("roughly 8 KiB of links").
    public var maxLinks: Int

    public init(
        cidVersion: CID.Version, rawLeaves: Bool, hashFunction: HashFunction = .sha2_256,
        chunkSize: Int = FixedSizeChunker.defaultChunkSize, maxLinks: Int = 174
    ) {
        precondition(cidVersion == .v1 || hashFunction == .sha2_256, "CIDv0 names only sha2-256 multihashes")
        precondition(maxLinks >= 2, "a balanced DAG needs at least two links per node")
        self.cidVersion = cidVersion
        self.rawLeaves = rawLeaves
        self.hashFunction = hashFunction
        self.chunkSize = chunkSize
        self.maxLinks = maxLinks
    }

    /// `ipfs add` with kubo's defaults: CIDv0, dag-pb leaves, sha2-256, 256 KiB chunks, balanced, 174 links.
    public static let kuboDefault = ImportOptions(cidVersion: .v0, rawLeaves: false)
    /// `ipfs add --cid-version=1` (which turns raw leaves on): `bafkrei…` leaves, `bafybei…` inner nodes.
    public static let cidV1RawLeaves = ImportOptions(cidVersion: .v1, rawLeaves: true)
    /// `ipfs add --cid-version=1 --hash=blake3`: `bafkr4…` raw leaves, dag-pb inner nodes hashed with BLAKE3.
    public static let blake3RawLeaves = ImportOptions(cidVersion: .v1, rawLeaves: true, hashFunction: .blake3)

    /// The CID of a dag-pb block under these options.
    func dagPBCID(of bytes: [UInt8]) throws(MultiformatsError) -> CID {
        let mh = try bytes.withUnsafeBytes { raw in
            Result { () throws(MultiformatsError) in try Multihash.compute(code: hashFunction.code, of: raw) }
        }.get()
        return cidVersion == .v0 ? try CID(v0: mh) : CID(codec: Multicodec.dagPB, multihash: mh)
    }

    /// The CID of a raw block under these options.
    func rawCID(of bytes: UnsafeRawBufferPointer) throws(MultiformatsError) -> CID {
        CID(codec: Multicodec.raw, multihash: try Multihash.compute(code: hashFunction.code, of: bytes))
    }
}

/// The root of an imported file or directory: what a parent links to.
public struct ImportedNode: Hashable, Sendable {
    public let cid: CID
    /// The number of content bytes under this node (the file size; 0 for a directory).
    public let contentSize: UInt64
    /// The cumulative size kubo puts in a link's `Tsize`: this block's length plus its links' `Tsize`.
    public let cumulativeSize: UInt64

    public init(cid: CID, contentSize: UInt64, cumulativeSize: UInt64) {
        self.cid = cid
        self.contentSize = contentSize
        self.cumulativeSize = cumulativeSize
    }
}

/// Builds a file DAG with boxo's balanced layout (`ipld/unixfs/importer/balanced`), the default of
/// `ipfs add`, one chunk at a time.
///
/// boxo fills the tree depth first: the first leaf is the root; when it is full a new root takes the old one
/// as its first child and is filled with subtrees of the old depth, and so on. That gives the same tree as
/// keeping one list of pending children per level and closing a level into a node of the level above as soon
/// as it holds `maxLinks` children, then, at the end, closing every non-empty level bottom-up, where a level
/// closes even with a single child if a higher level exists (boxo's `fillNodeRec` creates the node before it
/// knows how many children it will get). The leaves and inner nodes come out as they are finished, so memory
/// stays at one chunk plus `maxLinks` links per level.
public struct BalancedFileBuilder: Sendable {
    public let options: ImportOptions
    private var chunker: FixedSizeChunker
    /// Pending children per level: level 0 holds leaves.
    private var levels: [[ImportedNode]] = [[]]
    private var sawChunk = false

    public init(options: ImportOptions = .kuboDefault) {
        self.options = options
        self.chunker = FixedSizeChunker(chunkSize: options.chunkSize)
    }

    /// Adds file bytes; returns the blocks they completed (leaves, then any inner nodes that filled up).
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(MultiformatsError) -> [DAGBlock] {
        var out: [DAGBlock] = []
        for chunk in chunker.push(bytes) {
            try addLeaf(chunk, to: &out)
        }
        return out
    }

    /// Adds file bytes held in an array.
    public mutating func write(_ bytes: [UInt8]) throws(MultiformatsError) -> [DAGBlock] {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(MultiformatsError) in try write(raw) }
        }.get()
    }

    /// Ends the file: returns its root and the blocks not yet returned (the last leaf and the right edge).
    public mutating func finish() throws(MultiformatsError) -> (root: ImportedNode, blocks: [DAGBlock]) {
        var out: [DAGBlock] = []
        if let last = chunker.finish() {
            try addLeaf(last, to: &out)
        }
        if !sawChunk {
            // boxo: "No data, return just an empty node" — an empty leaf.
            try addLeaf([], to: &out)
        }
        var level = 0
        while true {
            let higherPending = levels[(level + 1)...].contains { !$0.isEmpty }
            if !higherPending && levels[level].count == 1 {
                return (levels[level][0], out)
            }
            if !levels[level].isEmpty {
                let node = try closeLevel(level, into: &out)
                append(node, atLevel: level + 1)
            }
            level += 1
        }
    }

    private mutating func addLeaf(_ chunk: [UInt8], to out: inout [DAGBlock]) throws(MultiformatsError) {
        sawChunk = true
        let block: DAGBlock
        let cumulative: UInt64
        if options.rawLeaves {
            let cid = try chunk.withUnsafeBytes { raw in
                Result { () throws(MultiformatsError) in try options.rawCID(of: raw) }
            }.get()
            block = DAGBlock(cid: cid, bytes: chunk)
            cumulative = UInt64(chunk.count)
        } else {
            // go-unixfs leaf: `Type=File, Data=chunk, filesize=len(chunk)`; an empty chunk has no Data field.
            let unixfs = UnixFSData(
                type: .file, data: chunk.isEmpty ? nil : chunk, filesize: UInt64(chunk.count))
            let bytes = PBNode(data: unixfs.encoded()).encoded()
            block = DAGBlock(cid: try options.dagPBCID(of: bytes), bytes: bytes)
            cumulative = UInt64(bytes.count)
        }
        out.append(block)
        append(ImportedNode(cid: block.cid, contentSize: UInt64(chunk.count), cumulativeSize: cumulative), atLevel: 0)
        // Close every level that just filled up (a full level can only appear right after an append).
        var level = 0
        while levels[level].count == options.maxLinks {
            let node = try closeLevel(level, into: &out)
            append(node, atLevel: level + 1)
            level += 1
        }
    }

    private mutating func append(_ node: ImportedNode, atLevel level: Int) {
        if levels.count == level { levels.append([]) }
        levels[level].append(node)
    }

    /// Turns a level's pending children into one inner node (boxo `FSNodeOverDag.Commit`): links with empty
    /// names and the children's cumulative sizes, `Type=File`, `filesize`, one `blocksizes` entry per child.
    private mutating func closeLevel(_ level: Int, into out: inout [DAGBlock]) throws(MultiformatsError)
        -> ImportedNode
    {
        let children = levels[level]
        levels[level].removeAll(keepingCapacity: true)
        let (block, node) = try UnixFSImporter.fileNode(children: children, options: options)
        out.append(block)
        return node
    }
}

/// One-call importers over in-memory data, and the node builders the streaming builder shares.
public enum UnixFSImporter {
    /// Imports a whole file; returns its root and every block, in the order they were made (leaves first).
    public static func importFile(_ bytes: [UInt8], options: ImportOptions = .kuboDefault)
        throws(MultiformatsError) -> (root: ImportedNode, blocks: [DAGBlock])
    {
        var builder = BalancedFileBuilder(options: options)
        var blocks = try builder.write(bytes)
        let (root, rest) = try builder.finish()
        blocks.append(contentsOf: rest)
        return (root, blocks)
    }

    /// A file's inner node over `children`.
    static func fileNode(children: [ImportedNode], options: ImportOptions) throws(MultiformatsError)
        -> (DAGBlock, ImportedNode)
    {
        var links: [PBLink] = []
        links.reserveCapacity(children.count)
        var sizes: [UInt64] = []
        sizes.reserveCapacity(children.count)
        var contentSize: UInt64 = 0
        var linkTotal: UInt64 = 0
        for child in children {
            links.append(PBLink(hash: child.cid, name: "", tsize: child.cumulativeSize))
            sizes.append(child.contentSize)
            contentSize += child.contentSize
            linkTotal += child.cumulativeSize
        }
        let unixfs = UnixFSData(type: .file, filesize: contentSize, blocksizes: sizes)
        let bytes = PBNode(links: links, data: unixfs.encoded()).encoded()
        let cid = try options.dagPBCID(of: bytes)
        return (DAGBlock(cid: cid, bytes: bytes),
                ImportedNode(cid: cid, contentSize: contentSize, cumulativeSize: UInt64(bytes.count) + linkTotal))
    }

    /// A basic (non-sharded) UnixFS directory, as kubo writes one: links named by entry and sorted by the
    /// names' bytes ("elements must be sorted in ascending order by their `Name` values, which are compared
    /// by bytes rather than as strings"), `Tsize` the child's cumulative size, `Data` just `Type=Directory`.
    ///
    /// - Throws: `UnixFSDirectoryError` for empty, duplicate or `/`-containing names.
    public static func directory(entries: [(name: String, node: ImportedNode)], options: ImportOptions = .kuboDefault)
        throws -> (root: ImportedNode, block: DAGBlock)
    {
        var seen = Set<String>()
        for entry in entries {
            guard !entry.name.isEmpty, entry.name != ".", entry.name != "..", !entry.name.contains("/") else {
                throw UnixFSDirectoryError.invalidName(entry.name)
            }
            guard seen.insert(entry.name).inserted else { throw UnixFSDirectoryError.duplicateName(entry.name) }
        }
        let sorted = entries.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        let links = sorted.map { PBLink(hash: $0.node.cid, name: $0.name, tsize: $0.node.cumulativeSize) }
        let bytes = PBNode(links: links, data: UnixFSData(type: .directory).encoded()).encoded()
        let cid = try options.dagPBCID(of: bytes)
        let total = sorted.reduce(UInt64(bytes.count)) { $0 + $1.node.cumulativeSize }
        return (ImportedNode(cid: cid, contentSize: 0, cumulativeSize: total), DAGBlock(cid: cid, bytes: bytes))
    }

    /// A single raw block (`bafkrei…` for sha2-256): the CID of `ipfs add --raw-leaves` for content of at most
    /// one chunk, and of `ipfs block put`.
    public static func rawBlock(_ bytes: [UInt8], hashFunction: ImportOptions.HashFunction = .sha2_256)
        throws(MultiformatsError) -> DAGBlock
    {
        let mh = try bytes.withUnsafeBytes { raw in
            Result { () throws(MultiformatsError) in try Multihash.compute(code: hashFunction.code, of: raw) }
        }.get()
        return DAGBlock(cid: CID(codec: Multicodec.raw, multihash: mh), bytes: bytes)
    }
}

/// Why a directory could not be built.
public enum UnixFSDirectoryError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidName(String)
    case duplicateName(String)

    public var description: String {
        switch self {
        case .invalidName(let n): return "unixfs directory: invalid entry name \"\(n)\""
        case .duplicateName(let n): return "unixfs directory: duplicate entry name \"\(n)\""
        }
    }
}
