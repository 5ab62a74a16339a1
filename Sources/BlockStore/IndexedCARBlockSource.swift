import Bitswap
import CAR
import Logging
import Multiformats
import NIOCore
import ObjectStorage

/// Tunables of an `IndexedCARBlockSource`. The defaults suit a filesystem store; an S3 store wants a larger
/// `coalesceGap` (a round trip costs more than reading a few hundred KiB extra).
public struct IndexedCARBlockSourceSettings: Sendable, Equatable {
    /// Budget in bytes for decoded CAR indexes kept in memory (least recently used evicted first).
    public var indexCacheBytes: Int = 256 << 20
    /// Two wanted sections of one CAR separated by at most this many unwanted bytes are read with one
    /// ranged read (the bytes between are read and dropped).
    public var coalesceGap: UInt64 = 64 << 10
    /// Upper bound on the length of one coalesced ranged read.
    public var maxCoalescedRead: UInt64 = 8 << 20
    /// How long a dudewhere or blockmap listing (root → CARs, block → CARs) is reused. Concurrent lookups of the
    /// same prefix share one listing whatever this is; a CAR ingested later is seen after at most this long.
    public var locationCacheTTL: Duration = .seconds(30)
    /// How many listings the location cache holds (oldest dropped first).
    public var locationCacheEntries: Int = 65_536
    /// How long a block that was not found anywhere is answered "not found" without asking the store.
    public var negativeCacheTTL: Duration = .seconds(5)
    /// How many missed multihashes the negative cache holds (oldest dropped first).
    public var negativeCacheEntries: Int = 65_536
    /// How long a peer's scope (the CARs its roots resolved to) lives after its last use.
    public var peerScopeTTL: Duration = .seconds(600)
    /// How many peers have a scope at once (the one expiring soonest is dropped first).
    public var peerScopePeers: Int = 10_000
    /// How many CARs one peer's scope remembers (most recent kept).
    public var peerScopeCARsPerPeer: Int = 32
    /// Byte budget of the verified block cache (`VerifiedBlockCache`: blocks that passed verification, served
    /// again without a storage read or a hash); 0 turns it off.
    public var blockCacheBytes: Int = 128 << 20
    /// Largest block served (the Bitswap engine's own limit, `BlockLookupBatch.maxBlockSize`, also
    /// applies). 2 MiB is the largest block Bitswap implementations are required to accept; bigger
    /// sections are refused after reading only their head.
    public var maxBlockSize: Int = 2 << 20
    /// With shared scopes (Redis): how long a peer's scope read from the shared store is trusted before the
    /// next batch reads it again. The read also refreshes the shared scope's time to live, so a peer served
    /// here keeps its scope alive for every instance.
    public var sharedScopeRefresh: Duration = .seconds(30)

    public init() {}
}

/// The answer for one wanted CID.
public enum BlockLookup: Sendable, Equatable {
    /// The block's bytes, verified against the CID's multihash.
    case block(ByteBuffer)
    /// The block is listed in a CAR's index (answer to a want-have whose block was not read).
    case have
    /// No CAR known to the store holds it (or the CID is an identity CID, which is never looked up).
    case notFound
    /// The store holds a section for it, but the bytes there do not hash to the CID (or the section there
    /// is not the one the index promised). Never served; logged and counted.
    case corrupt
    /// The section is larger than `maxBlockSize`: refused.
    case tooLarge(UInt64)
    /// The store failed (I/O, service, transport) before the answer was known.
    case unavailable(BucketError)
}

/// Counters of an `IndexedCARBlockSource`, for metrics and tests.
public struct BlockSourceStatistics: Sendable, Equatable {
    /// Index objects read from satnav (one per cold CAR, however many concurrent requests wanted it).
    public var indexLoads = 0
    /// Ranged reads of CAR bytes for blocks (each coalesced run is one).
    public var blockReads = 0
    /// Bytes those ranged reads returned.
    public var bytesRead: UInt64 = 0
    /// Blocks answered with verified bytes.
    public var blocksServed = 0
    /// Sections whose bytes did not match the wanted CID.
    public var corruptBlocks = 0
    /// Wants answered from the negative cache.
    public var negativeCacheHits = 0
    /// dudewhere and blockmap listings.
    public var listings = 0
    /// Indexes evicted from the cache to stay within its byte budget.
    public var indexEvictions = 0
    /// Reads of a peer's scope from the shared store (Redis).
    public var sharedScopeReads = 0
    /// Cold CAR indexes found in the shared index cache (Redis) instead of satnav.
    public var sharedIndexHits = 0
    /// Calls to the shared store (scopes or indexes) that failed; each was logged and the lookup went on
    /// without it.
    public var sharedStoreFailures = 0
    /// The verified block cache's counters (hits cost no storage request and no hash).
    public var blockCache = VerifiedBlockCache.Statistics()
}

/// A block source over a store laid out by `edgeswap ingest` (`StoreLayout`): CAR files in carpark, their
/// MultihashIndexSorted indexes in satnav, root → CAR keys in dudewhere, block → CAR keys in blockmap.
/// It works on any `Bucket`s, so the filesystem store and an S3 store share it.
///
/// Finding a block:
/// 1. identity CIDs are never looked up (their bytes are the CID itself);
/// 2. a recent miss is answered from the negative cache;
/// 3. the CARs already known for this request (the peer's scope: CARs its roots resolved to, and CARs
///    found earlier in the same batch) are searched through their cached indexes;
/// 4. dudewhere is listed for `<cid as v1 base32>/`; CARs found there join the peer's scope;
/// 5. blockmap is listed for `z<base58btc multihash>/`, for blocks asked for under no known root.
///
/// Reading blocks: wanted sections are grouped by CAR and sorted by offset; sections closer than
/// `coalesceGap` are read with one ranged read. Each section head is parsed, its CID's multihash compared
/// with the wanted one, and the block bytes verified against it before they are returned.
public final class IndexedCARBlockSource: Sendable {
    /// Where CARs, indexes and locator keys are read from.
    public let buckets: StoreBuckets
    /// The tunables this source was made with.
    public let settings: IndexedCARBlockSourceSettings
    /// Peer scopes shared by every instance (Redis), or nil for in-process scopes only.
    public let sharedScopes: (any SharedPeerScopes)?
    /// CAR indexes shared by every instance (Redis), or nil for in-process LRU then satnav.
    public let sharedIndexes: (any SharedIndexCache)?
    /// Verified blocks served again without storage or hashing (off when `blockCacheBytes` is 0).
    public let blockCache: VerifiedBlockCache
    private let state: BlockSourceState
    private let logger: Logger

    public init(buckets: StoreBuckets, settings: IndexedCARBlockSourceSettings = IndexedCARBlockSourceSettings(),
                sharedScopes: (any SharedPeerScopes)? = nil, sharedIndexes: (any SharedIndexCache)? = nil,
                logger: Logger = Logger(label: "edgeswap.blockstore")) {
        // Every request goes through a MeteredBucket: storage subrequests are counted there (for quotas), not
        // by hand where the source calls the store.
        self.buckets = buckets.metered()
        self.settings = settings
        self.sharedScopes = sharedScopes
        self.sharedIndexes = sharedIndexes
        self.state = BlockSourceState(settings: settings)
        self.blockCache = VerifiedBlockCache(capacity: settings.blockCacheBytes)
        self.logger = logger
    }

    /// The counters so far.
    public func statistics() async -> BlockSourceStatistics {
        var statistics = await state.statistics()
        statistics.blockCache = blockCache.statistics
        return statistics
    }

    /// The CARs in `peer`'s scope, most recent first (for diagnostics and tests).
    public func scope(of peer: String) async -> [CID] { await state.scope(of: peer, now: .now) }

    /// Drops every cached index, scope, negative entry and cached block (counters are kept).
    public func clearCaches() async {
        await state.clear()
        blockCache.removeAll()
    }

    /// One block.
    public func get(_ cid: CID, peer: String? = nil) async -> BlockLookup {
        await get([cid], peer: peer)[0]
    }

    /// Many blocks at once, answered in the order of `cids`. `peer` (a peer ID string) selects the scope
    /// used to find non-root blocks and records the CARs its roots resolve to.
    public func get(_ cids: [CID], peer: String? = nil) async -> [BlockLookup] {
        await lookup(cids.map { ($0, false) }, peer: peer, maxBlockSize: settings.maxBlockSize,
                     replaceHaveWithBlockSize: 0)
    }

    /// The core of `get` and `lookup(_:)`. For a `have` want whose section is known (from the next indexed
    /// section start) to hold at most `replaceHaveWithBlockSize` bytes of block, the block is read and
    /// returned; other `have` wants are answered `.have` from the index without reading the CAR.
    func lookup(_ cids: [(cid: CID, have: Bool)], peer: String?, maxBlockSize: Int, replaceHaveWithBlockSize: Int)
        async -> [BlockLookup]
    {
        let maxBlockSize = min(maxBlockSize, settings.maxBlockSize)
        var results = [BlockLookup](repeating: .notFound, count: cids.count)
        let now = ContinuousClock.now
        var known: [CID] = []
        if let peer { known = await scope(of: peer, now: now) }
        var wanted: [CID: [Want]] = [:]
        var entries: [CID: CAREntry] = [:]
        /// For wants found as roots through dudewhere: the CARs listed (kept with the block in the cache).
        var rootCARs: [Int: [CID]] = [:]

        for (i, (cid, have)) in cids.enumerated() {
            let mh = cid.multihash
            if mh.code == Multicodec.identity { continue }
            // 2. The verified block cache: no storage request, no hash. A root's CARs still join the scope, so
            // the peer's next, uncached wants under it are found. A block cached without root CARs is not used
            // for a peer with no scope yet: such a peer's first want is usually its root, and resolving it is
            // what gives the peer a scope (a root first found through the scope of another peer is cached
            // without its CARs).
            if let hit = blockCache.get(mh, onlyRoots: known.isEmpty && peer != nil) {
                if !hit.rootCARs.isEmpty {
                    let fresh = hit.rootCARs.filter { !known.contains($0) }
                    if !fresh.isEmpty {
                        known.insert(contentsOf: fresh, at: 0)
                        if let peer { await addToScope(peer, cars: fresh, now: now) }
                    }
                }
                if have && hit.block.readableBytes > replaceHaveWithBlockSize {
                    results[i] = .have
                } else if hit.block.readableBytes > maxBlockSize {
                    results[i] = .tooLarge(UInt64(hit.block.readableBytes))
                } else {
                    results[i] = .block(hit.block)
                }
                continue
            }
            if await state.isKnownMissing(mh, now: now) { continue }
            var failure: BucketError?
            // 3. CARs already known for this peer or batch.
            if let (entry, offset) = await find(mh, in: known, failure: &failure) {
                if have, !entry.isSmall(at: offset, limit: replaceHaveWithBlockSize) {
                    results[i] = .have
                    continue
                }
                entries[entry.car] = entry
                wanted[entry.car, default: []].append(Want(result: i, multihash: mh, offset: offset))
                continue
            }
            // 4. dudewhere: is it a root?
            var located: (CAREntry, UInt64)?
            switch await list(buckets.dudewhere, prefix: StoreLayout.rootPrefix(cid), space: "d") {
            case .success(let cars):
                let fresh = cars.filter { !known.contains($0) }
                if !fresh.isEmpty {
                    known.insert(contentsOf: fresh, at: 0)
                    if let peer { await addToScope(peer, cars: fresh, now: now) }
                    located = await find(mh, in: fresh, failure: &failure)
                    if located != nil { rootCARs[i] = cars }
                }
            case .failure(let error): failure = error
            }
            // 5. blockmap: a block under no known root.
            if located == nil {
                switch await list(buckets.blockmap, prefix: StoreLayout.blockPrefix(mh), space: "b") {
                case .success(let cars):
                    located = await find(mh, in: cars.filter { !known.contains($0) }, failure: &failure)
                case .failure(let error): failure = error
                }
            }
            if let (entry, offset) = located, have, !entry.isSmall(at: offset, limit: replaceHaveWithBlockSize) {
                results[i] = .have
            } else if let (entry, offset) = located {
                entries[entry.car] = entry
                wanted[entry.car, default: []].append(Want(result: i, multihash: mh, offset: offset))
            } else if let failure {
                results[i] = .unavailable(failure)
            } else {
                await state.recordMissing(mh, now: now)
            }
        }

        // Read: one task per coalesced run, all runs of all CARs at once.
        var runs: [(CAREntry, Run)] = []
        for (car, wants) in wanted {
            guard let entry = entries[car] else { continue }
            for run in plan(wants, in: entry, maxBlockSize: maxBlockSize) { runs.append((entry, run)) }
        }
        let answers = await withTaskGroup(of: [(Int, BlockLookup)].self) { group in
            for (entry, run) in runs {
                group.addTask { await self.read(run, in: entry, maxBlockSize: maxBlockSize) }
            }
            var all: [(Int, BlockLookup)] = []
            for await part in group { all.append(contentsOf: part) }
            return all
        }
        var served = 0
        var corrupt = 0
        for (i, answer) in answers {
            results[i] = answer
            switch answer {
            case .block(let block):
                served += 1
                // Verified by `section(at:)`: keep a compact copy, and serve that copy, so the coalesced read's
                // buffer is released as soon as its blocks are looked up rather than when the last is sent.
                if blockCache.isEnabled {
                    results[i] = .block(blockCache.insert(cids[i].cid.multihash, block: block,
                                                          rootCARs: rootCARs[i] ?? []))
                }
            case .corrupt:
                corrupt += 1
                // Later want-haves must not claim a block that cannot be served.
                await state.recordMissing(cids[i].cid.multihash, now: now)
            default: break
            }
        }
        await state.count(served: served, corrupt: corrupt)
        return results
    }

    /// The blocks of the CARs `root` resolves to (through dudewhere) that are not in `have`, by multihash, in
    /// the order their sections lie in each CAR (CARs in listing order; a block in two CARs is listed once).
    /// The CARs join `peer`'s scope, as when the peer asks for the root. Throws when the store fails.
    public func missingBlocks(under root: CID, have: Set<Multihash>, peer: String? = nil) async throws(BucketError)
        -> [Multihash]
    {
        let cars: [CID]
        switch await list(buckets.dudewhere, prefix: StoreLayout.rootPrefix(root), space: "d") {
        case .success(let listed): cars = listed
        case .failure(let error): throw error
        }
        if let peer, !cars.isEmpty { await addToScope(peer, cars: cars, now: .now) }
        var seen = have
        var missing: [Multihash] = []
        for car in cars {
            switch await state.entry(for: car, loader: { await self.load(car) }) {
            case .success(let entry):
                var sections: [(offset: UInt64, multihash: Multihash)] = []
                sections.reserveCapacity(entry.index.entryCount)
                entry.index.forEach { code, digest, offset in
                    // A MultihashIndexSorted names the hash function of every entry; the older IndexSorted
                    // does not (it is only written for sha2-256 CARs).
                    let mh = Multihash(code: code ?? Multicodec.sha2_256, digest: Array(digest))
                    sections.append((offset, mh))
                }
                sections.sort { $0.offset < $1.offset }
                for section in sections where seen.insert(section.multihash).inserted {
                    missing.append(section.multihash)
                }
            case .failure(.storage(let error)):
                throw error
            case .failure(.missing), .failure(.malformed):
                continue  // logged where the entry failed to load; the other CARs still count
            }
        }
        return missing
    }

    // MARK: - Scopes

    /// The peer's scope: the in-process one, merged with the shared one when that has not been read for
    /// `sharedScopeRefresh` (a peer that reconnects here from another instance has no local scope yet, so its
    /// first batch always reads the shared one).
    private func scope(of peer: String, now: ContinuousClock.Instant) async -> [CID] {
        let local = await state.scope(of: peer, now: now)
        guard let sharedScopes, await state.sharedScopeIsStale(peer, now: now) else { return local }
        let shared: [CID]
        do {
            shared = try await sharedScopes.cars(of: peer, limit: settings.peerScopeCARsPerPeer)
        } catch {
            await sharedStoreFailed("read peer scope", error)
            return local
        }
        await state.countSharedScopeRead(peer, now: now)
        let added = shared.filter { !local.contains($0) }
        guard !added.isEmpty else { return local }
        // Local CARs stay first (the most recent here); CARs added by other instances follow.
        await state.addToScope(peer, cars: added, now: now, asOldest: true)
        return local + added
    }

    /// Adds CARs that `peer`'s roots resolved to, here and in the shared store.
    private func addToScope(_ peer: String, cars: [CID], now: ContinuousClock.Instant) async {
        await state.addToScope(peer, cars: cars, now: now)
        guard let sharedScopes else { return }
        do {
            try await sharedScopes.add(cars, to: peer, limit: settings.peerScopeCARsPerPeer)
        } catch {
            await sharedStoreFailed("add to peer scope", error)
        }
    }

    private func sharedStoreFailed(_ operation: String, _ error: any Error) async {
        // Logged at most once per failure streak's first few occurrences by the counter: every failure is
        // counted, the log says what failed and that serving goes on without the shared store.
        let failures = await state.countSharedFailure()
        if failures <= 3 || failures.isMultiple(of: 1000) {
            logger.warning("shared store unavailable; serving without it",
                           metadata: ["operation": "\(operation)", "error": "\(error)", "failures": "\(failures)"])
        }
    }

    // MARK: - Locating

    /// The CARs listed under `prefix`: from the location cache, from a listing already under way for the same
    /// prefix, or from a new listing (a hundred peers asking for one cold root cause one LIST).
    private func list(_ bucket: any Bucket, prefix: String, space: String) async -> Result<[CID], BucketError> {
        await state.location(space + prefix, now: .now) {
            do throws(BucketError) {
                let keys = try await bucket.listAll(prefix: prefix)
                return .success(keys.compactMap { StoreLayout.carCID(fromKey: $0, prefix: prefix) })
            } catch {
                return .failure(error)
            }
        }
    }

    /// The first of `cars` whose index lists `mh`, with the section offset. A CAR that is missing from the
    /// store is skipped; a storage failure is remembered in `failure` and the search goes on.
    private func find(_ mh: Multihash, in cars: [CID], failure: inout BucketError?) async -> (CAREntry, UInt64)? {
        for car in cars {
            switch await state.entry(for: car, loader: { await self.load(car) }) {
            case .success(let entry):
                if let offset = entry.index.offset(of: mh) { return (entry, offset) }
            case .failure(.missing):
                logger.warning("CAR listed in the store but missing", metadata: ["car": "\(car)"])
            case .failure(.storage(let error)):
                failure = error
            case .failure(.malformed(let why)):
                logger.error("CAR index unusable", metadata: ["car": "\(car)", "error": "\(why)"])
            }
        }
        return nil
    }

    /// Reads and decodes a CAR's index and the start of the CAR (to learn where a CARv2's payload starts:
    /// index offsets are relative to the inner CARv1 payload).
    private func load(_ car: CID) async -> Result<CAREntry, LoadFailure> {
        if let sharedIndexes {
            do {
                if let cached = try await sharedIndexes.index(of: car) {
                    switch CachedCARIndex.decode(cached) {
                    case .success(let value):
                        if let entry = try? makeEntry(car, index: CARIndex.decode(value.index),
                                                      indexSize: value.index.count,
                                                      payloadStart: value.payloadStart, payloadEnd: value.payloadEnd)
                        {
                            await state.countSharedIndexHit()
                            return .success(entry)
                        }
                        logger.error("shared index cache holds an undecodable index; reading satnav",
                                     metadata: ["car": "\(car)"])
                    case .failure(let why):
                        logger.error("shared index cache entry unusable; reading satnav",
                                     metadata: ["car": "\(car)", "error": "\(why)"])
                    }
                }
            } catch {
                await sharedStoreFailed("read CAR index", error)
            }
        }
        let loaded = await loadFromStore(car)
        if let sharedIndexes, case .success(let (entry, indexBytes)) = loaded {
            let value = CachedCARIndex(payloadStart: entry.payloadStart, payloadEnd: entry.payloadEnd, index: indexBytes)
            do {
                try await sharedIndexes.store(value.encoded(), for: car)
            } catch {
                await sharedStoreFailed("store CAR index", error)
            }
        }
        return loaded.map(\.0)
    }

    /// Reads a CAR's index from satnav and the start of the CAR from carpark.
    private func loadFromStore(_ car: CID) async -> Result<(CAREntry, [UInt8]), LoadFailure> {
        let indexBytes: [UInt8]
        let start: [UInt8]
        do throws(BucketError) {
            indexBytes = try await buckets.satnav.get(StoreLayout.indexKey(car))
            start = try await buckets.carpark.get(StoreLayout.carKey(car),
                                                  range: 0...(CARv2.minimumDataOffset - 1))
        } catch {
            if case .noSuchKey = error { return .failure(.missing) }
            return .failure(.storage(error))
        }
        let index: CARIndex
        do throws(CARError) {
            index = try CARIndex.decode(indexBytes)
        } catch {
            return .failure(.malformed("index: \(error)"))
        }
        var payloadStart: UInt64 = 0
        var payloadEnd: UInt64? = nil
        // "The pragma is a fixed 11 byte value" (carv2 spec): its presence marks a CARv2.
        if start.count >= Int(CARv2.minimumDataOffset), Array(start[0..<CARv2.pragma.count]) == CARv2.pragma {
            let header: CARv2Header
            do throws(CARError) {
                header = try start.withUnsafeBytes { raw in
                    Result { () throws(CARError) in
                        try CARv2Header.parse(UnsafeRawBufferPointer(rebasing: raw[CARv2.pragma.count...]))
                    }
                }.get()
            } catch {
                return .failure(.malformed("CARv2 header: \(error)"))
            }
            let (end, overflow) = header.dataOffset.addingReportingOverflow(header.dataSize)
            guard header.dataOffset >= CARv2.minimumDataOffset, !overflow else {
                return .failure(.malformed("CARv2 header: data offset \(header.dataOffset) size \(header.dataSize)"))
            }
            payloadStart = header.dataOffset
            payloadEnd = end
        }
        let entry = makeEntry(car, index: index, indexSize: indexBytes.count, payloadStart: payloadStart,
                              payloadEnd: payloadEnd)
        return .success((entry, indexBytes))
    }

    private func makeEntry(_ car: CID, index: CARIndex, indexSize: Int, payloadStart: UInt64, payloadEnd: UInt64?)
        -> CAREntry
    {
        var starts: [UInt64] = []
        starts.reserveCapacity(index.entryCount)
        index.forEach { _, _, offset in starts.append(offset) }
        starts.sort()
        return CAREntry(car: car, index: index, sectionStarts: starts, payloadStart: payloadStart,
                        payloadEnd: payloadEnd, cost: indexSize + 8 * starts.count + 256)
    }

    // MARK: - Reading

    /// Sorts the wants of one CAR by offset and groups them into runs, each read with one ranged read.
    private func plan(_ wants: [Want], in entry: CAREntry, maxBlockSize: Int) -> [Run] {
        // A section head is a varint (≤ 10 bytes) and a CID (≤ CID.maxByteLength); reading this much past a
        // section start is enough to learn its length even when the index gives no next section.
        let headRoom = UInt64(10 + CID.maxByteLength)
        let cap = UInt64(maxBlockSize) + headRoom
        var runs: [Run] = []
        for want in wants.sorted(by: { $0.offset < $1.offset }) {
            var end = want.offset + cap
            if let next = entry.nextSectionStart(after: want.offset) { end = min(end, next) }
            if let limit = entry.payloadEnd.map({ $0 - entry.payloadStart }) { end = min(end, limit) }
            end = max(end, want.offset + 1)
            if var last = runs.last, want.offset <= last.end + settings.coalesceGap,
               max(end, last.end) - last.start <= settings.maxCoalescedRead
            {
                last.end = max(last.end, end)
                last.wants.append(want)
                runs[runs.count - 1] = last
            } else {
                runs.append(Run(start: want.offset, end: end, wants: [want]))
            }
        }
        return runs
    }

    /// Reads one run and answers each of its wants.
    private func read(_ run: Run, in entry: CAREntry, maxBlockSize: Int) async -> [(Int, BlockLookup)] {
        let bytes: ByteBuffer
        do throws(BucketError) {
            bytes = try await buckets.carpark.getBuffer(
                StoreLayout.carKey(entry.car),
                range: (entry.payloadStart + run.start)...(entry.payloadStart + run.end - 1))
        } catch {
            if case .noSuchKey = error {
                logger.warning("CAR vanished from the store", metadata: ["car": "\(entry.car)"])
                return run.wants.map { ($0.result, .notFound) }
            }
            return run.wants.map { ($0.result, .unavailable(error)) }
        }
        await state.countRead(bytes: UInt64(bytes.readableBytes))
        return bytes.withUnsafeReadableBytes { raw in
            run.wants.map { want in
                let answer = section(at: Int(want.offset - run.start), in: raw, of: bytes, want: want,
                                     maxBlockSize: maxBlockSize)
                if case .corrupt = answer {
                    logger.error("block does not match its CID; not served",
                                 metadata: ["car": "\(entry.car)", "offset": "\(want.offset)",
                                            "multihash": "\(Multibase.base58btc.encode(want.multihash.bytes))"])
                }
                return (want.result, answer)
            }
        }
    }

    /// Parses the section at `local` in `raw` (the readable bytes of `buffer`), checks it is the wanted block
    /// and verifies its bytes; the block is returned as a slice of `buffer` (no copy).
    private func section(at local: Int, in raw: UnsafeRawBufferPointer, of buffer: ByteBuffer, want: Want,
                         maxBlockSize: Int) -> BlockLookup
    {
        guard local < raw.count else { return .corrupt }
        let rest = UnsafeRawBufferPointer(rebasing: raw[local...])
        let head: (cid: CID, headerLength: Int, blockLength: UInt64)
        do throws(CARError) {
            head = try SectionHead.parse(raw: rest, maxSectionLength: UInt64(maxBlockSize) + 10
                                         + UInt64(CID.maxByteLength))
        } catch {
            if case .sectionTooLarge(_, let length, _) = error { return .tooLarge(length) }
            return .corrupt
        }
        guard head.blockLength <= UInt64(maxBlockSize) else { return .tooLarge(head.blockLength) }
        // The index said this multihash lives here; the section must say so too.
        guard head.cid.multihash == want.multihash else { return .corrupt }
        let end = head.headerLength + Int(head.blockLength)
        guard end <= rest.count else { return .corrupt }
        let block = UnsafeRawBufferPointer(rebasing: rest[head.headerLength..<end])
        do throws(MultiformatsError) {
            guard try want.multihash.verify(block) else { return .corrupt }
        } catch {
            // A hash function edgeswap cannot compute: the bytes cannot be checked, so they are not served.
            return .corrupt
        }
        // The slice shares the run's storage: the run stays in memory until its last block is sent, which the
        // engine's bound on looked-up bytes waiting to be sent (`maxBufferedBytes`) keeps in check.
        return .block(buffer.getSlice(at: buffer.readerIndex + local + head.headerLength, length: block.count)!)
    }
}

// MARK: - Internals

/// One wanted block located in a CAR: where its answer goes and where its section starts (payload-relative).
struct Want: Sendable {
    var result: Int
    var multihash: Multihash
    var offset: UInt64
}

/// Wants whose sections are read with one ranged read of payload bytes `start..<end`.
struct Run: Sendable {
    var start: UInt64
    var end: UInt64
    var wants: [Want]
}

/// A CAR's decoded index and payload position, as cached.
final class CAREntry: Sendable {
    let car: CID
    let index: CARIndex
    /// Every indexed section start, ascending: the next one bounds a section's length before it is read.
    let sectionStarts: [UInt64]
    /// Where the CARv1 payload starts in the file (0 for a CARv1; the CARv2 data offset otherwise).
    let payloadStart: UInt64
    /// Where a CARv2's payload ends (so reads never run into its index); nil for a CARv1.
    let payloadEnd: UInt64?
    /// Bytes this entry is charged in the index cache.
    let cost: Int

    init(car: CID, index: CARIndex, sectionStarts: [UInt64], payloadStart: UInt64, payloadEnd: UInt64?, cost: Int) {
        self.car = car
        self.index = index
        self.sectionStarts = sectionStarts
        self.payloadStart = payloadStart
        self.payloadEnd = payloadEnd
        self.cost = cost
    }

    /// Whether the section at `offset` is known, without reading it, to hold at most `limit` block bytes:
    /// the next indexed section starts within `limit` bytes (the whole section, head included, fits).
    func isSmall(at offset: UInt64, limit: Int) -> Bool {
        guard limit > 0, let next = nextSectionStart(after: offset) else { return false }
        return next - offset <= UInt64(limit)
    }

    /// The first indexed section start after `offset`.
    func nextSectionStart(after offset: UInt64) -> UInt64? {
        var low = 0
        var high = sectionStarts.count
        while low < high {
            let mid = (low + high) / 2
            if sectionStarts[mid] <= offset { low = mid + 1 } else { high = mid }
        }
        return low < sectionStarts.count ? sectionStarts[low] : nil
    }
}

enum LoadFailure: Error, Sendable {
    /// The index or the CAR is not in the store.
    case missing
    case storage(BucketError)
    case malformed(String)
}

/// The mutable state shared by all requests: caches, scopes, in-flight index loads, counters.
actor BlockSourceState {
    private let settings: IndexedCARBlockSourceSettings
    private var indexes: LRUCache<CID, CAREntry>
    private var loading: [CID: Task<Result<CAREntry, LoadFailure>, Never>] = [:]
    private var locations: ExpiringCache<String, [CID]>
    private var listing: [String: Task<Result<[CID], BucketError>, Never>] = [:]
    private var missing: ExpiringCache<Multihash, Void>
    private var scopes: [String: (cars: [CID], expires: ContinuousClock.Instant)] = [:]
    /// When each peer's shared scope was last read (entries dropped with the local scope's bound).
    private var sharedScopeReadAt: [String: ContinuousClock.Instant] = [:]
    private var stats = BlockSourceStatistics()

    init(settings: IndexedCARBlockSourceSettings) {
        self.settings = settings
        self.indexes = LRUCache(capacity: settings.indexCacheBytes)
        self.missing = ExpiringCache(ttl: settings.negativeCacheTTL, capacity: settings.negativeCacheEntries)
        self.locations = ExpiringCache(ttl: settings.locationCacheTTL, capacity: settings.locationCacheEntries)
    }

    func statistics() -> BlockSourceStatistics {
        var s = stats
        s.indexEvictions = indexes.evictions
        return s
    }

    func clear() {
        indexes = LRUCache(capacity: settings.indexCacheBytes)
        missing.removeAll()
        scopes = [:]
        sharedScopeReadAt = [:]
        locations.removeAll()
    }

    /// A cached listing, the one under way for the same key, or one `loader` call (counted). Failures are
    /// not cached.
    func location(_ key: String, now: ContinuousClock.Instant,
                  loader: @escaping @Sendable () async -> Result<[CID], BucketError>) async -> Result<[CID], BucketError>
    {
        if let cars = locations.value(for: key, now: now) { return .success(cars) }
        if let inFlight = listing[key] { return await inFlight.value }
        let task = Task { await loader() }
        listing[key] = task
        stats.listings += 1
        let result = await task.value
        listing[key] = nil
        if case .success(let cars) = result { locations.insert(cars, for: key, now: .now) }
        return result
    }

    /// The cached entry for `car`, or the result of one `loader` call shared by every concurrent caller
    /// (single flight: a cold CAR wanted by many requests at once is read once).
    func entry(for car: CID, loader: @escaping @Sendable () async -> Result<CAREntry, LoadFailure>) async
        -> Result<CAREntry, LoadFailure>
    {
        if let cached = indexes.get(car) { return .success(cached) }
        if let inFlight = loading[car] { return await inFlight.value }
        let task = Task { await loader() }
        loading[car] = task
        let result = await task.value
        loading[car] = nil
        stats.indexLoads += 1
        if case .success(let entry) = result { indexes.insert(car, entry, cost: entry.cost) }
        return result
    }

    func isKnownMissing(_ mh: Multihash, now: ContinuousClock.Instant) -> Bool {
        guard missing.value(for: mh, now: now) != nil else { return false }
        stats.negativeCacheHits += 1
        return true
    }

    func recordMissing(_ mh: Multihash, now: ContinuousClock.Instant) {
        missing.insert((), for: mh, now: now)
    }

    func scope(of peer: String, now: ContinuousClock.Instant) -> [CID] {
        guard let scope = scopes[peer] else { return [] }
        if scope.expires <= now {
            scopes[peer] = nil
            return []
        }
        scopes[peer]!.expires = now + settings.peerScopeTTL
        return scope.cars
    }

    func sharedScopeIsStale(_ peer: String, now: ContinuousClock.Instant) -> Bool {
        guard let last = sharedScopeReadAt[peer] else { return true }
        return now - last >= settings.sharedScopeRefresh
    }

    func countSharedScopeRead(_ peer: String, now: ContinuousClock.Instant) {
        stats.sharedScopeReads += 1
        sharedScopeReadAt[peer] = now
        if sharedScopeReadAt.count > 2 * settings.peerScopePeers {
            let horizon = settings.sharedScopeRefresh
            sharedScopeReadAt = sharedScopeReadAt.filter { now - $0.value < horizon }
        }
    }

    func countSharedIndexHit() { stats.sharedIndexHits += 1 }

    func countSharedFailure() -> Int {
        stats.sharedStoreFailures += 1
        return stats.sharedStoreFailures
    }

    /// Adds `cars` to `peer`'s scope: as the most recent ones, or (`asOldest`, for CARs learnt from the
    /// shared store) after the ones already here.
    func addToScope(_ peer: String, cars: [CID], now: ContinuousClock.Instant, asOldest: Bool = false) {
        var list = scopes[peer].map { $0.expires > now ? $0.cars : [] } ?? []
        list.removeAll { cars.contains($0) }
        if asOldest { list.append(contentsOf: cars) } else { list.insert(contentsOf: cars, at: 0) }
        if list.count > settings.peerScopeCARsPerPeer { list.removeLast(list.count - settings.peerScopeCARsPerPeer) }
        scopes[peer] = (list, now + settings.peerScopeTTL)
        if scopes.count > settings.peerScopePeers {
            scopes = scopes.filter { $0.value.expires > now }
            while scopes.count > settings.peerScopePeers,
                  let oldest = scopes.min(by: { $0.value.expires < $1.value.expires })?.key
            {
                scopes[oldest] = nil
            }
        }
    }

    func countRead(bytes: UInt64) {
        stats.blockReads += 1
        stats.bytesRead += bytes
    }

    func count(served: Int, corrupt: Int) {
        stats.blocksServed += served
        stats.corruptBlocks += corrupt
    }
}
