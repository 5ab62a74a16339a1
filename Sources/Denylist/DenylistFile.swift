import Foundation
import Multiformats

/// A rule the matcher keeps: where it is and what it does. Within one key the later line replaces the
/// earlier one, which is the spec's "last-matching-rule wins" for that key.
struct RuleRef: Sendable {
    let line: Int
    let kind: DenylistRuleKind
    let allow: Bool
}

/// A rule that cannot match a Bitswap want (a path or an IPNS name): kept, counted and reported.
public struct DenylistInapplicableRule: Sendable, Hashable {
    public let line: Int
    public let kind: DenylistRuleKind
    /// A `!` (allow) rule.
    public let allow: Bool
    /// The rule as written, without `!` and hints.
    public let rule: String
}

/// One compact denylist file, parsed.
///
/// Lines are `\n`-separated; "Comment lines start with `#`. Empty lines are allowed." A rule is the first
/// space-separated field of its line, optional hints (`key:value`) follow; V1 defines no hint, so hints are
/// read past ("Implementation SHOULD ignore unsupported fields and hints"). An invalid rule aborts the
/// parse (the spec's "Abort parsing and return a general error"), so a bad list never half-applies.
///
/// Deny rules for a few well-known empty blocks and directories (the list nopfs and kubo refuse to block,
/// rule 15 of nopfs's `test.deny`) are counted as `.emptyBlock` and not enforced: denying them breaks any
/// client that resolves an empty directory.
public struct DenylistFile: Sendable {
    /// "1 MiB (1048576 bytes) maximum size" of the header, its `---` line included.
    public static let maxHeaderBytes = 1 << 20
    /// "Lines should not be longer than 2MiB including the "\n" delimiter."
    public static let maxLineBytes = 2 << 20

    /// The file as given (named in every error and denial).
    public let path: String
    public internal(set) var header = DenylistHeader()
    /// Rules by kind, allow rules included.
    public internal(set) var counts: [DenylistRuleKind: Int] = [:]
    /// How many of the rules are `!` (allow) rules.
    public internal(set) var allowRules = 0
    /// Path and IPNS rules, in file order.
    public internal(set) var inapplicableRules: [DenylistInapplicableRule] = []
    /// Lines read, header included.
    public internal(set) var lineCount = 0

    /// `/ipfs/CID` and `/ipfs/CID/*` rules by multihash: "Blocking by CID is codec-agnostic (blocks by multihash)."
    var blocks: [HashKey: RuleRef] = [:]
    /// Modern double hashes by the hash function that made them, then by that multihash.
    var doubleHashes: [UInt64: [HashKey: RuleRef]] = [:]
    /// Legacy badbits anchors: sha2-256 digests.
    var legacy: [HashKey: RuleRef] = [:]

    init(path: String) {
        self.path = path
    }

    /// Reads and parses the file at `path`.
    public init(contentsOf path: String) throws(DenylistError) {
        var parser = DenylistParser(file: path)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw DenylistError(file: path, line: nil, problem: .unreadable(String(cString: strerror(errno))))
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        while true {
            let chunk: Data?
            do { chunk = try handle.read(upToCount: 1 << 20) } catch {
                throw DenylistError(file: path, line: nil, problem: .unreadable("\(error)"))
            }
            guard let chunk, !chunk.isEmpty else { break }
            try parser.feed(chunk)
        }
        self = try parser.finish()
    }

    /// Parses denylist text; `file` names it in errors and denials.
    public init(parsing text: String, file: String) throws(DenylistError) {
        try self.init(bytes: Array(text.utf8), file: file)
    }

    /// Parses a denylist held in memory (fetched from elsewhere, say); `file` names it.
    public init(bytes: some Collection<UInt8>, file: String) throws(DenylistError) {
        var parser = DenylistParser(file: file)
        try parser.feed(bytes)
        self = try parser.finish()
    }

    /// The rule of this file that matches a want last, if any.
    func match(_ keys: WantKeys) -> RuleRef? {
        var best = blocks[keys.multihash]
        func consider(_ candidate: RuleRef?) {
            guard let candidate else { return }
            if let current = best, current.line >= candidate.line { return }
            best = candidate
        }
        if !doubleHashes.isEmpty {
            for (code, key) in keys.doubleHashes { consider(doubleHashes[code]?[key]) }
        }
        if let key = keys.legacy { consider(legacy[key]) }
        return best
    }

    /// The hash functions this file's modern double hashes use.
    var doubleHashCodes: Set<UInt64> { Set(doubleHashes.keys) }

}

/// Parses a denylist from chunks of bytes, holding at most one line (2 MiB) and the header (1 MiB).
struct DenylistParser {
    private var result: DenylistFile
    private var partial: [UInt8] = []
    private var lineNumber = 0
    /// Header lines held until `---` shows (or the 1 MiB bound passes).
    private var headerLines: [(number: Int, bytes: [UInt8])]? = []
    private var headerBytes = 0
    /// The last line read as a rule only because no `---` came within the header bound.
    private var headerlessUpTo = 0

    init(file: String) {
        result = DenylistFile(path: file)
    }

    private var file: String { result.path }

    mutating func feed(_ chunk: some Collection<UInt8>) throws(DenylistError) {
        var start = chunk.startIndex
        while start != chunk.endIndex {
            let newline = chunk[start...].firstIndex(of: UInt8(ascii: "\n"))
            let piece = chunk[start..<(newline ?? chunk.endIndex)]
            // Checked before buffering: a line of 2 MiB with its "\n" is the most the spec allows.
            guard partial.count + piece.count + 1 <= DenylistFile.maxLineBytes else {
                throw DenylistError(file: file, line: lineNumber + 1,
                                    problem: .lineTooLong(limit: DenylistFile.maxLineBytes))
            }
            partial.append(contentsOf: piece)
            guard let newline else { return }
            try completeLine()
            start = chunk.index(after: newline)
        }
    }

    mutating func finish() throws(DenylistError) -> DenylistFile {
        if !partial.isEmpty { try completeLine() }
        // No `---` at all: the file has no header and every line is a rule.
        if let held = headerLines {
            headerLines = nil
            for line in held { try rule(line.bytes, number: line.number) }
        }
        result.lineCount = lineNumber
        return result
    }

    private mutating func completeLine() throws(DenylistError) {
        lineNumber += 1
        var bytes = partial
        partial.removeAll(keepingCapacity: true)
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard var held = headerLines else { return try rule(bytes, number: lineNumber) }

        let size = bytes.count + 1
        if headerBytes + size <= DenylistFile.maxHeaderBytes {
            if Self.isSeparator(bytes) {
                headerLines = nil
                result.header = try HeaderParser(file: file).parse(held.map { line throws(DenylistError) in
                    HeaderLine(number: line.number, text: try text(line.bytes, number: line.number))
                })
                return
            }
            headerBytes += size
            headerLines = nil  // no copy on append
            held.append((lineNumber, bytes))
            headerLines = held
            return
        }
        // "If the size limit is reached, assume the list includes no header and start parsing block items
        // from the beginning of the denylist."
        headerLines = nil
        headerlessUpTo = lineNumber
        for line in held { try rule(line.bytes, number: line.number) }
        try rule(bytes, number: lineNumber)
    }

    private static func isSeparator(_ bytes: [UInt8]) -> Bool {
        var end = bytes.count
        while end > 3, bytes[end - 1] == UInt8(ascii: " ") || bytes[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        return end == 3 && bytes[0] == UInt8(ascii: "-") && bytes[1] == UInt8(ascii: "-") && bytes[2] == UInt8(ascii: "-")
    }

    private func text(_ bytes: [UInt8], number: Int) throws(DenylistError) -> String {
        // "A denylist is a UTF-8 encoded text file". Rules are ASCII but for paths, so ASCII skips validation.
        if !bytes.contains(where: { $0 >= 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
        guard let text = String(bytes: bytes, encoding: .utf8) else { throw badRule(number, "line is not valid UTF-8") }
        return text
    }

    private func badRule(_ number: Int, _ why: String) -> DenylistError {
        let note = number <= headerlessUpTo
            ? " (read as a rule: no `---` ended a header within the first \(DenylistFile.maxHeaderBytes) bytes)" : ""
        return DenylistError(file: file, line: number, problem: .badRule(why + note))
    }

    private mutating func rule(_ bytes: [UInt8], number: Int) throws(DenylistError) {
        let line = try text(bytes, number: number).trimmingSpaces()
        if line.isEmpty || line.hasPrefix("#") { return }
        if Self.isSeparator(Array(line.utf8)) {
            if headerlessUpTo > 0 {
                throw DenylistError(file: file, line: number, problem: .headerTooLong(limit: DenylistFile.maxHeaderBytes))
            }
            throw badRule(number, "`---` ends the header, which must come first; this one has no header to end")
        }
        // "[block_item] hintA:v1 hintB:v2": the rule is the first field.
        let field = line.prefix(while: { $0 != " " && $0 != "\t" })
        var body = Substring(field)
        // "Block items can be prepended by `!`, which means that items matching the rule are to be allowed".
        let allow = body.hasPrefix("!")
        if allow { body = body.dropFirst() }

        if body.hasPrefix("//") {
            try doubleHash(body.dropFirst(2), allow: allow, number: number)
        } else if body.hasPrefix("/ipfs/") {
            try ipfs(body.dropFirst(6), allow: allow, number: number)
        } else if body.hasPrefix("/ipns/") {
            let name = body.dropFirst(6).prefix(while: { $0 != "/" })
            guard !name.isEmpty else { throw badRule(number, "`/ipns/` needs a name") }
            inapplicable(.ipns, body, allow: allow, number: number)
        } else if body.hasPrefix("/"), body.count > 1 {
            inapplicable(.path, body, allow: allow, number: number)
        } else {
            throw badRule(number, "`\(Self.excerpt(field))` is not a rule: a rule is `/ipfs/CID[/PATH]`, "
                + "`/ipns/NAME[/PATH]`, `/PATH` or `//HASH`, optionally after `!`")
        }
    }

    /// `/ipfs/CID`, `/ipfs/CID/` and `/ipfs/CID/*` name the block; other paths do not.
    private mutating func ipfs(_ rest: Substring, allow: Bool, number: Int) throws(DenylistError) {
        let cidText = rest.prefix(while: { $0 != "/" })
        let path = rest.dropFirst(cidText.count).dropFirst()  // after the "/", if any
        let cid: CID
        do { cid = try CID(string: cidText) } catch {
            throw badRule(number, "`\(Self.excerpt(cidText))` is not a CID: \(error)")
        }
        // "Note `/ipfs/CID/path` and `/ipfs/CID/path/` are equivalent rules": `/ipfs/CID/` is `/ipfs/CID`.
        let kind: DenylistRuleKind
        switch path {
        case "": kind = .cid
        case "*": kind = .cidSubtree
        default: return inapplicable(.ipfsPath, "/ipfs/" + rest, allow: allow, number: number)
        }
        let key = HashKey(cid.multihash)
        if !allow && EmptyBlocks.multihashes.contains(key) {
            count(.emptyBlock, allow: false)
            return
        }
        count(kind, allow: allow)
        result.blocks[key] = RuleRef(line: number, kind: kind, allow: allow)
    }

    /// "In a case where implementation cannot distinguish a double-hashed rule between a b58btc multihash
    /// (modern) and a sha256 hex-string (legacy), content blocking system MUST create deny rules for both."
    private mutating func doubleHash(_ text: Substring, allow: Bool, number: Int) throws(DenylistError) {
        var added = false
        if let mh = Self.modernMultihash(text) {
            count(.doubleHash, allow: allow)
            result.doubleHashes[mh.code, default: [:]][HashKey(mh)] =
                RuleRef(line: number, kind: .doubleHash, allow: allow)
            added = true
        }
        // "(legacy) the sha256-hex-encoded hash of `CIDV1_BASE32/PATH`".
        if text.utf8.count == 64, let digest = try? Multibase.base16.decodeWithoutPrefix(text) {
            count(.legacyDoubleHash, allow: allow)
            result.legacy[HashKey(code: Multicodec.sha2_256, digest: digest)] =
                RuleRef(line: number, kind: .legacyDoubleHash, allow: allow)
            added = true
        }
        guard added else {
            throw badRule(number, "`//\(Self.excerpt(text))` is neither a base58btc multihash of a supported hash "
                + "function nor 64 hex digits of a sha2-256 digest")
        }
    }

    /// A modern double hash: a base58btc multihash of a function edgeswap computes, at its full length.
    private static func modernMultihash(_ text: Substring) -> Multihash? {
        guard let bytes = try? Multibase.base58btc.decodeWithoutPrefix(text),
              let mh = try? Multihash(bytes: bytes),
              mh.code != Multicodec.identity,
              Hashing.supported.contains(mh.code),
              Hashing.digestLength(of: mh.code) == mh.digest.count
        else { return nil }
        return mh
    }

    private mutating func inapplicable(_ kind: DenylistRuleKind, _ rule: some StringProtocol, allow: Bool, number: Int) {
        count(kind, allow: allow)
        result.inapplicableRules.append(DenylistInapplicableRule(line: number, kind: kind, allow: allow, rule: String(rule)))
    }

    private mutating func count(_ kind: DenylistRuleKind, allow: Bool) {
        result.counts[kind, default: 0] += 1
        if allow { result.allowRules += 1 }
    }

    /// At most 80 characters of untrusted text, for an error message.
    private static func excerpt(_ text: some StringProtocol) -> String {
        text.count <= 80 ? String(text) : String(text.prefix(77)) + "..."
    }
}

/// The CIDs nopfs's `SafeCids` and `test.deny` rule 15 keep unblocked ("These are known cids corresponding
/// to empty blocks/folders. Even if they appear here, they should not be blocked"), by multihash.
enum EmptyBlocks {
    static let cids = [
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",  // empty unixfs directory
        "bafyaabakaieac",  // empty unixfs directory, inlined
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",  // empty block
        "bafkqaaa",  // empty block, inlined
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",  // empty dag-pb block
        "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua",  // empty dag-cbor block
        "baguqeeraiqjw7i2vwntyuekgvulpp2det2kpwt6cd7tx5ayqybqpmhfk76fa",  // empty dag-json block
    ]

    static let multihashes: Set<HashKey> = Set(cids.compactMap { try? HashKey(CID(string: $0).multihash) })
}
