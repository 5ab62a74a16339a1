import Multiformats
import ObjectStorage

/// Finds which CARs a batch's wants may live in, and remembers what it found:
/// - the peer's scope: the CARs its roots resolved to, in process, merged with the shared one (`SharedPeerScopes`,
///   Redis) when that has not been read for `sharedScopeRefresh`;
/// - dudewhere (`<root>/` → CARs) and blockmap (`<multihash>/` → CARs): the listings a batch needs run
///   concurrently, each reused for `locationCacheTTL` and shared by concurrent lookups of the same prefix (a
///   hundred peers asking for one cold root cause one LIST);
/// - the negative cache: multihashes found nowhere recently.
/// A batch asks in one hop for all it needs (every CID's negative entry at once, every uncached listing at once).
final class CARLocator: Sendable {
    private let dudewhere: any Bucket
    private let blockmap: any Bucket
    private let settings: IndexedCARBlockSourceSettings
    private let sharedScopes: (any SharedPeerScopes)?
    private let counters: SourceCounters
    private let state: State

    init(dudewhere: any Bucket, blockmap: any Bucket, settings: IndexedCARBlockSourceSettings,
         sharedScopes: (any SharedPeerScopes)?, counters: SourceCounters) {
        self.dudewhere = dudewhere
        self.blockmap = blockmap
        self.settings = settings
        self.sharedScopes = sharedScopes
        self.counters = counters
        self.state = State(settings: settings)
    }

    // MARK: - Scopes

    /// The in-process scope of `peer`, most recent first (no shared read).
    func localScope(of peer: String, now: ContinuousClock.Instant) async -> [CID] {
        await state.scope(of: peer, now: now)
    }

    /// The peer's scope: the in-process one, merged with the shared one when that has not been read for
    /// `sharedScopeRefresh` (a peer that reconnects here from another instance has no local scope yet, so its
    /// first batch always reads the shared one).
    func scope(of peer: String, now: ContinuousClock.Instant) async -> [CID] {
        let (local, stale) = await state.scopeForLookup(of: peer, now: now)
        guard let sharedScopes, stale else { return local }
        let shared: [CID]
        do {
            shared = try await sharedScopes.cars(of: peer, limit: settings.peerScopeCARsPerPeer)
        } catch {
            counters.sharedStoreFailed("read peer scope", error)
            return local
        }
        counters.update { $0.sharedScopeReads += 1 }
        let added = shared.filter { !local.contains($0) }
        // Local CARs stay first (the most recent here); CARs added by other instances follow.
        await state.sharedScopeRead(peer, adding: added, now: now)
        return local + added
    }

    /// Adds CARs that `peer`'s roots resolved to, here and in the shared store.
    func addToScope(_ peer: String, cars: [CID], now: ContinuousClock.Instant) async {
        guard !cars.isEmpty else { return }
        await state.addToScope(peer, cars: cars, now: now)
        guard let sharedScopes else { return }
        do {
            try await sharedScopes.add(cars, to: peer, limit: settings.peerScopeCARsPerPeer)
        } catch {
            counters.sharedStoreFailed("add to peer scope", error)
        }
    }

    // MARK: - Negative cache

    /// Which of `multihashes` were found nowhere recently (each such one counted as a negative-cache hit).
    func knownMissing(_ multihashes: [Multihash], now: ContinuousClock.Instant) async -> [Bool] {
        guard !multihashes.isEmpty else { return [] }
        let missing = await state.knownMissing(multihashes, now: now)
        let hits = missing.filter { $0 }.count
        if hits > 0 { counters.update { $0.negativeCacheHits += hits } }
        return missing
    }

    func recordMissing(_ multihashes: [Multihash], now: ContinuousClock.Instant) async {
        guard !multihashes.isEmpty else { return }
        await state.recordMissing(multihashes, now: now)
    }

    // MARK: - Listings

    /// The CARs dudewhere lists for each root (`<cid as v1 base32>/`), in the order of `roots`.
    func cars(rooting roots: [CID]) async -> [Result<[CID], BucketError>] {
        await list(dudewhere, prefixes: roots.map(StoreLayout.rootPrefix), space: "d")
    }

    /// The CARs blockmap lists for each multihash (`z<base58btc multihash>/`), in the order of `multihashes`.
    func cars(holding multihashes: [Multihash]) async -> [Result<[CID], BucketError>] {
        await list(blockmap, prefixes: multihashes.map(StoreLayout.blockPrefix), space: "b")
    }

    /// Every listing at once: the cached ones in one hop, the others concurrently (each single-flight).
    private func list(_ bucket: any Bucket, prefixes: [String], space: String) async -> [Result<[CID], BucketError>] {
        guard !prefixes.isEmpty else { return [] }
        let now = ContinuousClock.now
        let cached = await state.cachedLocations(prefixes.map { space + $0 }, now: now)
        var results = cached.map { $0.map { Result<[CID], BucketError>.success($0) } }
        let cold = results.indices.filter { results[$0] == nil }
        if cold.count == 1 {
            results[cold[0]] = await list(bucket, prefix: prefixes[cold[0]], space: space)
        } else if !cold.isEmpty {
            await withTaskGroup(of: (Int, Result<[CID], BucketError>).self) { group in
                for i in cold {
                    let prefix = prefixes[i]
                    group.addTask { (i, await self.list(bucket, prefix: prefix, space: space)) }
                }
                for await (i, result) in group { results[i] = result }
            }
        }
        return results.map { $0! }
    }

    private func list(_ bucket: any Bucket, prefix: String, space: String) async -> Result<[CID], BucketError> {
        await state.location(space + prefix, now: .now) {
            self.counters.update { $0.listings += 1 }
            do throws(BucketError) {
                let keys = try await bucket.listAll(prefix: prefix)
                return .success(keys.compactMap { StoreLayout.carCID(fromKey: $0, prefix: prefix) })
            } catch {
                return .failure(error)
            }
        }
    }

    func clear() async { await state.clear() }

    // MARK: - State

    /// Scopes, listings (cached and under way) and recent misses.
    private actor State {
        private let settings: IndexedCARBlockSourceSettings
        private var locations: ExpiringCache<String, [CID]>
        private var listing: [String: Task<Result<[CID], BucketError>, Never>] = [:]
        private var missing: ExpiringCache<Multihash, Void>
        private var scopes: [String: (cars: [CID], expires: ContinuousClock.Instant)] = [:]
        /// When each peer's shared scope was last read (entries dropped with the local scope's bound).
        private var sharedScopeReadAt: [String: ContinuousClock.Instant] = [:]

        init(settings: IndexedCARBlockSourceSettings) {
            self.settings = settings
            self.missing = ExpiringCache(ttl: settings.negativeCacheTTL, capacity: settings.negativeCacheEntries)
            self.locations = ExpiringCache(ttl: settings.locationCacheTTL, capacity: settings.locationCacheEntries)
        }

        func clear() {
            missing.removeAll()
            scopes = [:]
            sharedScopeReadAt = [:]
            locations.removeAll()
        }

        func cachedLocations(_ keys: [String], now: ContinuousClock.Instant) -> [[CID]?] {
            keys.map { locations.value(for: $0, now: now) }
        }

        /// A cached listing, the one under way for the same key, or one `loader` call. Failures are not cached.
        func location(_ key: String, now: ContinuousClock.Instant,
                      loader: @escaping @Sendable () async -> Result<[CID], BucketError>) async
            -> Result<[CID], BucketError>
        {
            if let cars = locations.value(for: key, now: now) { return .success(cars) }
            if let inFlight = listing[key] { return await inFlight.value }
            let task = Task { await loader() }
            listing[key] = task
            let result = await task.value
            listing[key] = nil
            if case .success(let cars) = result { locations.insert(cars, for: key, now: .now) }
            return result
        }

        func knownMissing(_ multihashes: [Multihash], now: ContinuousClock.Instant) -> [Bool] {
            multihashes.map { missing.value(for: $0, now: now) != nil }
        }

        func recordMissing(_ multihashes: [Multihash], now: ContinuousClock.Instant) {
            for mh in multihashes { missing.insert((), for: mh, now: now) }
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

        /// The local scope and whether the shared one is due for a read.
        func scopeForLookup(of peer: String, now: ContinuousClock.Instant) -> ([CID], Bool) {
            let local = scope(of: peer, now: now)
            guard let last = sharedScopeReadAt[peer] else { return (local, true) }
            return (local, now - last >= settings.sharedScopeRefresh)
        }

        func sharedScopeRead(_ peer: String, adding cars: [CID], now: ContinuousClock.Instant) {
            sharedScopeReadAt[peer] = now
            if sharedScopeReadAt.count > 2 * settings.peerScopePeers {
                let horizon = settings.sharedScopeRefresh
                sharedScopeReadAt = sharedScopeReadAt.filter { now - $0.value < horizon }
            }
            if !cars.isEmpty { addToScope(peer, cars: cars, now: now, asOldest: true) }
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
    }
}
