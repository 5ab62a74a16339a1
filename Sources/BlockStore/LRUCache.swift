/// A least-recently-used map bounded by the total *cost* of its values (bytes, for decoded indexes), not by
/// a count: one index of a 30 GiB CAR weighs as much as thousands of small ones.
///
/// Entries sit in a doubly linked list threaded through arrays (no per-node allocation); `get` moves an
/// entry to the front, `insert` evicts from the back until the total fits. An entry costlier than the
/// whole budget is not kept at all (it would evict everything and then itself).
struct LRUCache<Key: Hashable, Value> {
    fileprivate struct Node {
        var key: Key
        /// nil once removed: a free slot must not keep its old value (a block's bytes, an index) alive until the
        /// slot is reused.
        var value: Value?
        var cost: Int
        var previous: Int
        var next: Int
    }

    private var nodes: [Node] = []
    private var free: [Int] = []
    private var slots: [Key: Int] = [:]
    private var head = -1
    private var tail = -1

    /// The budget; entries are evicted from the least recently used end while `totalCost` exceeds it.
    let capacity: Int
    private(set) var totalCost = 0
    /// Entries evicted to make room, over the cache's life.
    private(set) var evictions = 0

    init(capacity: Int) { self.capacity = max(0, capacity) }

    var count: Int { slots.count }

    /// The value for `key`, marking it most recently used.
    mutating func get(_ key: Key) -> Value? {
        guard let slot = slots[key] else { return nil }
        moveToFront(slot)
        return nodes[slot].value
    }

    /// Whether `key` is cached, without touching its recency.
    func contains(_ key: Key) -> Bool { slots[key] != nil }

    /// The value for `key` without touching its recency.
    func peek(_ key: Key) -> Value? { slots[key].flatMap { nodes[$0].value } }

    /// Stores `value` at `cost`, replacing any previous value, then evicts least recently used entries
    /// until the total cost fits the capacity.
    mutating func insert(_ key: Key, _ value: Value, cost: Int) {
        remove(key)
        guard cost <= capacity else { return }
        let node = Node(key: key, value: value, cost: cost, previous: -1, next: head)
        let slot: Int
        if let reused = free.popLast() {
            nodes[reused] = node
            slot = reused
        } else {
            nodes.append(node)
            slot = nodes.count - 1
        }
        if head >= 0 { nodes[head].previous = slot }
        head = slot
        if tail < 0 { tail = slot }
        slots[key] = slot
        totalCost += cost
        while totalCost > capacity, tail >= 0 {
            remove(nodes[tail].key)
            evictions += 1
        }
    }

    /// Drops `key` if present.
    mutating func remove(_ key: Key) {
        guard let slot = slots.removeValue(forKey: key) else { return }
        unlink(slot)
        totalCost -= nodes[slot].cost
        nodes[slot].value = nil
        free.append(slot)
    }

    private mutating func unlink(_ slot: Int) {
        let p = nodes[slot].previous
        let n = nodes[slot].next
        if p >= 0 { nodes[p].next = n } else { head = n }
        if n >= 0 { nodes[n].previous = p } else { tail = p }
        nodes[slot].previous = -1
        nodes[slot].next = -1
    }

    private mutating func moveToFront(_ slot: Int) {
        guard slot != head else { return }
        unlink(slot)
        nodes[slot].next = head
        if head >= 0 { nodes[head].previous = slot }
        head = slot
        if tail < 0 { tail = slot }
    }
}

extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
extension LRUCache.Node: Sendable where Key: Sendable, Value: Sendable {}
