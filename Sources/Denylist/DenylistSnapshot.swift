import Multiformats

/// The keys one want is looked up by, computed once for all files.
struct WantKeys {
    let multihash: HashKey
    /// The want's double hash under each hash function the files' `//` rules use.
    let doubleHashes: [(code: UInt64, key: HashKey)]
    /// sha2-256 of `CIDV1_BASE32/`, when some file has legacy rules.
    let legacy: HashKey?
}

/// An immutable matcher over denylist files, in the order they were given.
///
/// "Denylist files are processed in alphabetical order so that rules from later denylists override rules
/// from earlier denylists on conflict": the last file with a matching rule decides, and within a file the
/// last matching line does ("last-matching-rule wins").
public struct DenylistSnapshot: Sendable {
    public let files: [DenylistFile]
    /// Every hash function the `//` rules of any file use.
    private let doubleHashCodes: [UInt64]
    private let hasLegacy: Bool

    public init(files: [DenylistFile]) {
        self.files = files
        doubleHashCodes = files.reduce(into: Set<UInt64>()) { $0.formUnion($1.doubleHashCodes) }.sorted()
        hasLegacy = files.contains { !$0.legacy.isEmpty }
    }

    /// A snapshot that denies nothing.
    public static let empty = DenylistSnapshot(files: [])

    /// Whether `cid` may be served. One dictionary lookup per file for `/ipfs/CID` rules; when the files hold
    /// double hashes, one hash of the want per hash function they use (sha2-256 in practice) and one
    /// sha2-256 for legacy badbits rules.
    public func decision(for cid: CID) -> DenylistDecision {
        guard !files.isEmpty else { return .allowed }
        let keys = wantKeys(cid)
        for file in files.reversed() {
            guard let rule = file.match(keys) else { continue }
            if rule.allow { return .allowed }
            return .denied(DenylistReason(file: file.path, line: rule.line, kind: rule.kind))
        }
        return .allowed
    }

    /// Rules by kind over all files.
    public var ruleCounts: [DenylistRuleKind: Int] {
        files.reduce(into: [:]) { total, file in total.merge(file.counts, uniquingKeysWith: +) }
    }

    private func wantKeys(_ cid: CID) -> WantKeys {
        var doubleHashes: [(code: UInt64, key: HashKey)] = []
        if !doubleHashCodes.isEmpty {
            // "The BlockService should: (modern) Convert the CID to b58-encoded-multihash (that is CIDv0) and
            // hash the CID string." The string is the base58btc multihash, no multibase prefix, no path.
            let b58 = Multibase.base58btc.encodeWithoutPrefix(cid.multihash.bytes)
            for code in doubleHashCodes {
                if let digest = Self.digest(code: code, of: b58) { doubleHashes.append((code, HashKey(code: code, digest: digest))) }
            }
        }
        var legacy: HashKey?
        if hasLegacy {
            // "(legacy) Convert the CID to `CIDV1BASE32/` (keeping the CID codec and adding a slash at the end)";
            // "the function is sha256".
            let anchor = cid.v1.string(base: .base32) + "/"
            if let digest = Self.digest(code: Multicodec.sha2_256, of: anchor) {
                legacy = HashKey(code: Multicodec.sha2_256, digest: digest)
            }
        }
        return WantKeys(multihash: HashKey(cid.multihash), doubleHashes: doubleHashes, legacy: legacy)
    }

    /// Only functions in `Hashing.supported` reach here (the parser refuses others), so nil never happens.
    private static func digest(code: UInt64, of text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { utf8 in try? Hashing.digest(code: code, of: UnsafeRawBufferPointer(utf8)) }
    }
}
