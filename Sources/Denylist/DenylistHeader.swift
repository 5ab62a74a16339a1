/// The optional header of a denylist: "The list header is an optional YAML block", ended by `---`.
///
/// edgeswap reads the part of YAML such headers use, without a YAML dependency: top-level `key: value`
/// pairs with plain, 'single' or "double" quoted scalars, `|` and `>` block scalars, and the `hints` map
/// as an indented block (or `{}`). "Implementations SHOULD ignore unknown header fields": an unknown field
/// may hold anything, its indented lines are skipped. Anything else in a known field is a `badHeader`
/// error, as the spec asks: "If parsing the header fails, abort and signal an error."
public struct DenylistHeader: Sendable, Equatable {
    /// "The denylist format version. Defaults to 1 when not specified."
    public var version: Int = 1
    public var name: String?
    public var description: String?
    public var author: String?
    /// "A map of optional global hints." V1 defines none; none changes what Bitswap denies.
    public var hints: [String: String] = [:]
    /// Whether the file had a header at all.
    public var present = false

    public init() {}
}

/// One line of the header, with its 1-based number in the file.
struct HeaderLine {
    let number: Int
    let text: String
}

struct HeaderParser {
    let file: String

    func parse(_ lines: [HeaderLine]) throws(DenylistError) -> DenylistHeader {
        var header = DenylistHeader()
        header.present = true
        var seen: Set<String> = []
        var i = 0
        while i < lines.count {
            let line = lines[i]
            let text = Self.trimmedRight(line.text)
            i += 1
            if Self.isBlankOrComment(text) { continue }
            guard let first = text.first, first != " ", first != "\t" else {
                throw fail(line, "unexpected indentation")
            }
            guard !text.hasPrefix("%") else { throw fail(line, "YAML directives are not supported") }
            guard let pair = Self.splitKey(text) else { throw fail(line, "expected `key: value`") }
            let (key, rawValue) = pair
            guard seen.insert(key).inserted else { throw fail(line, "duplicate key `\(key)`") }
            let value = Self.stripComment(rawValue)
            // The lines indented under this key belong to its value.
            var block: [HeaderLine] = []
            while i < lines.count {
                let next = lines[i].text
                if let c = next.first, c != " " && c != "\t" && !Self.isBlankOrComment(Self.trimmedRight(next)) { break }
                block.append(lines[i])
                i += 1
            }
            while let last = block.last, Self.isBlankOrComment(Self.trimmedRight(last.text)) { block.removeLast() }

            switch key {
            case "version":
                let scalar = try scalarValue(value, block: block, line: line)
                guard let scalar, let v = Int(scalar) else { throw fail(line, "`version` must be an integer") }
                guard v == 1 else { throw DenylistError(file: file, line: line.number, problem: .unsupportedVersion(scalar)) }
                header.version = v
            case "name": header.name = try scalarValue(value, block: block, line: line)
            case "description": header.description = try scalarValue(value, block: block, line: line)
            case "author": header.author = try scalarValue(value, block: block, line: line)
            case "hints": header.hints = try hintsValue(value, block: block, line: line)
            default: break  // a custom field: ignored with whatever it holds
            }
        }
        return header
    }

    /// A scalar field: inline, a block scalar (`|`, `>`), or nil for an empty or null value.
    private func scalarValue(_ value: String, block: [HeaderLine], line: HeaderLine) throws(DenylistError) -> String? {
        if let style = value.first, style == "|" || style == ">" {
            let chomp = value.dropFirst()
            guard chomp.isEmpty || chomp == "-" || chomp == "+" else {
                throw fail(line, "block scalar indicator `\(value)` is not supported")
            }
            return blockScalar(block, folded: style == ">", keepTrailingNewline: chomp != "-")
        }
        guard block.isEmpty else { throw fail(line, "`\(Self.splitKey(line.text)?.0 ?? "")` must be a scalar") }
        if value.isEmpty || value == "~" || value == "null" { return nil }
        return try scalar(value, line: line)
    }

    private func hintsValue(_ value: String, block: [HeaderLine], line: HeaderLine) throws(DenylistError) -> [String: String] {
        if value == "{}" || value == "~" || value == "null" { return [:] }
        guard value.isEmpty else { throw fail(line, "write `hints` as an indented `key: value` block") }
        var hints: [String: String] = [:]
        var indent: Int?
        for entry in block {
            let text = Self.trimmedRight(entry.text)
            if Self.isBlankOrComment(text) { continue }
            let depth = text.prefix(while: { $0 == " " }).count
            guard text.dropFirst(depth).first != "\t" else { throw fail(entry, "tabs cannot indent YAML") }
            if indent == nil { indent = depth }
            guard depth == indent else { throw fail(entry, "a hint value must be a scalar on the hint's line") }
            guard let pair = Self.splitKey(String(text.dropFirst(depth))) else {
                throw fail(entry, "expected `hint: value`")
            }
            let value = Self.stripComment(pair.1)
            hints[pair.0] = try value.isEmpty ? "" : scalar(value, line: entry)
        }
        return hints
    }

    /// A one-line scalar: quoted or plain.
    private func scalar(_ value: String, line: HeaderLine) throws(DenylistError) -> String {
        if value.hasPrefix("\"") {
            guard value.count >= 2, value.hasSuffix("\"") else { throw fail(line, "unterminated double-quoted string") }
            var out = ""
            var escaped = false
            for c in value.dropFirst().dropLast() {
                if escaped {
                    switch c {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "\\", "\"", "/": out.append(c)
                    default: out.append("\\"); out.append(c)
                    }
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else {
                    out.append(c)
                }
            }
            guard !escaped else { throw fail(line, "unterminated double-quoted string") }
            return out
        }
        if value.hasPrefix("'") {
            guard value.count >= 2, value.hasSuffix("'") else { throw fail(line, "unterminated single-quoted string") }
            return String(value.dropFirst().dropLast()).replacing("''", with: "'")
        }
        if let c = value.first, "[{&*!|>@`".contains(c) {
            throw fail(line, "a known field must hold a plain or quoted scalar")
        }
        return value
    }

    /// `|` keeps the lines, `>` folds them into one with spaces (YAML's common case, without its rules for
    /// more-indented lines).
    private func blockScalar(_ lines: [HeaderLine], folded: Bool, keepTrailingNewline: Bool) -> String {
        let indent = lines.lazy.filter { !Self.trimmedRight($0.text).isEmpty }
            .map { $0.text.prefix(while: { $0 == " " }).count }.min() ?? 0
        let content = lines.map { String(Self.trimmedRight($0.text).dropFirst(indent)) }
        let joined = folded ? content.split(separator: "", omittingEmptySubsequences: false)
            .map { $0.joined(separator: " ") }.joined(separator: "\n") : content.joined(separator: "\n")
        return keepTrailingNewline && !content.isEmpty ? joined + "\n" : joined
    }

    private func fail(_ line: HeaderLine, _ why: String) -> DenylistError {
        DenylistError(file: file, line: line.number, problem: .badHeader(why))
    }

    /// `key: value` (or `key:` at the end of the line) with a plain or quoted key.
    static func splitKey(_ text: String) -> (String, String)? {
        var previous: Character?
        var index = text.startIndex
        var quote: Character?
        while index < text.endIndex {
            let c = text[index]
            if let q = quote {
                if c == q { quote = nil }
            } else if previous == nil && (c == "\"" || c == "'") {
                quote = c
            } else if c == ":" {
                let after = text.index(after: index)
                if after == text.endIndex || text[after] == " " {
                    var key = String(text[..<index]).trimmingSpaces()
                    if key.count >= 2, let f = key.first, f == "\"" || f == "'", key.last == f {
                        key = String(key.dropFirst().dropLast())
                    }
                    guard !key.isEmpty else { return nil }
                    return (key, String(text[after...]).trimmingSpaces())
                }
            }
            previous = c
            index = text.index(after: index)
        }
        return nil
    }

    /// Drops a ` #comment` from a plain value (a `#` inside quotes is kept).
    static func stripComment(_ value: String) -> String {
        if value.hasPrefix("#") { return "" }
        guard let first = value.first, first != "\"", first != "'" else { return value }
        guard let range = value.firstRange(of: " #") else { return value }
        return String(value[..<range.lowerBound]).trimmingSpaces()
    }

    static func isBlankOrComment(_ text: String) -> Bool {
        let t = text.trimmingSpaces()
        return t.isEmpty || t.hasPrefix("#")
    }

    static func trimmedRight(_ text: String) -> String {
        var s = Substring(text)
        while let last = s.last, last == " " || last == "\t" || last == "\r" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s = s.dropLast() }
        return String(s)
    }
}
