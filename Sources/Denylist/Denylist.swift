// Module Denylist: IPIP-383 compact denylists (ipfs/specs `src/compact-denylist-format.md`) for Bitswap.
//
// What is here:
// - `DenylistFile`: one `.deny` file parsed (optional YAML header up to `---`, comments, rules with hints).
// - `DenylistSnapshot`: the immutable matcher over several files; `decision(for:)` answers one want.
// - `DenylistStore`: the current snapshot behind a lock; `reload()` (SIGHUP), `reloadIfChanged()` and
//   `watch(every:)` (mtime/size polling); a failed reload keeps the previous snapshot.
//
// Wiring into the Bitswap engine: ask `store.decision(for: cid)` for every wanted CID before any storage or
// cache access; a `.denied(reason)` want is answered as a miss (DONT_HAVE when asked for, else nothing),
// and `reason.kind` (with `reason.file`) labels the per-reason counter. The check costs one dictionary
// lookup per file, plus one sha2-256 per hash function used by `//` rules and one for legacy badbits rules.
//
// Only the rules that name a block apply to Bitswap: the spec's "Blocking layer recommendation: BlockService"
// rules (`/ipfs/CID`, `/ipfs/CID/*`, double hashes). Path and IPNS rules are parsed and kept, counted as
// not applicable and logged once per file, since a Bitswap want carries no path and no name.

/// What a rule of a denylist is, as counted and as named in a denial.
public enum DenylistRuleKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `/ipfs/CID` (or `/ipfs/CID/`): "CID-rule: Blocks a specific multihash."
    case cid
    /// `/ipfs/CID/*`: "`/*` includes the empty path. Thus, `/ipfs/CID/*` blocks the CID itself, and any paths."
    case cidSubtree
    /// `//<base58btc multihash>`: the (modern) double hash of the base58btc multihash string.
    case doubleHash
    /// `//<64 hex digits>`: the legacy badbits anchor, sha2-256 of `CIDV1_BASE32/`.
    case legacyDoubleHash
    /// `/ipfs/CID/PATH` (`PATH` not `*`): a path under a CID; Bitswap wants carry no path.
    case ipfsPath
    /// `/ipns/NAME[/PATH]`: blocks a name before it is resolved; Bitswap resolves no names.
    case ipns
    /// `/PATH`: a bare path rule; Bitswap wants carry no path.
    case path
    /// A deny rule for a well-known empty block or directory: kept out of the matcher (see `DenylistFile`).
    case emptyBlock

    /// Whether rules of this kind can deny (or allow) a Bitswap want.
    public var appliesToBitswap: Bool {
        switch self {
        case .cid, .cidSubtree, .doubleHash, .legacyDoubleHash: return true
        case .ipfsPath, .ipns, .path, .emptyBlock: return false
        }
    }

    public var description: String { rawValue }
}

/// Why a want is denied: the rule that matched it last.
public struct DenylistReason: Sendable, Hashable, CustomStringConvertible {
    /// The denylist file, as it was given to the store.
    public let file: String
    /// The 1-based line of the rule in that file.
    public let line: Int
    public let kind: DenylistRuleKind

    public init(file: String, line: Int, kind: DenylistRuleKind) {
        self.file = file
        self.line = line
        self.kind = kind
    }

    public var description: String { "\(file):\(line) (\(kind))" }
}

/// The answer for one wanted CID.
public enum DenylistDecision: Sendable, Hashable {
    /// No rule matches, or the last matching rule is an allow (`!`) rule.
    case allowed
    /// The last matching rule is a deny rule.
    case denied(DenylistReason)

    public var isDenied: Bool {
        if case .denied = self { return true }
        return false
    }
}

/// A denylist that cannot be read or parsed: always names the file, and the line where there is one.
public struct DenylistError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Problem: Sendable, Equatable {
        /// The file could not be opened, read or examined (the system's reason).
        case unreadable(String)
        /// "Lines should not be longer than 2MiB including the "\n" delimiter."
        case lineTooLong(limit: Int)
        /// A `---` line after the header's 1 MiB bound: "1 MiB (1048576 bytes) maximum size". (A header with
        /// no `---` within the bound is read as rules, as the spec says, and fails as a `badRule` that says so.)
        case headerTooLong(limit: Int)
        /// The header is not YAML edgeswap reads (or a known field has the wrong type).
        case badHeader(String)
        /// "Implementations SHOULD reject parsing denylist versions that they do not support."
        case unsupportedVersion(String)
        /// A line that is neither blank, a comment, nor a valid rule.
        case badRule(String)
    }

    public let file: String
    /// 1-based; nil when the problem is the file as a whole.
    public let line: Int?
    public let problem: Problem

    public init(file: String, line: Int?, problem: Problem) {
        self.file = file
        self.line = line
        self.problem = problem
    }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        switch problem {
        case .unreadable(let why): return "\(place): cannot read denylist: \(why)"
        case .lineTooLong(let limit): return "\(place): line is longer than the \(limit)-byte limit"
        case .headerTooLong(let limit):
            return "\(place): this `---` ends a header longer than the \(limit)-byte limit"
        case .badHeader(let why): return "\(place): bad header: \(why)"
        case .unsupportedVersion(let v): return "\(place): unsupported denylist version \(v) (only 1 is known)"
        case .badRule(let why): return "\(place): \(why)"
        }
    }
}
