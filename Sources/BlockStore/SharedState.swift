import NIOConcurrencyHelpers
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

/// What the shared index cache holds for one CAR: where its CARv1 payload lies in the carpark object (so a cold
/// instance need not read the CAR's head again) and its satnav index bytes, unchanged.
///
/// Layout (all integers unsigned big-endian): 4 bytes magic `ESI1`, 8 bytes payload start, 8 bytes payload
/// end + 1 (0 when the CAR is a CARv1 whose payload runs to the end of the object), then the index bytes
/// (MultihashIndexSorted, as in satnav). A version bump changes the magic, so an old instance reading a new
/// entry (or the reverse) sees an unusable entry and reads satnav instead of misreading it.
public struct CachedCARIndex: Sendable, Equatable {
    public static let magic: [UInt8] = Array("ESI1".utf8)
    public static let headerLength = 20

    /// Offset of the CARv1 payload in the carpark object (0 for a CARv1).
    public var payloadStart: UInt64
    /// End of a CARv2's payload; nil for a CARv1.
    public var payloadEnd: UInt64?
    /// The satnav index object's bytes.
    public var index: [UInt8]

    public init(payloadStart: UInt64, payloadEnd: UInt64?, index: [UInt8]) {
        self.payloadStart = payloadStart
        self.payloadEnd = payloadEnd
        self.index = index
    }

    public func encoded() -> [UInt8] {
        var out = Self.magic
        out.reserveCapacity(Self.headerLength + index.count)
        func append(_ value: UInt64) {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
        append(payloadStart)
        append(payloadEnd.map { $0 &+ 1 } ?? 0)
        out.append(contentsOf: index)
        return out
    }

    /// Decodes an entry, or says why it cannot be used.
    public static func decode(_ bytes: [UInt8]) -> Result<CachedCARIndex, CachedCARIndexError> {
        guard bytes.count >= headerLength else { return .failure(.truncated(bytes.count)) }
        guard Array(bytes[0..<4]) == magic else { return .failure(.unknownFormat) }
        func read(_ at: Int) -> UInt64 { bytes[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        let start = read(4)
        let endPlusOne = read(12)
        let end: UInt64? = endPlusOne == 0 ? nil : endPlusOne - 1
        if let end, end < start { return .failure(.badPayloadRange(start: start, end: end)) }
        return .success(CachedCARIndex(payloadStart: start, payloadEnd: end, index: Array(bytes[headerLength...])))
    }
}

/// Why a shared index cache entry cannot be used.
public enum CachedCARIndexError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(Int)
    case unknownFormat
    case badPayloadRange(start: UInt64, end: UInt64)

    public var description: String {
        switch self {
        case .truncated(let n): return "entry of \(n) bytes is shorter than its 20-byte header"
        case .unknownFormat: return "entry does not start with ESI1 (written by another version?)"
        case .badPayloadRange(let s, let e): return "payload end \(e) is before its start \(s)"
        }
    }
}

