import Bitswap
import Denylist
import Multiformats

/// The Bitswap engine's want filter over IPIP-383 denylists: every new want is decided against the store's
/// current snapshot before any storage or cache access; the reason label is the rule kind that matched
/// (`cid`, `double-hash`, …), so denials are counted by kind, never by CID.
public struct DenylistFilter: WantFilter {
    public let store: DenylistStore

    public init(store: DenylistStore) {
        self.store = store
    }

    public func denial(of cid: CID) -> String? {
        guard case .denied(let reason) = store.decision(for: cid) else { return nil }
        return reason.kind.rawValue
    }
}
