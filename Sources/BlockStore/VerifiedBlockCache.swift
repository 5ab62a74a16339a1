import Multiformats
import NIOConcurrencyHelpers
import NIOCore

/// Blocks that passed verification, kept so that a hit costs neither a storage read nor a hash.
///
/// - Keyed by multihash: every CID form of the same bytes (v0, v1, any codec) hits the same entry.
/// - Bounded by bytes (`capacity`, least recently used evicted first); `0` turns the cache off.
/// - Holds compact copies, never slices: a slice of a coalesced ranged read would keep the whole read buffer
///   (up to `maxCoalescedRead`, 8 MiB) alive for one small block.
/// - Only bytes that were verified against their multihash are inserted (`IndexedCARBlockSource` inserts after
///   `Multihash.verify`), so a hit is served as is.
/// - A root's entry remembers the CARs the root resolved to, so that a peer whose root is served from here still
///   gets those CARs in its scope, where its non-root wants are then found.
public final class VerifiedBlockCache: Sendable {
    /// One cached block.
    public struct Entry: Sendable {
        /// The verified block bytes (a compact copy).
        public var block: ByteBuffer
        /// For a root: the CARs dudewhere listed for it; empty otherwise.
        public var rootCARs: [CID]
    }

    /// Counters for metrics.
    public struct Statistics: Sendable, Equatable {
        public var hits = 0
        public var misses = 0
        public var insertions = 0
        public var evictions = 0
        /// Bytes charged now: block bytes plus a small overhead per entry.
        public var bytes = 0
        /// Blocks held now.
        public var entries = 0

        public init(hits: Int = 0, misses: Int = 0, insertions: Int = 0, evictions: Int = 0, bytes: Int = 0,
                    entries: Int = 0) {
            self.hits = hits
            self.misses = misses
            self.insertions = insertions
            self.evictions = evictions
            self.bytes = bytes
            self.entries = entries
        }
    }

    /// The byte budget (0: off).
    public let capacity: Int
    private let state: NIOLockedValueBox<State>

    private struct State {
        var lru: LRUCache<Multihash, Entry>
        /// Evictions of caches dropped by `removeAll`.
        var earlierEvictions = 0
        var hits = 0
        var misses = 0
        var insertions = 0
    }

    public init(capacity: Int) {
        self.capacity = max(0, capacity)
        self.state = NIOLockedValueBox(State(lru: LRUCache(capacity: max(0, capacity))))
    }

    /// Whether the cache keeps anything at all.
    public var isEnabled: Bool { capacity > 0 }

    /// The entry for `multihash`, counted as a hit or a miss. With `onlyRoots`, an entry without root CARs
    /// counts as a miss.
    public func get(_ multihash: Multihash, onlyRoots: Bool = false) -> Entry? {
        guard isEnabled else { return nil }
        return state.withLockedValue { state in
            if let entry = state.lru.get(multihash), !(onlyRoots && entry.rootCARs.isEmpty) {
                state.hits += 1
                return entry
            }
            state.misses += 1
            return nil
        }
    }

    /// Keeps a compact copy of `block` (already verified against `multihash`) and returns it. The cost charged is
    /// the block's length plus a small overhead per entry, so many tiny blocks cannot exceed the budget by much.
    @discardableResult
    public func insert(_ multihash: Multihash, block: ByteBuffer, rootCARs: [CID] = []) -> ByteBuffer {
        guard isEnabled else { return block }
        var copy = ByteBufferAllocator().buffer(capacity: block.readableBytes)
        copy.writeImmutableBuffer(block)
        return insert(multihash, compact: copy, rootCARs: rootCARs)
    }

    /// Keeps `block` as it is: a buffer of its own holding just the block (gathered from a streamed read), so no
    /// copy is needed to keep it compact. Returns it.
    func insert(_ multihash: Multihash, compact block: ByteBuffer, rootCARs: [CID]) -> ByteBuffer {
        guard isEnabled else { return block }
        let entry = Entry(block: block, rootCARs: rootCARs)
        let cost = block.readableBytes + 64 + multihash.digest.count + 40 * rootCARs.count
        state.withLockedValue { state in
            state.lru.insert(multihash, entry, cost: cost)
            state.insertions += 1
        }
        return block
    }

    /// Drops everything (counters are kept).
    public func removeAll() {
        state.withLockedValue { state in
            state.earlierEvictions += state.lru.evictions
            state.lru = LRUCache(capacity: capacity)
        }
    }

    public var statistics: Statistics {
        state.withLockedValue { state in
            Statistics(hits: state.hits, misses: state.misses, insertions: state.insertions,
                       evictions: state.earlierEvictions + state.lru.evictions, bytes: state.lru.totalCost, entries: state.lru.count)
        }
    }
}
