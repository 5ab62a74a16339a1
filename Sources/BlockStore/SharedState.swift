import Multiformats

/// Per-peer scopes kept where every edgeswap instance sees them (Redis in production: the key
/// `es:peer:{<peerID>}:cars`), so that a peer that reconnects to another instance behind the load balancer is
/// still served the non-root blocks of the roots it asked for before.
///
/// Implementations throw when the shared store cannot be reached; `IndexedCARBlockSource` then carries on
/// with its in-process scope only (logged and counted), so a Redis outage costs cache hits, never answers.
public protocol SharedPeerScopes: Sendable {
    /// The CARs in `peer`'s scope, most recently added first, at most `limit` of them. Refreshes the
    /// scope's time to live.
    func cars(of peer: String, limit: Int) async throws -> [CID]

    /// Adds `cars` to `peer`'s scope (as the most recent ones), keeps at most `limit`, and refreshes the
    /// scope's time to live.
    func add(_ cars: [CID], to peer: String, limit: Int) async throws
}

/// CAR indexes kept where every instance sees them (Redis in production: `es:car:{<carCID>}:idx`), between
/// the in-process LRU and the satnav object. Values are opaque to the cache (`CachedCARIndex` encodes them);
/// a CAR is immutable and content-addressed, so an entry never needs invalidating, only expiring.
///
/// Implementations throw when the shared store cannot be reached; the source then reads satnav.
public protocol SharedIndexCache: Sendable {
    /// The cached value for `car`, or nil when there is none.
    func index(of car: CID) async throws -> [UInt8]?

    /// Caches `value` for `car`.
    func store(_ value: [UInt8], for car: CID) async throws
}
