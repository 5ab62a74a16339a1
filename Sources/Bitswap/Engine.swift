import Multiformats
import NIOCore

/// The Bitswap server side of one connection, sans-IO.
///
/// Events in (`receive`, `lookupCompleted`, `lookupFailed`, `outboundWritable`), `Action`s out.
/// The owner (a NIO handler) runs `.lookup` batches against a `BlockSource`, feeds the results
/// back, writes `.send` frames to the outbound stream it opened (the spec: the server "answers on
/// a stream it opens itself"), and calls `outboundWritable()` when that stream can take the next
/// message. The engine keeps at most one message outstanding, so a slow reader holds back at most
/// `maxBufferedBytes` of looked-up blocks plus one message.
///
/// Block bytes handed in by the source must already be verified against their CID (see
/// `BlockLookupResult.block`); the engine checks sizes only.
public struct BitswapEngine: Sendable {
    /// Tunables. Defaults follow boxo (`bitswap/internal/defaults`, `server/internal/decision`)
    /// except the message target size (see `targetMessageSize`).
    public struct Configuration: Sendable {
        /// Non-cancel entries kept from one message (the decoder drops the lowest priorities past it).
        public var maxWantsPerMessage = 1024
        /// Wants held per peer (boxo `MaxQueuedWantlistEntiresPerPeer` 1024); past it the lowest
        /// priorities are dropped.
        public var maxWantsPerPeer = 1024
        /// A want-have for a block at most this big is answered with the block (boxo
        /// `DefaultWantHaveReplaceSize` 1024).
        public var replaceHaveWithBlockSize = 1024
        /// Largest block sent (spec: blocks ≤2 MiB).
        public var maxBlockSize = BitswapLimits.maxBlockSize
        /// Responses are packed until adding the next item would pass this size. boxo uses 16 KiB,
        /// which sends a 256 KiB UnixFS chunk alone anyway and splits small blocks into many
        /// messages. 256 KiB matches both the common chunk size and yamux's initial 256 KiB stream
        /// window: one message per window, small blocks batched, and a client starts processing
        /// long before the 4 MiB cap would be reached.
        public var targetMessageSize = 256 << 10
        /// Hard cap for one frame including its length prefix (go-libp2p `MessageSizeMax`).
        public var maxMessageSize = BitswapLimits.maxMessageSize
        /// CIDs per lookup batch (lets a source coalesce reads).
        public var lookupBatchSize = 32
        /// Lookup batches outstanding at once.
        public var maxConcurrentLookups = 2
        /// The per-connection byte budget of answers: looked-up block bytes waiting to be sent plus the bytes
        /// the lookups in flight are expected to return. No lookup starts past it, so a peer that stops reading
        /// makes this side hold at most the budget (plus the error of the size estimate, below), one message and
        /// the stream's write buffer; then its wants wait. boxo's `MaxOutstandingBytesPerPeer` (1 MiB) is the same
        /// kind of bound.
        public var maxBufferedBytes = 2 << 20
        /// What a want-block is expected to return before any block was seen on the connection (the common UnixFS
        /// chunk). After that, the largest block seen on the connection is the estimate.
        public var initialBlockSizeEstimate = 256 << 10
        /// Hash functions served (boxo's `verifcid` allowlist is the model).
        public var allowedHashes: Set<UInt64> = Hashing.supported
        /// Asked for every new want before anything else (storage, cache): a denylist. A denied want is answered
        /// as a miss (DONT_HAVE where the peer asked for one) and refused with `.denied`.
        public var wantFilter: (any WantFilter)?

        public init() {}
    }

    /// Why a want was not served; the owner counts and logs these.
    public enum Refusal: Sendable, Equatable {
        /// The decoder set an entry aside (unknown want type, over-long CID, over the message cap).
        case rejectedEntry(BitswapMessage.RejectedEntry)
        /// The CID's hash function is not in `allowedHashes`.
        case hashNotAllowed(CID)
        /// The digest length is not the function's standard one.
        case badDigestLength(CID)
        /// The peer's wantlist passed `maxWantsPerPeer`; this many lowest-priority wants were dropped.
        case peerWantlistFull(dropped: Int)
        /// The block is over `maxBlockSize`.
        case blockTooLarge(CID, size: Int)
        /// The source failed for this CID (the peer sees a miss).
        case lookupFailed(CID, reason: String)
        /// The source answered `.have` to a want-block (a `BlockSource` contract violation).
        case haveForWantBlock(CID)
        /// The want filter (a denylist) denied the CID; `reason` is its label (e.g. the rule kind).
        case denied(CID, reason: String)
    }

    public enum Action: Sendable {
        /// Look these CIDs up and call `lookupCompleted(id:results:)` (or `lookupFailed`).
        case lookup(id: UInt64, BlockLookupBatch)
        /// Write this frame (`uvarint length ‖ message`, its parts in order, blocks not copied) to the outbound
        /// stream, then call `outboundWritable()` when it can take the next one.
        case send(BitswapFrame)
        /// A want was refused; count or log it.
        case refused(Refusal)
        /// Close the connection (a lookup gate said so, e.g. a quota whose policy is to disconnect). The
        /// engine has dropped every want and answers nothing more: no DONT_HAVE races out before the close
        /// to read as an ordinary miss.
        case close(reason: String)
    }

    /// What a `LookupGate` decided for one lookup batch, fed back with `admission(_:for:)` when it was not
    /// `.admit` (an admitted batch comes back through `lookupCompleted`).
    public enum Admission: Sendable, Equatable {
        /// Run the lookup.
        case admit
        /// Do not look up; every want of the batch is a miss (DONT_HAVE where the peer asked for one).
        case refuse(reason: String)
        /// Do not look up; close the connection.
        case close(reason: String)
    }

    /// Counters for metrics.
    public struct Statistics: Sendable, Equatable {
        public var messagesSent = 0
        public var blocksSent = 0
        public var blockBytesSent = 0
        public var havesSent = 0
        public var dontHavesSent = 0
        public var refusals = 0
        /// Lookup results that came back for wants already cancelled or replaced.
        public var staleResults = 0

        public init() {}
    }

    /// Wants are keyed by the CID exactly as sent (boxo's wantlist is keyed by `cid.Cid`, which compares
    /// bytes), so the v0 and the v1 dag-pb form of one multihash are two wants, each answered with the CID the
    /// peer used ("CIDs echoed byte for byte as asked"), and a cancel names the form it cancels.
    struct WantKey: Hashable, Sendable {
        var cid: CID
        init(_ cid: CID) { self.cid = cid }
    }

    enum WantState: Sendable, Equatable { case queued, inFlight(UInt64), ready }

    struct Want: Sendable {
        var cid: CID
        var priority: Int32
        var wantType: WantType
        var sendDontHave: Bool
        var seq: UInt64
        var state: WantState
    }

    enum Answer: Sendable {
        case block(ByteBuffer)
        case have
        case dontHave
    }

    struct ReadyItem: Sendable {
        var key: WantKey
        var cid: CID
        var priority: Int32
        var seq: UInt64
        var answer: Answer
    }

    public let configuration: Configuration
    public let peer: PeerContext
    public private(set) var statistics = Statistics()

    var wants: [WantKey: Want] = [:]
    var ready: [ReadyItem] = []
    var readyBytes = 0
    var batches: [UInt64: [WantKey]] = [:]
    var nextSeq: UInt64 = 0
    var nextBatchID: UInt64 = 1
    /// The bytes each batch in flight is expected to return (`issueLookups`), and their sum.
    var batchEstimates: [UInt64: Int] = [:]
    var inFlightBytes = 0
    /// The largest block seen on this connection (0 before the first).
    var largestBlockSeen = 0
    var outboundReady = true
    /// Set once a `.close` action was returned: every later event returns nothing.
    var closed = false

    public init(peer: PeerContext, configuration: Configuration = Configuration()) {
        self.peer = peer
        self.configuration = configuration
    }

    /// The number of wants currently held for this peer.
    public var wantCount: Int { wants.count }

    /// Block bytes looked up and waiting to be sent (bounded by `maxBufferedBytes` plus the batches in flight).
    public var bufferedBytes: Int { readyBytes }

    /// Lookup batches issued and not yet answered.
    public var lookupsInFlight: Int { batches.count }

    // MARK: Events

    /// A decoded message from the peer.
    public mutating func receive(_ message: BitswapMessage) -> [Action] {
        guard !closed else { return [] }
        var actions: [Action] = []
        var rejectedEntries = message.rejectedEntries
        var wantlist = message.wantlist
        if var list = wantlist {
            // A no-op when the decoder already applied the same cap (see `receive(encoded:)`).
            BitswapMessage.cap(&list, configuration.maxWantsPerMessage, rejected: &rejectedEntries)
            wantlist = list
        }
        for rejected in rejectedEntries { refuse(.rejectedEntry(rejected), &actions) }
        if let wantlist {
            if wantlist.full {
                // "full": the list replaces everything; drop wants it does not name.
                var named = Set<WantKey>()
                for e in wantlist.entries where !e.cancel { named.insert(WantKey(e.cid)) }
                for key in Array(wants.keys) where !named.contains(key) { remove(key) }
            }
            for entry in wantlist.entries { apply(entry, &actions) }
            enforcePeerCap(&actions)
        }
        pump(&actions)
        return actions
    }

    /// A message body as the frame decoder returned it, decoded with this engine's per-message cap.
    /// A decode error means the stream should be reset (boxo resets an inbound stream whose message
    /// fails to decode); the engine's state is unchanged.
    public mutating func receive(encoded body: ByteBuffer) throws(BitswapDecodeError) -> [Action] {
        let message = try BitswapMessage(decoding: body, maxWantlistEntries: configuration.maxWantsPerMessage)
        return receive(message)
    }

    /// The results of lookup batch `id`. CIDs missing from `results` count as not found.
    public mutating func lookupCompleted(id: UInt64, results: [CID: BlockLookupResult]) -> [Action] {
        var actions: [Action] = []
        guard !closed, let keys = batches.removeValue(forKey: id) else { return actions }
        inFlightBytes -= batchEstimates.removeValue(forKey: id) ?? 0
        for key in keys {
            guard let want = wants[key], want.state == .inFlight(id) else {
                statistics.staleResults += 1
                continue
            }
            resolve(key, want, results[want.cid] ?? .notFound, &actions)
        }
        pump(&actions)
        return actions
    }

    /// Lookup batch `id` failed as a whole (the source threw).
    public mutating func lookupFailed(id: UInt64, reason: String) -> [Action] {
        var results: [CID: BlockLookupResult] = [:]
        for key in batches[id] ?? [] {
            if let want = wants[key] { results[want.cid] = .failed(reason) }
        }
        return lookupCompleted(id: id, results: results)
    }

    /// A gate's decision for batch `id` other than `.admit`: `.refuse` answers the batch as misses, `.close`
    /// ends the engine with a `.close` action.
    public mutating func admission(_ decision: Admission, for id: UInt64) -> [Action] {
        switch decision {
        case .admit:
            return []
        case .refuse:
            return lookupCompleted(id: id, results: [:])
        case .close(let reason):
            guard !closed else { return [] }
            closed = true
            wants.removeAll()
            ready.removeAll()
            readyBytes = 0
            batches.removeAll()
            batchEstimates.removeAll()
            inFlightBytes = 0
            return [.close(reason: reason)]
        }
    }

    /// The outbound stream can take the next message.
    public mutating func outboundWritable() -> [Action] {
        guard !closed else { return [] }
        outboundReady = true
        var actions: [Action] = []
        pump(&actions)
        return actions
    }

    // MARK: Wantlist

    private mutating func apply(_ entry: BitswapMessage.Entry, _ actions: inout [Action]) {
        let key = WantKey(entry.cid)
        if entry.cancel {
            // Spec: clients SHOULD cancel; a cancel removes queued work and any unsent answer;
            // a lookup in flight finds no want when it returns and is dropped.
            remove(key)
            return
        }
        let mh = entry.cid.multihash
        guard configuration.allowedHashes.contains(mh.code) else {
            refuse(.hashNotAllowed(entry.cid), &actions)
            return
        }
        if let expected = Hashing.digestLength(of: mh.code), expected != mh.digest.count {
            refuse(.badDigestLength(entry.cid), &actions)
            return
        }
        // 1.0.0 and 1.1.0 have no want types or DONT_HAVE: every want is a want-block.
        let modern = peer.protocolVersion.hasPresences
        let wantType = modern ? entry.wantType : .block
        let sendDontHave = modern && entry.sendDontHave
        if wants[key] == nil, let filter = configuration.wantFilter, let reason = filter.denial(of: entry.cid) {
            // Decided before any lookup, so a denied block costs no storage request and no cache access; the
            // peer sees an ordinary miss (IPIP-383 leaves the response to the implementation).
            refuse(.denied(entry.cid, reason: reason), &actions)
            if sendDontHave {
                let want = Want(cid: entry.cid, priority: entry.priority, wantType: wantType,
                                sendDontHave: true, seq: nextSeq, state: .queued)
                nextSeq += 1
                wants[key] = want
                resolve(key, want, .notFound, &actions)
            }
            return
        }
        if var existing = wants[key] {
            existing.priority = entry.priority
            existing.sendDontHave = sendDontHave
            if existing.wantType == .have && wantType == .block {
                existing.wantType = .block
                // A HAVE not yet sent no longer answers the want: look the block up instead.
                if existing.state == .ready, let index = ready.firstIndex(where: { $0.key == key }),
                   case .have = ready[index].answer {
                    ready.remove(at: index)
                    existing.state = .queued
                }
            }
            wants[key] = existing
            return
        }
        let want = Want(cid: entry.cid, priority: entry.priority, wantType: wantType,
                        sendDontHave: sendDontHave, seq: nextSeq, state: .queued)
        nextSeq += 1
        wants[key] = want
        if mh.code == Multicodec.identity {
            // The data is the digest: answer from the CID itself, never from storage.
            var data = ByteBuffer()
            data.writeBytes(mh.digest)
            resolve(key, want, .block(data), &actions)
        }
    }

    private mutating func remove(_ key: WantKey) {
        guard let want = wants.removeValue(forKey: key) else { return }
        if want.state == .ready, let index = ready.firstIndex(where: { $0.key == key }) {
            if case .block(let data) = ready[index].answer { readyBytes -= data.readableBytes }
            ready.remove(at: index)
        }
    }

    private mutating func enforcePeerCap(_ actions: inout [Action]) {
        let excess = wants.count - configuration.maxWantsPerPeer
        guard excess > 0 else { return }
        // Drop the lowest priorities; among equals, the newest.
        let victims = wants.sorted {
            $0.value.priority != $1.value.priority ? $0.value.priority < $1.value.priority : $0.value.seq > $1.value.seq
        }.prefix(excess)
        for (key, _) in victims { remove(key) }
        refuse(.peerWantlistFull(dropped: excess), &actions)
    }

    private mutating func refuse(_ refusal: Refusal, _ actions: inout [Action]) {
        statistics.refusals += 1
        actions.append(.refused(refusal))
    }

    // MARK: Results

    private mutating func resolve(_ key: WantKey, _ want: Want, _ result: BlockLookupResult,
                                  _ actions: inout [Action]) {
        var answer: Answer?
        switch result {
        case .block(let data):
            largestBlockSeen = max(largestBlockSeen, data.readableBytes)
            if data.readableBytes > configuration.maxBlockSize {
                refuse(.blockTooLarge(want.cid, size: data.readableBytes), &actions)
            } else if want.wantType == .have && data.readableBytes > configuration.replaceHaveWithBlockSize {
                answer = .have
            } else {
                answer = .block(data)
            }
        case .have:
            if want.wantType == .have { answer = .have } else { refuse(.haveForWantBlock(want.cid), &actions) }
        case .tooLarge(let size):
            refuse(.blockTooLarge(want.cid, size: size), &actions)
        case .failed(let reason):
            refuse(.lookupFailed(want.cid, reason: reason), &actions)
        case .notFound:
            break
        }
        // Spec: "a missing block gets DONT_HAVE only if sendDontHave" (1.2.0 only; the flag is
        // never set for older versions).
        if answer == nil && want.sendDontHave { answer = .dontHave }
        guard let answer else {
            wants.removeValue(forKey: key)
            return
        }
        if case .block(let data) = answer { readyBytes += data.readableBytes }
        wants[key]?.state = .ready
        ready.append(ReadyItem(key: key, cid: want.cid, priority: want.priority, seq: want.seq, answer: answer))
    }

    // MARK: Output

    private mutating func pump(_ actions: inout [Action]) {
        issueLookups(&actions)
        if outboundReady, let frame = nextMessage() {
            outboundReady = false
            actions.append(.send(frame))
            // Sending freed buffer space: more lookups may start.
            issueLookups(&actions)
        }
    }

    /// Starts lookups while the budget has room: `maxBufferedBytes` less the bytes waiting to be sent and the
    /// bytes the batches in flight are expected to return. A want-block is expected to return the largest block
    /// seen on the connection (`initialBlockSizeEstimate` before the first), a want-have at most
    /// `replaceHaveWithBlockSize`. With nothing waiting and nothing in flight one want always starts, so a block
    /// larger than the budget is still served.
    private mutating func issueLookups(_ actions: inout [Action]) {
        guard batches.count < configuration.maxConcurrentLookups else { return }
        var room = configuration.maxBufferedBytes - readyBytes - inFlightBytes
        let idle = batches.isEmpty && readyBytes == 0
        guard room > 0 || idle else { return }
        var queued = wants.filter { $0.value.state == .queued }.map { ($0.key, $0.value) }
        guard !queued.isEmpty else { return }
        queued.sort { $0.1.priority != $1.1.priority ? $0.1.priority > $1.1.priority : $0.1.seq < $1.1.seq }
        let blockEstimate = max(1, largestBlockSeen > 0 ? largestBlockSeen : configuration.initialBlockSizeEstimate)
        let haveEstimate = max(1, configuration.replaceHaveWithBlockSize)
        var start = 0
        while start < queued.count && batches.count < configuration.maxConcurrentLookups
            && (room > 0 || (idle && start == 0))
        {
            var count = 0
            var estimate = 0
            while start + count < queued.count && count < configuration.lookupBatchSize {
                let cost = queued[start + count].1.wantType == .have ? haveEstimate : blockEstimate
                if count > 0 && estimate + cost > room { break }
                estimate += cost
                count += 1
            }
            let slice = queued[start..<start + count]
            start += count
            room -= estimate
            let id = nextBatchID
            nextBatchID += 1
            var requests: [BlockRequest] = []
            requests.reserveCapacity(slice.count)
            for (key, want) in slice {
                wants[key]?.state = .inFlight(id)
                requests.append(BlockRequest(cid: want.cid, wantType: want.wantType, priority: want.priority))
            }
            batches[id] = slice.map(\.0)
            batchEstimates[id] = estimate
            inFlightBytes += estimate
            actions.append(.lookup(id: id, BlockLookupBatch(
                peer: peer, requests: requests,
                replaceHaveWithBlockSize: configuration.replaceHaveWithBlockSize,
                maxBlockSize: configuration.maxBlockSize)))
        }
    }

    /// Packs ready answers, highest priority first (FIFO among equals), into one frame.
    private mutating func nextMessage() -> BitswapFrame? {
        guard !ready.isEmpty else { return nil }
        ready.sort { $0.priority != $1.priority ? $0.priority > $1.priority : $0.seq < $1.seq }
        let version = peer.protocolVersion
        // Room kept for pendingBytes (tag + up to 10 varint bytes) and the frame's length prefix.
        let reserve = 11 + 5
        let hardLimit = configuration.maxMessageSize - reserve
        var message = BitswapMessage()
        var size = 0
        var taken = 0
        for item in ready {
            let itemSize: Int
            switch item.answer {
            case .block(let data):
                if version == .v1_0_0 {
                    itemSize = Proto.delimitedSize(data.readableBytes)
                } else {
                    let inner = Proto.delimitedSize(item.cid.prefix.count) + Proto.delimitedSize(data.readableBytes)
                    itemSize = Proto.delimitedSize(inner)
                }
            case .have, .dontHave:
                let inner = Proto.delimitedSize(item.cid.bytes.count) + (item.answer.isDontHave ? 2 : 0)
                itemSize = Proto.delimitedSize(inner)
            }
            if taken > 0 && (size + itemSize > configuration.targetMessageSize || size + itemSize > hardLimit) { break }
            size += itemSize
            taken += 1
            switch item.answer {
            case .block(let data):
                if version == .v1_0_0 {
                    message.blocks.append(data)
                } else {
                    // The prefix comes from the REQUESTED CID, so the client derives the CID it asked for.
                    message.payload.append(.init(prefix: item.cid.prefix, data: data))
                }
                readyBytes -= data.readableBytes
                statistics.blocksSent += 1
                statistics.blockBytesSent += data.readableBytes
            case .have:
                message.blockPresences.append(.init(cid: item.cid, type: .have))
                statistics.havesSent += 1
            case .dontHave:
                message.blockPresences.append(.init(cid: item.cid, type: .dontHave))
                statistics.dontHavesSent += 1
            }
            wants.removeValue(forKey: item.key)
        }
        ready.removeFirst(taken)
        if version.hasPresences {
            // pendingBytes: block bytes still queued for this peer after this message.
            message.pendingBytes = Int32(clamping: readyBytes)
        }
        statistics.messagesSent += 1
        return message.encodeFrameParts()
    }
}

extension BitswapEngine.Answer {
    var isDontHave: Bool { if case .dontHave = self { true } else { false } }
}
