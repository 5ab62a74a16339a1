import Multiformats
import NIOCore

/// Who is asking, passed to every `BlockSource` call so a source can apply per-peer scope (for
/// example "only blocks under the roots this peer asked for") and per-peer quotas.
public struct PeerContext: Sendable, Hashable {
    /// The remote peer's binary peer ID (a multihash), as the libp2p layer authenticated it.
    public var peerID: [UInt8]
    /// Distinguishes two connections from the same peer (chosen by the connection owner).
    public var connectionID: UInt64
    /// The Bitswap version negotiated on the peer's inbound stream.
    public var protocolVersion: BitswapProtocolVersion

    public init(peerID: [UInt8], connectionID: UInt64, protocolVersion: BitswapProtocolVersion) {
        self.peerID = peerID
        self.connectionID = connectionID
        self.protocolVersion = protocolVersion
    }
}

/// A negotiated Bitswap protocol version (ipfs/specs `bitswap-protocol.md`).
public enum BitswapProtocolVersion: Sendable, Hashable, CaseIterable {
    /// `/ipfs/bitswap/1.2.0`: want types, sendDontHave, block presences, pendingBytes.
    case v1_2_0
    /// `/ipfs/bitswap/1.1.0`: blocks travel in `payload` with a CID prefix.
    case v1_1_0
    /// `/ipfs/bitswap/1.0.0` and the bare `/ipfs/bitswap`: blocks travel in `blocks` (CIDv0 implied).
    case v1_0_0

    /// The protocol IDs a server registers, newest first, mapped to the version they select.
    public static let protocolIDs: [(id: String, version: BitswapProtocolVersion)] = [
        ("/ipfs/bitswap/1.2.0", .v1_2_0),
        ("/ipfs/bitswap/1.1.0", .v1_1_0),
        ("/ipfs/bitswap/1.0.0", .v1_0_0),
        ("/ipfs/bitswap", .v1_0_0),
    ]

    /// The version a multistream protocol ID selects, or nil if it is not a Bitswap ID.
    public init?(protocolID: String) {
        guard let match = Self.protocolIDs.first(where: { $0.id == protocolID }) else { return nil }
        self = match.version
    }

    /// Whether this version has `wantType`, `sendDontHave` and `blockPresences` (1.2.0 only).
    public var hasPresences: Bool { self == .v1_2_0 }
}

/// What the peer wants for one CID, as carried by a lookup request.
public enum WantType: Sendable, Hashable {
    /// `WantType.Block = 0`: send the block.
    case block
    /// `WantType.Have = 1`: say whether the block is held (or send it if it is small).
    case have
}

/// One CID the engine wants looked up, with the want-list context it came from so a source can
/// tell a root request from a block request (kubo asks for a root with a want-have at priority
/// 2147483647, then for its children with want-blocks at descending priorities).
public struct BlockRequest: Sendable, Hashable {
    /// The CID exactly as the peer sent it (a v0 stays v0). Results are keyed by this value.
    public var cid: CID
    /// What the peer asked for.
    public var wantType: WantType
    /// The peer's priority for this want (higher first).
    public var priority: Int32

    public init(cid: CID, wantType: WantType, priority: Int32) {
        self.cid = cid
        self.wantType = wantType
        self.priority = priority
    }
}

/// A batch of lookups for one peer. The engine batches so a source can coalesce ranged reads
/// (adjacent blocks of one CAR file become one GET) and pipeline index queries.
public struct BlockLookupBatch: Sendable {
    /// Who is asking.
    public var peer: PeerContext
    /// The CIDs to look up, in the order the engine will serve them (priority, then arrival).
    public var requests: [BlockRequest]
    /// For `.have` requests: a source SHOULD return `.block` instead of `.have` when the block is at
    /// most this many bytes and it can read it cheaply (boxo's `maxBlockSizeReplaceHasWithBlock`,
    /// 1024 by default). A source may always answer `.have`.
    public var replaceHaveWithBlockSize: Int
    /// The largest block the engine will send (2 MiB, the spec's "blocks ≤2 MiB MUST be supported").
    /// A source SHOULD answer `.tooLarge` without reading bigger blocks.
    public var maxBlockSize: Int

    public init(peer: PeerContext, requests: [BlockRequest], replaceHaveWithBlockSize: Int, maxBlockSize: Int) {
        self.peer = peer
        self.requests = requests
        self.replaceHaveWithBlockSize = replaceHaveWithBlockSize
        self.maxBlockSize = maxBlockSize
    }
}

/// The answer for one CID.
public enum BlockLookupResult: Sendable {
    /// The block is held (answer to a `.have` request). `size` is its length when known.
    case have(size: Int?)
    /// The block's bytes. CONTRACT: the source has already verified them against `cid`'s multihash;
    /// the engine re-checks nothing but sizes (a Bitswap client hashes `data` with the prefix and
    /// silently drops a mismatch, so an unverified block only wastes bandwidth).
    case block(ByteBuffer)
    /// Not held, or not in this peer's scope (the peer gets DONT_HAVE if it asked for one).
    case notFound
    /// Held but larger than `maxBlockSize`; refused and counted.
    case tooLarge(size: Int)
    /// A storage error for this CID (treated like `notFound` towards the peer, and logged).
    case failed(String)
}

/// Where blocks come from (filesystem CAR files, S3 + Redis, memory in tests).
///
/// One call answers a whole batch; a CID absent from the returned dictionary counts as `.notFound`.
/// Throwing fails every CID of the batch (as `.failed`). Implementations must be safe to call
/// concurrently for different peers.
public protocol BlockSource: Sendable {
    /// Looks up every request of `batch`. Results are keyed by `BlockRequest.cid` (exact bytes).
    func lookup(_ batch: BlockLookupBatch) async throws -> [CID: BlockLookupResult]

    /// The blocks stored under `root` (in the CARs it resolves to) that are not in `have`, by multihash, in
    /// storage order (for a CAR written from the root down, the order a DAG walk reaches them). For tools that
    /// resume or audit a transfer ("what of this DAG does the peer still lack?"); resolving the root also puts
    /// its CARs in `peer`'s scope. Empty when the root is unknown.
    func missingBlocks(under root: CID, have: Set<Multihash>, peer: PeerContext) async throws -> [Multihash]
}

extension BlockSource {
    /// Whether the block is held for `peer` (a one-CID want-have).
    public func has(_ cid: CID, peer: PeerContext) async throws -> Bool {
        switch try await lookupOne(cid, .have, peer: peer) {
        case .have, .block: return true
        case .notFound, .tooLarge, .failed, nil: return false
        }
    }

    /// The block's verified bytes for `peer`, or nil when it is not held (a one-CID want-block). Throws
    /// `BlockSourceError` when the source failed or the block is over the size limit.
    public func get(_ cid: CID, peer: PeerContext) async throws -> ByteBuffer? {
        switch try await lookupOne(cid, .block, peer: peer) {
        case .block(let bytes): return bytes
        case .notFound, .have, nil: return nil
        case .tooLarge(let size): throw BlockSourceError.tooLarge(cid, size: size)
        case .failed(let reason): throw BlockSourceError.failed(cid, reason: reason)
        }
    }

    private func lookupOne(_ cid: CID, _ type: WantType, peer: PeerContext) async throws -> BlockLookupResult? {
        let batch = BlockLookupBatch(peer: peer, requests: [BlockRequest(cid: cid, wantType: type, priority: 0)],
                                     replaceHaveWithBlockSize: 0, maxBlockSize: BitswapLimits.maxBlockSize)
        return try await lookup(batch)[cid]
    }
}

/// Decides, for every new want and before anything else, whether it may be served at all (a denylist). Called
/// on the connection's event loop for each want: it must be quick (hash-table lookups).
public protocol WantFilter: Sendable {
    /// A short label for why `cid` is denied (counted per label), or nil when it may be served.
    func denial(of cid: CID) -> String?
}

/// A step before every lookup batch and after it: per-peer quotas, rate limits. The engine asks it nothing
/// itself (it is sans-IO); the owner of the engine calls `admit` before running a `.lookup` action, feeds a
/// refusal back with `BitswapEngine.admission(_:for:)` (a `.close` becomes an engine action), and after an
/// admitted lookup reports what it cost with `charge`.
public protocol LookupGate: Sendable {
    /// Whether `batch` may be looked up.
    func admit(_ batch: BlockLookupBatch) async -> BitswapEngine.Admission
    /// What an admitted batch cost: the storage subrequests it caused (counted by the storage layer while the
    /// lookup ran) and the block bytes it returned.
    func charge(_ batch: BlockLookupBatch, subrequests: Int, bytes: Int) async
}

/// Why `BlockSource.get` could not return a block it may hold.
public enum BlockSourceError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLarge(CID, size: Int)
    case failed(CID, reason: String)

    public var description: String {
        switch self {
        case .tooLarge(let cid, let size): return "\(cid): block of \(size) bytes is over the limit"
        case .failed(let cid, let reason): return "\(cid): \(reason)"
        }
    }
}
