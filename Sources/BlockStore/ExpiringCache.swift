/// A map whose entries expire after a fixed time and whose size is bounded: when full, the oldest insertions
/// go first (insertion order kept in a queue, compacted lazily, so each operation is O(1) amortised). Used for
/// the negative cache (recent misses) and the location cache (recent listings).
struct ExpiringCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private var entries: [Key: (value: Value, expires: ContinuousClock.Instant)] = [:]
    private var order: [Key] = []
    private var head = 0
    let ttl: Duration
    let capacity: Int

    init(ttl: Duration, capacity: Int) {
        self.ttl = ttl
        self.capacity = capacity
    }

    /// Whether anything is kept at all (a zero TTL or capacity turns the cache off).
    var isEnabled: Bool { ttl > .zero && capacity > 0 }

    var count: Int { entries.count }

    /// The live value for `key`; an expired one is dropped.
    mutating func value(for key: Key, now: ContinuousClock.Instant) -> Value? {
        guard let entry = entries[key] else { return nil }
        if entry.expires <= now {
            entries[key] = nil
            return nil
        }
        return entry.value
    }

    /// Stores `value` until `now + ttl`, then trims to `capacity`.
    mutating func insert(_ value: Value, for key: Key, now: ContinuousClock.Instant) {
        guard isEnabled else { return }
        if entries.updateValue((value, now + ttl), forKey: key) == nil { order.append(key) }
        // An entry in the queue may have expired or been dropped already; removing it again is harmless.
        while entries.count > capacity, head < order.count {
            entries[order[head]] = nil
            head += 1
        }
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    mutating func removeAll() {
        entries = [:]
        order = []
        head = 0
    }
}
