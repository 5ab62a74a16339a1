import Bitswap
import CAR
import Logging
import Multiformats
import NIOConcurrencyHelpers
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
/// Finding the blocks of a batch (each step asks for the whole batch at once):
/// 1. identity CIDs are never looked up (their bytes are the CID itself);
/// 2. the verified block cache answers blocks served before, with no storage request and no hash;
/// 3. recent misses are answered from the negative cache (`CARLocator`);
/// 4. the CARs already known for this request (the peer's scope: CARs its roots resolved to) are searched
///    through their indexes (`CARIndexCache`: the cached ones in one hop, the others loaded concurrently);
/// 5. dudewhere is listed for `<cid as v1 base32>/` for every CID still unlocated, concurrently; CARs found
///    there join the peer's scope and are searched for every CID still unlocated;
/// 6. blockmap is listed for `z<base58btc multihash>/`, concurrently, for blocks asked for under no known root.
///
/// Reading blocks (`SectionReader`): wanted sections are grouped by CAR and sorted by offset; sections closer
/// than `coalesceGap` are read with one ranged read, all runs at once, each streamed: a section is parsed, its
/// CID's multihash compared with the wanted one, and its bytes verified as soon as they are in, not when the
/// run ends.
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
    private let counters: SourceCounters
    private let locator: CARLocator
    private let indexes: CARIndexCache
    private let reader: SectionReader

    public init(buckets: StoreBuckets, settings: IndexedCARBlockSourceSettings = IndexedCARBlockSourceSettings(),
                sharedScopes: (any SharedPeerScopes)? = nil, sharedIndexes: (any SharedIndexCache)? = nil,
                logger: Logger = Logger(label: "edgeswap.blockstore")) {
        // Every request goes through a MeteredBucket: storage subrequests are counted there (for quotas), not
        // by hand where the source calls the store.
        let buckets = buckets.metered()
        self.buckets = buckets
        self.settings = settings
        self.sharedScopes = sharedScopes
        self.sharedIndexes = sharedIndexes
        self.blockCache = VerifiedBlockCache(capacity: settings.blockCacheBytes)
        let counters = SourceCounters(logger: logger)
        self.counters = counters
        self.locator = CARLocator(dudewhere: buckets.dudewhere, blockmap: buckets.blockmap, settings: settings,
                                  sharedScopes: sharedScopes, counters: counters)
        self.indexes = CARIndexCache(satnav: buckets.satnav, carpark: buckets.carpark, sharedIndexes: sharedIndexes,
                                     capacity: settings.indexCacheBytes, counters: counters)
        self.reader = SectionReader(carpark: buckets.carpark, settings: settings, blockCache: blockCache,
                                    counters: counters)
    }

    /// The counters so far.
    public func statistics() async -> BlockSourceStatistics {
        var statistics = counters.snapshot
        statistics.indexEvictions = await indexes.evictions()
        statistics.blockCache = blockCache.statistics
        return statistics
    }

    /// The CARs in `peer`'s scope, most recent first (for diagnostics and tests).
    public func scope(of peer: String) async -> [CID] { await locator.localScope(of: peer, now: .now) }

    /// Drops every cached index, scope, negative entry and cached block (counters are kept).
    public func clearCaches() async {
        await locator.clear()
        await indexes.clear()
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

    /// `lookup(_:peer:maxBlockSize:replaceHaveWithBlockSize:deliver:)`, gathered: returns when every want is
    /// answered, in the order of `cids`.
    func lookup(_ cids: [(cid: CID, have: Bool)], peer: String?, maxBlockSize: Int, replaceHaveWithBlockSize: Int)
        async -> [BlockLookup]
    {
        let results = NIOLockedValueBox([BlockLookup](repeating: .notFound, count: cids.count))
        await lookup(cids, peer: peer, maxBlockSize: maxBlockSize, replaceHaveWithBlockSize: replaceHaveWithBlockSize) {
            index, answer in results.withLockedValue { $0[index] = answer }
        }
        return results.withLockedValue { $0 }
    }

    /// The core of `get` and `lookup(_:)`: answers each of `cids` exactly once through `deliver` (its index in
    /// `cids`, the answer), each as soon as it is known: cache hits and misses before any read, each read block
    /// as soon as its section has arrived and been verified. Returns when all are answered. For a `have` want
    /// whose section is known (from the next indexed section start) to hold at most `replaceHaveWithBlockSize`
    /// bytes of block, the block is read and returned; other `have` wants are answered `.have` from the index
    /// without reading the CAR.
    public func lookup(_ cids: [(cid: CID, have: Bool)], peer: String?, maxBlockSize: Int,
                       replaceHaveWithBlockSize: Int, deliver: @escaping @Sendable (Int, BlockLookup) -> Void) async
    {
        let maxBlockSize = min(maxBlockSize, settings.maxBlockSize)
        let now = ContinuousClock.now
        var known: [CID] = []
        if let peer { known = await locator.scope(of: peer, now: now) }
        /// CARs to add to the peer's scope, most recent first.
        var scopeAdditions: [CID] = []
        var pending: [Int] = []

        for (i, (cid, have)) in cids.enumerated() {
            let mh = cid.multihash
            if mh.code == Multicodec.identity {
                deliver(i, .notFound)
                continue
            }
            // The verified block cache: no storage request, no hash. A root's CARs still join the scope, so
            // the peer's next, uncached wants under it are found. A block cached without root CARs is not used
            // for a peer with no scope yet: such a peer's first want is usually its root, and resolving it is
            // what gives the peer a scope (a root first found through the scope of another peer is cached
            // without its CARs).
            guard let hit = blockCache.get(mh, onlyRoots: known.isEmpty && peer != nil) else {
                pending.append(i)
                continue
            }
            let fresh = hit.rootCARs.filter { !known.contains($0) }
            known.insert(contentsOf: fresh, at: 0)
            scopeAdditions.insert(contentsOf: fresh, at: 0)
            if have && hit.block.readableBytes > replaceHaveWithBlockSize {
                deliver(i, .have)
            } else if hit.block.readableBytes > maxBlockSize {
                deliver(i, .tooLarge(UInt64(hit.block.readableBytes)))
            } else {
                deliver(i, .block(hit.block))
            }
        }

        // Recent misses, for the whole batch in one call.
        let knownMissing = await locator.knownMissing(pending.map { cids[$0].cid.multihash }, now: now)
        for (i, missing) in zip(pending, knownMissing) where missing { deliver(i, .notFound) }
        pending = zip(pending, knownMissing).filter { !$0.1 }.map(\.0)

        var search = BatchSearch(cids: cids.map(\.cid), logger: counters.logger)
        // CARs already known for this peer: the cached indexes in one call; the others loaded (concurrently)
        // only if some want is still unlocated.
        if !known.isEmpty, !pending.isEmpty {
            let cached = await indexes.cached(known)
            search.find(pending, in: known.filter { cached[$0] != nil }, entries: cached.mapValues { .success($0) })
            let cold = known.filter { cached[$0] == nil }
            if !cold.isEmpty, !search.unlocated(pending).isEmpty {
                search.find(search.unlocated(pending), in: cold, entries: await indexes.entries(cold))
            }
        }

        // dudewhere: which of the rest are roots? Every listing at once.
        let roots = search.unlocated(pending)
        if !roots.isEmpty {
            let listings = await locator.cars(rooting: roots.map { cids[$0].cid })
            let fresh = search.unknownCARs(listed: listings, for: roots, known: known)
            if !fresh.isEmpty {
                known.insert(contentsOf: fresh, at: 0)
                scopeAdditions.insert(contentsOf: fresh, at: 0)
                let entries = await indexes.entries(fresh)
                // A root is looked for in its own CARs first (they are kept with its block); any other want of
                // the batch may live in the CARs a root of the same batch resolved to.
                for (i, listing) in zip(roots, listings) {
                    guard case .success(let cars) = listing else { continue }
                    if search.find([i], in: cars.filter(fresh.contains), entries: entries) { search.rootCARs[i] = cars }
                }
                search.find(search.unlocated(roots), in: fresh, entries: entries)
            }
        }
        if let peer, !scopeAdditions.isEmpty { await locator.addToScope(peer, cars: scopeAdditions, now: now) }

        // blockmap: blocks under no known root. Every listing at once.
        let strays = search.unlocated(roots)
        if !strays.isEmpty {
            let listings = await locator.cars(holding: strays.map { cids[$0].cid.multihash })
            let candidates = search.unknownCARs(listed: listings, for: strays, known: known)
            if !candidates.isEmpty {
                let entries = await indexes.entries(candidates)
                for (i, listing) in zip(strays, listings) {
                    guard case .success(let cars) = listing else { continue }
                    search.find([i], in: cars.filter(candidates.contains), entries: entries)
                }
            }
        }

        // What was found nowhere: unavailable if the store failed on the way, else a miss to remember.
        var missed: [Multihash] = []
        var wanted: [CID: (entry: CAREntry, wants: [Want])] = [:]
        for i in pending {
            guard let (entry, offset) = search.located[i] else {
                if let failure = search.failures[i] {
                    deliver(i, .unavailable(failure))
                } else {
                    missed.append(cids[i].cid.multihash)
                    deliver(i, .notFound)
                }
                continue
            }
            if cids[i].have, !entry.isSmall(at: offset, limit: replaceHaveWithBlockSize) {
                deliver(i, .have)
                continue
            }
            let want = Want(result: i, multihash: cids[i].cid.multihash, offset: offset,
                            rootCARs: search.rootCARs[i] ?? [])
            wanted[entry.car, default: (entry, [])].wants.append(want)
        }
        await locator.recordMissing(missed, now: now)

        // Read: one task per coalesced run, all runs of all CARs at once, each answering as its sections arrive.
        let corrupt = NIOLockedValueBox<[Multihash]>([])
        await withTaskGroup(of: Void.self) { group in
            for (entry, wants) in wanted.values {
                for run in reader.plan(wants, in: entry, maxBlockSize: maxBlockSize) {
                    group.addTask {
                        await self.reader.read(run, in: entry, maxBlockSize: maxBlockSize) { i, answer in
                            if case .corrupt = answer { corrupt.withLockedValue { $0.append(cids[i].cid.multihash) } }
                            deliver(i, answer)
                        }
                    }
                }
            }
        }
        // Later want-haves must not claim a block that cannot be served.
        await locator.recordMissing(corrupt.withLockedValue { $0 }, now: now)
    }

    /// The blocks of the CARs `root` resolves to (through dudewhere) that are not in `have`, by multihash, in
    /// the order their sections lie in each CAR (CARs in listing order; a block in two CARs is listed once).
    /// The CARs join `peer`'s scope, as when the peer asks for the root. Throws when the store fails.
    public func missingBlocks(under root: CID, have: Set<Multihash>, peer: String? = nil) async throws(BucketError)
        -> [Multihash]
    {
        let cars: [CID]
        switch await locator.cars(rooting: [root])[0] {
        case .success(let listed): cars = listed
        case .failure(let error): throw error
        }
        if let peer { await locator.addToScope(peer, cars: cars, now: .now) }
        let entries = await indexes.entries(cars)
        var seen = have
        var missing: [Multihash] = []
        for car in cars {
            switch entries[car] {
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
            case .failure(.missing), .failure(.malformed), nil:
                continue  // the other CARs still count
            }
        }
        return missing
    }
}

/// What one batch has found so far: for each want (by its index in the batch) the CAR entry and section offset,
/// the CARs a root resolved to, the storage failure met while looking (answered if the want is found nowhere).
/// An unusable CAR is logged once per batch.
private struct BatchSearch {
    let cids: [CID]
    let logger: Logger
    var located: [Int: (CAREntry, UInt64)] = [:]
    var failures: [Int: BucketError] = [:]
    var rootCARs: [Int: [CID]] = [:]
    private var reported: Set<CID> = []

    init(cids: [CID], logger: Logger) {
        self.cids = cids
        self.logger = logger
    }

    func unlocated(_ wants: [Int]) -> [Int] { wants.filter { located[$0] == nil } }

    /// The CARs `listings` (one per want of `wants`) name that are not in `known`, each once, in listing order; a
    /// failed listing is remembered as its want's failure.
    mutating func unknownCARs(listed listings: [Result<[CID], BucketError>], for wants: [Int], known: [CID]) -> [CID] {
        var cars: [CID] = []
        for (i, listing) in zip(wants, listings) {
            switch listing {
            case .success(let listed):
                for car in listed where !known.contains(car) && !cars.contains(car) { cars.append(car) }
            case .failure(let error): failures[i] = error
            }
        }
        return cars
    }

    /// Looks for each unlocated want of `wants` in `cars`, in order, through `entries`; true if the last of
    /// `wants` ends up located (for a single want: whether it was found here).
    @discardableResult
    mutating func find(_ wants: [Int], in cars: [CID], entries: [CID: Result<CAREntry, LoadFailure>]) -> Bool {
        var found = false
        for i in wants where located[i] == nil {
            found = false
            let mh = cids[i].multihash
            for car in cars {
                switch entries[car] {
                case .success(let entry):
                    if let offset = entry.index.offset(of: mh) {
                        located[i] = (entry, offset)
                        found = true
                    }
                case .failure(.storage(let error)): failures[i] = error
                case .failure(.missing):
                    if reported.insert(car).inserted {
                        logger.warning("CAR listed in the store but missing", metadata: ["car": "\(car)"])
                    }
                case .failure(.malformed(let why)):
                    if reported.insert(car).inserted {
                        logger.error("CAR index unusable", metadata: ["car": "\(car)", "error": "\(why)"])
                    }
                case nil: break
                }
                if found { break }
            }
        }
        return found
    }
}
