import Bitswap
import Multiformats
import NIOCore
import UnixFS

/// The client side of one Bitswap DAG fetch, as boxo's session drives it, as a sans-IO state machine.
///
/// Events in (``start(now:)``, ``receive(_:now:)``), the next outgoing message out; the caller owns the
/// stream and the clock (monotonic nanoseconds), so the machine is testable without a network.
///
/// The flow follows what kubo v0.22 (boxo 0.11) sends, as observed on the wire (notes/real-peers.md):
/// 1. the root is asked with WANT_HAVE ("The first request for a root is WANT_HAVE … priority 2147483647");
/// 2. after HAVE it is asked with WANT_BLOCK, sendDontHave = true ("Then come WANT_BLOCK, sendDontHave=true
///    entries with priorities counting down from 2147483646");
/// 3. every block is verified (hashed with the function its prefix names; the resulting CID must be one we
///    want), then cancelled ("After each block arrives, the client sends a CANCEL (priority 0)");
/// 4. a dag-pb block is decoded and its links are wanted (WANT_BLOCK) in link order; raw leaves end a branch.
///
/// Unlike boxo, the root's WANT_HAVE also sets sendDontHave, so a server without the root answers
/// DONT_HAVE instead of leaving the fetch to time out. At most ``Configuration/window`` wants are
/// outstanding at once; further links wait in a FIFO queue.
public struct BitswapFetchSession: Sendable {
    /// Tunables.
    public struct Configuration: Sendable, Equatable {
        /// Wants (WANT_HAVE or WANT_BLOCK) outstanding at once; at least 1. boxo's default session
        /// window is 32 wants per peer for a broadcast-less session.
        public var window: Int = 32
        /// Decode dag-pb blocks and want their links. Off: only the given CIDs are fetched (wantlist replay).
        public var traverse: Bool = true
        /// Ask each root with WANT_HAVE first (kubo's way); off: WANT_BLOCK straight away.
        public var rootWantHave: Bool = true
        /// Send a CANCEL for every received block, as boxo does.
        public var sendCancels: Bool = true

        public init(window: Int = 32, traverse: Bool = true, rootWantHave: Bool = true, sendCancels: Bool = true) {
            self.window = max(1, window)
            self.traverse = traverse
            self.rootWantHave = rootWantHave
            self.sendCancels = sendCancels
        }
    }

    /// A problem with a received block or presence. Each one is counted as an error.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The payload prefix does not parse as `version ‖ codec ‖ mh code ‖ digest length`.
        case badPrefix([UInt8])
        /// The prefix names a hash function this client cannot compute.
        case unsupportedHash(code: UInt64)
        /// The block's bytes, hashed as its prefix says, give a CID nobody wanted in this fetch: the block is
        /// corrupt, or the server sent something unasked.
        case unwantedBlock(CID)
        /// A dag-pb block that does not decode, so its children cannot be found.
        case undecodableNode(CID, DagPBError)

        public var description: String {
            switch self {
            case .badPrefix(let bytes): return "bad block prefix \(bytes)"
            case .unsupportedHash(let code): return "block prefix names hash 0x\(String(code, radix: 16)), which is not supported"
            case .unwantedBlock(let cid): return "received block \(cid) that was not wanted (corrupt or unsolicited)"
            case .undecodableNode(let cid, let error): return "dag-pb block \(cid) does not decode: \(error)"
            }
        }
    }

    /// Counters for one session.
    public struct Statistics: Sendable, Equatable {
        /// Verified blocks received.
        public var blocks = 0
        /// Bytes of verified blocks received.
        public var bytes = 0
        /// HAVE presences received.
        public var haves = 0
        /// DONT_HAVE presences received (each ends the branch under that CID).
        public var dontHaves = 0
        /// Verified blocks received again after they had already arrived (not an error: a race with CANCEL).
        public var duplicates = 0
        /// Wire messages sent (wants and cancels) by this session.
        public var messagesSent = 0
        /// Per-block latency in nanoseconds: from the first want for that CID to the block's arrival.
        public var latencies: [UInt64] = []
        /// Problems, in arrival order (bounded by ``maxRecordedFailures``; ``failureCount`` counts them all).
        public var failures: [Failure] = []
        /// How many failures happened.
        public var failureCount = 0
        /// The most failures kept in ``failures``.
        public static let maxRecordedFailures = 16

        public init() {}
    }

    private enum Want {
        case have(since: UInt64)
        case block(since: UInt64)
        var since: UInt64 {
            switch self {
            case .have(let since), .block(let since): return since
            }
        }
    }

    public let configuration: Configuration
    public private(set) var statistics = Statistics()
    private let roots: [CID]
    /// Wants sent and not yet answered, by the CID as wanted.
    private var outstanding: [CID: Want] = [:]
    /// Links discovered but not yet wanted (FIFO; `queueHead` is the next one).
    private var queue: [CID] = []
    private var queueHead = 0
    /// Every CID this session wants or has wanted, so a link seen twice (a DAG with shared children) is fetched once.
    private var known: Set<CID> = []
    /// CIDs whose block has arrived.
    private var received: Set<CID> = []
    /// Entries to put in the next message (wants and cancels).
    private var nextEntries: [BitswapMessage.Entry] = []
    /// kubo counts priorities down from `Int32.max - 1` for WANT_BLOCKs.
    private var nextPriority: Int32 = .max - 1

    /// A session that fetches `roots` (and with ``Configuration/traverse`` everything under them).
    public init(roots: [CID], configuration: Configuration = .init()) {
        self.roots = roots
        self.configuration = configuration
    }

    /// Whether every wanted block arrived or was answered DONT_HAVE.
    public var isComplete: Bool { outstanding.isEmpty && queueHead == queue.count }

    /// Wants sent and not answered yet.
    public var outstandingCount: Int { outstanding.count }

    /// The first message: the roots (WANT_HAVE or WANT_BLOCK), up to the window; nil if there are no roots.
    public mutating func start(now: UInt64) -> BitswapMessage? {
        for root in roots where known.insert(root).inserted {
            queue.append(root)
        }
        fillWindow(now: now, isRoot: true)
        return takeMessage()
    }

    /// Handles one received message; returns the message to send next (new wants and cancels), if any.
    public mutating func receive(_ message: BitswapMessage, now: UInt64) -> BitswapMessage? {
        for block in message.payload {
            accept(prefix: block.prefix, data: block.data, now: now)
        }
        // Bitswap 1.0.0 `blocks`: raw bytes, CIDv0 implied.
        for data in message.blocks {
            accept(prefix: CID.v0Prefix, data: data, now: now)
        }
        for presence in message.blockPresences {
            guard let want = outstanding[presence.cid] else { continue }
            switch presence.type {
            case .have:
                statistics.haves += 1
                if case .have(let since) = want {
                    // kubo: after HAVE, WANT_BLOCK with sendDontHave to the peer that has it.
                    outstanding[presence.cid] = .block(since: since)
                    nextEntries.append(.init(cid: presence.cid, priority: takePriority(), wantType: .block,
                                             sendDontHave: true))
                }
            case .dontHave:
                statistics.dontHaves += 1
                outstanding[presence.cid] = nil
            }
        }
        fillWindow(now: now, isRoot: false)
        return takeMessage()
    }

    private mutating func accept(prefix: [UInt8], data: ByteBuffer, now: UInt64) {
        let cid: CID
        do {
            cid = try Self.cid(prefix: prefix, data: data)
        } catch {
            record(error)
            return
        }
        guard let want = outstanding.removeValue(forKey: cid) else {
            if received.contains(cid) { statistics.duplicates += 1 } else { record(.unwantedBlock(cid)) }
            return
        }
        received.insert(cid)
        statistics.blocks += 1
        statistics.bytes += data.readableBytes
        statistics.latencies.append(now &- want.since)
        if configuration.sendCancels {
            nextEntries.append(.init(cid: cid, priority: 0, cancel: true, wantType: .block))
        }
        guard configuration.traverse, cid.codec == Multicodec.dagPB else { return }
        let decoded = data.withUnsafeReadableBytes { raw in
            Result { () throws(DagPBError) in try PBNode(decoding: raw) }
        }
        switch decoded {
        case .success(let node):
            for link in node.links where known.insert(link.hash).inserted {
                queue.append(link.hash)
            }
        case .failure(let error):
            record(.undecodableNode(cid, error))
        }
    }

    private mutating func record(_ failure: Failure) {
        statistics.failureCount += 1
        if statistics.failures.count < Statistics.maxRecordedFailures { statistics.failures.append(failure) }
    }

    private mutating func takePriority() -> Int32 {
        let priority = nextPriority
        nextPriority = nextPriority > 1 ? nextPriority - 1 : 1
        return priority
    }

    private mutating func fillWindow(now: UInt64, isRoot: Bool) {
        while outstanding.count < configuration.window, queueHead < queue.count {
            let cid = queue[queueHead]
            queueHead += 1
            if isRoot && configuration.rootWantHave {
                outstanding[cid] = .have(since: now)
                nextEntries.append(.init(cid: cid, priority: .max, wantType: .have, sendDontHave: true))
            } else {
                outstanding[cid] = .block(since: now)
                nextEntries.append(.init(cid: cid, priority: takePriority(), wantType: .block, sendDontHave: true))
            }
        }
        // Release the consumed part of the queue now and then instead of on every pop.
        if queueHead > 4096 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
    }

    private mutating func takeMessage() -> BitswapMessage? {
        guard !nextEntries.isEmpty else { return nil }
        defer { nextEntries.removeAll(keepingCapacity: true) }
        statistics.messagesSent += 1
        return BitswapMessage(wantlist: .init(entries: nextEntries, full: false))
    }

    /// The CID that `data` has under `prefix`: the prefix's version and codec, and the multihash computed
    /// with the prefix's hash function. Spec (bitswap 1.1.0): "prefix: CID prefix (cid version, multicodec
    /// and multihash prefix (type + length))".
    static func cid(prefix: [UInt8], data: ByteBuffer) throws(Failure) -> CID {
        let fields = prefix.withUnsafeBytes { raw -> [UInt64]? in
            var values: [UInt64] = []
            var offset = 0
            for _ in 0..<4 {
                guard offset < raw.count,
                      let (value, length) = try? Varint.decode(UnsafeRawBufferPointer(rebasing: raw[offset...]))
                else { return nil }
                values.append(value)
                offset += length
            }
            return offset == raw.count ? values : nil
        }
        guard let fields else { throw .badPrefix(prefix) }
        let (version, codec, hashCode, digestLength) = (fields[0], fields[1], fields[2], fields[3])
        let computed: Multihash
        do {
            computed = try data.withUnsafeReadableBytes { raw throws(MultiformatsError) in
                try Multihash.compute(code: hashCode, of: raw)
            }
        } catch {
            throw .unsupportedHash(code: hashCode)
        }
        guard UInt64(computed.digest.count) == digestLength else { throw .badPrefix(prefix) }
        switch version {
        case 0:
            guard codec == Multicodec.dagPB, let cid = try? CID(v0: computed) else { throw .badPrefix(prefix) }
            return cid
        case 1:
            return CID(codec: codec, multihash: computed)
        default:
            throw .badPrefix(prefix)
        }
    }
}

extension CID {
    /// The Bitswap prefix every CIDv0 has: version 0, dag-pb, sha2-256, 32 bytes.
    static let v0Prefix: [UInt8] = [0x00, 0x70, 0x12, 0x20]
}
