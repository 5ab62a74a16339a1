import CAR
import Logging
import Multiformats
import ObjectStorage

/// The decoded indexes of CARs, with where each CAR's payload lies: a byte-bounded LRU in process, then the
/// shared index cache (Redis, `SharedIndexCache`), then satnav (the `.car.idx` object, plus the CAR's first 51
/// bytes to learn a CARv2's payload range). Loads are single-flight: a cold CAR wanted by many lookups at once is
/// read once, and charged to the lookup that started the read.
final class CARIndexCache: Sendable {
    private let satnav: any Bucket
    private let carpark: any Bucket
    private let sharedIndexes: (any SharedIndexCache)?
    private let counters: SourceCounters
    private let state: State

    init(satnav: any Bucket, carpark: any Bucket, sharedIndexes: (any SharedIndexCache)?, capacity: Int,
         counters: SourceCounters) {
        self.satnav = satnav
        self.carpark = carpark
        self.sharedIndexes = sharedIndexes
        self.counters = counters
        self.state = State(capacity: capacity)
    }

    /// The entries of `cars` that are in memory, in one hop (nothing is loaded).
    func cached(_ cars: [CID]) async -> [CID: CAREntry] { await state.cached(cars) }

    /// The entries of `cars`: those in memory, and the others loaded concurrently (each single-flight).
    func entries(_ cars: [CID]) async -> [CID: Result<CAREntry, LoadFailure>] {
        var results: [CID: Result<CAREntry, LoadFailure>] = [:]
        for (car, entry) in await state.cached(cars) { results[car] = .success(entry) }
        let cold = cars.filter { results[$0] == nil }
        guard !cold.isEmpty else { return results }
        if cold.count == 1 {
            results[cold[0]] = await entry(cold[0])
            return results
        }
        return await withTaskGroup(of: (CID, Result<CAREntry, LoadFailure>).self) { group in
            for car in Set(cold) { group.addTask { (car, await self.entry(car)) } }
            for await (car, result) in group { results[car] = result }
            return results
        }
    }

    /// The entry of `car`, from memory or from one load shared by every concurrent caller.
    func entry(_ car: CID) async -> Result<CAREntry, LoadFailure> {
        await state.entry(for: car) {
            let loaded = await self.load(car)
            self.counters.update { $0.indexLoads += 1 }
            return loaded
        }
    }

    /// Indexes evicted to stay within the byte budget, over the cache's life.
    func evictions() async -> Int { await state.evictions }

    func clear() async { await state.clear() }

    // MARK: - Loading

    /// The index from the shared cache, or else from the store (then written to the shared cache).
    private func load(_ car: CID) async -> Result<CAREntry, LoadFailure> {
        if let sharedIndexes {
            do {
                if let cached = try await sharedIndexes.index(of: car) {
                    switch CachedCARIndex.decode(cached) {
                    case .success(let value):
                        if let entry = try? CAREntry(car, index: CARIndex.decode(value.index), indexSize: value.index.count,
                                                     payloadStart: value.payloadStart, payloadEnd: value.payloadEnd)
                        {
                            counters.update { $0.sharedIndexHits += 1 }
                            return .success(entry)
                        }
                        counters.logger.error("shared index cache holds an undecodable index; reading satnav",
                                              metadata: ["car": "\(car)"])
                    case .failure(let why):
                        counters.logger.error("shared index cache entry unusable; reading satnav",
                                              metadata: ["car": "\(car)", "error": "\(why)"])
                    }
                }
            } catch {
                counters.sharedStoreFailed("read CAR index", error)
            }
        }
        let loaded = await loadFromStore(car)
        if let sharedIndexes, case .success(let (entry, indexBytes)) = loaded {
            let value = CachedCARIndex(payloadStart: entry.payloadStart, payloadEnd: entry.payloadEnd, index: indexBytes)
            do {
                try await sharedIndexes.store(value.encoded(), for: car)
            } catch {
                counters.sharedStoreFailed("store CAR index", error)
            }
        }
        return loaded.map(\.0)
    }

    /// Reads a CAR's index from satnav and the start of the CAR from carpark: index offsets are relative to the
    /// CARv1 payload, which in a CARv2 starts at the header's data offset (`CARPayload.locate`).
    private func loadFromStore(_ car: CID) async -> Result<(CAREntry, [UInt8]), LoadFailure> {
        let indexBytes: [UInt8]
        let start: [UInt8]
        do throws(BucketError) {
            indexBytes = try await satnav.get(StoreLayout.indexKey(car))
            start = try await carpark.get(StoreLayout.carKey(car), range: 0...(CARv2.minimumDataOffset - 1))
        } catch {
            if case .noSuchKey = error { return .failure(.missing) }
            return .failure(.storage(error))
        }
        let index: CARIndex
        let payload: CARPayload
        do throws(CARError) {
            index = try CARIndex.decode(indexBytes)
        } catch {
            return .failure(.malformed("index: \(error)"))
        }
        do throws(CARError) {
            payload = try start.withUnsafeBytes { raw in
                Result { () throws(CARError) in try CARPayload.locate(head: raw) }
            }.get()
        } catch {
            return .failure(.malformed("CARv2 header: \(error)"))
        }
        let entry = CAREntry(car, index: index, indexSize: indexBytes.count, payloadStart: payload.start,
                             payloadEnd: payload.end)
        return .success((entry, indexBytes))
    }

    // MARK: - State

    /// The LRU and the loads under way.
    private actor State {
        private let capacity: Int
        private var indexes: LRUCache<CID, CAREntry>
        private var loading: [CID: Task<Result<CAREntry, LoadFailure>, Never>] = [:]
        /// Evictions of LRUs dropped by `clear`.
        private var earlierEvictions = 0

        init(capacity: Int) {
            self.capacity = capacity
            self.indexes = LRUCache(capacity: capacity)
        }

        var evictions: Int { earlierEvictions + indexes.evictions }

        func cached(_ cars: [CID]) -> [CID: CAREntry] {
            var found: [CID: CAREntry] = [:]
            for car in cars { if let entry = indexes.get(car) { found[car] = entry } }
            return found
        }

        func entry(for car: CID, loader: @escaping @Sendable () async -> Result<CAREntry, LoadFailure>) async
            -> Result<CAREntry, LoadFailure>
        {
            if let cached = indexes.get(car) { return .success(cached) }
            if let inFlight = loading[car] { return await inFlight.value }
            let task = Task { await loader() }
            loading[car] = task
            let result = await task.value
            loading[car] = nil
            if case .success(let entry) = result { indexes.insert(car, entry, cost: entry.cost) }
            return result
        }

        func clear() {
            earlierEvictions += indexes.evictions
            indexes = LRUCache(capacity: capacity)
        }
    }
}

/// Why a CAR's index could not be had.
enum LoadFailure: Error, Sendable {
    /// The index or the CAR is not in the store.
    case missing
    case storage(BucketError)
    case malformed(String)
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

    init(_ car: CID, index: CARIndex, indexSize: Int, payloadStart: UInt64, payloadEnd: UInt64?) {
        var starts: [UInt64] = []
        starts.reserveCapacity(index.entryCount)
        index.forEach { _, _, offset in starts.append(offset) }
        starts.sort()
        self.car = car
        self.index = index
        self.sectionStarts = starts
        self.payloadStart = payloadStart
        self.payloadEnd = payloadEnd
        self.cost = indexSize + 8 * starts.count + 256
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
