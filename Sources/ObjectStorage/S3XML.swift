/// A small XML reader made for S3's response bodies (ListBucketResult, Error,
/// InitiateMultipartUploadResult, CompleteMultipartUploadResult): flat documents of elements holding text.
///
/// It reports the text of every element that holds only text, with the names of its enclosing elements, and
/// ignores attributes, the XML declaration, comments and processing instructions. Entity references are
/// decoded (S3 keys arrive XML-escaped: "&amp;", "&lt;", "&#13;" ...). It does not validate beyond what the
/// S3 answers need, but every malformed input ends in a specific `S3XMLError`, never a crash or a hang: the
/// scan moves forward on every step and the nesting depth is capped.
enum S3XML {
    /// Deepest nesting accepted (S3 bodies nest three levels).
    static let maxDepth = 32

    /// Calls `visit(path, text)` for every element that holds only text (and for empty elements, with ""),
    /// `path` being the element names from the root down to it.
    static func parse(_ bytes: [UInt8], visit: (_ path: [Substring], _ text: String) -> Void) throws(S3XMLError) {
        // Invalid UTF-8 becomes U+FFFD here, once, rather than failing part-way through a key.
        let utf8 = Array(String(decoding: bytes, as: UTF8.self).utf8)
        var stack: [Substring] = []
        var textStart: Int?
        var sawChild = false
        var index = 0
        let count = utf8.count

        func find(_ needle: [UInt8], from start: Int) -> Int? {
            guard needle.count <= count else { return nil }
            var i = start
            while i + needle.count <= count {
                var matched = true
                for j in 0..<needle.count where utf8[i + j] != needle[j] {
                    matched = false
                    break
                }
                if matched { return i }
                i += 1
            }
            return nil
        }

        while index < count {
            guard utf8[index] == UInt8(ascii: "<") else {
                if textStart == nil { textStart = index }
                index += 1
                continue
            }
            guard index + 1 < count else { throw .unexpectedEnd }
            let next = utf8[index + 1]
            if next == UInt8(ascii: "?") {
                guard let end = find(Array("?>".utf8), from: index + 2) else { throw .unterminated("processing instruction") }
                index = end + 2
                continue
            }
            if next == UInt8(ascii: "!") {
                if let end = find(Array("-->".utf8), from: index + 2), Array(utf8[index..<min(count, index + 4)]) == Array("<!--".utf8) {
                    index = end + 3
                    continue
                }
                if Array(utf8[index..<min(count, index + 9)]) == Array("<![CDATA[".utf8) {
                    throw .unsupported("CDATA section")
                }
                guard let end = find([UInt8(ascii: ">")], from: index + 2) else { throw .unterminated("declaration") }
                index = end + 1
                continue
            }
            guard let close = find([UInt8(ascii: ">")], from: index + 1) else { throw .unterminated("tag") }
            if next == UInt8(ascii: "/") {
                let name = tagName(utf8, from: index + 2, to: close)
                guard let open = stack.popLast() else { throw .unbalanced("closing </\(name)> with nothing open") }
                guard open == name else { throw .unbalanced("closing </\(name)> inside <\(open)>") }
                if !sawChild {
                    let raw = textStart.map { String(decoding: utf8[$0..<index], as: UTF8.self) } ?? ""
                    visit(stack + [open], try decodeEntities(raw))
                }
                sawChild = true
                textStart = nil
                index = close + 1
                continue
            }
            let selfClosing = utf8[close - 1] == UInt8(ascii: "/")
            let name = tagName(utf8, from: index + 1, to: selfClosing ? close - 1 : close)
            guard !name.isEmpty else { throw .malformed("empty tag name") }
            if selfClosing {
                visit(stack + [name], "")
                sawChild = true
            } else {
                stack.append(name)
                guard stack.count <= maxDepth else { throw .tooDeep }
                sawChild = false
            }
            textStart = nil
            index = close + 1
        }
        guard stack.isEmpty else { throw .unbalanced("<\(stack.last!)> is never closed") }
    }

    private static func tagName(_ utf8: [UInt8], from start: Int, to end: Int) -> Substring {
        var stop = start
        while stop < end {
            let b = utf8[stop]
            if b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\n") || b == UInt8(ascii: "\r")
                || b == UInt8(ascii: "/") { break }
            stop += 1
        }
        return Substring(String(decoding: utf8[start..<max(start, stop)], as: UTF8.self))
    }

    /// Replaces the five predefined entities and character references (XML 1.0 section 4.1:
    /// "&#" [0-9]+ ";" | "&#x" [0-9a-fA-F]+ ";").
    static func decodeEntities(_ raw: String) throws(S3XMLError) -> String {
        guard raw.contains("&") else { return raw }
        var out = ""
        var rest = Substring(raw)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { throw .badEntity(String(rest[amp...].prefix(12))) }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                var value: UInt32?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    value = UInt32(entity.dropFirst(2), radix: 16)
                } else if entity.hasPrefix("#") {
                    value = UInt32(entity.dropFirst(), radix: 10)
                }
                guard let value, let scalar = Unicode.Scalar(value) else { throw .badEntity(String(entity.prefix(12))) }
                out.unicodeScalars.append(scalar)
            }
            rest = rest[rest.index(after: semi)...]
        }
        out += rest
        return out
    }
}

/// Why an S3 XML body could not be read.
public enum S3XMLError: Error, Equatable, Sendable, CustomStringConvertible {
    case unexpectedEnd
    case unterminated(String)
    case unbalanced(String)
    case malformed(String)
    case unsupported(String)
    case badEntity(String)
    case tooDeep
    /// An element the answer must have is missing.
    case missing(String)

    public var description: String {
        switch self {
        case .unexpectedEnd: return "XML ends inside a tag"
        case .unterminated(let what): return "unterminated XML \(what)"
        case .unbalanced(let why): return "unbalanced XML: \(why)"
        case .malformed(let why): return "malformed XML: \(why)"
        case .unsupported(let what): return "unsupported XML: \(what)"
        case .badEntity(let text): return "bad XML entity reference \(text)"
        case .tooDeep: return "XML nested deeper than \(S3XML.maxDepth) levels"
        case .missing(let name): return "XML answer has no <\(name)>"
        }
    }
}

/// One page of a ListObjectsV2 answer.
struct ListObjectsV2Page: Equatable {
    var keys: [String] = []
    var isTruncated = false
    var nextContinuationToken: String?

    /// Reads `<ListBucketResult>`: "Contents/Key", "IsTruncated", "NextContinuationToken".
    static func parse(_ body: [UInt8]) throws(S3XMLError) -> ListObjectsV2Page {
        var page = ListObjectsV2Page()
        var sawRoot = false
        try S3XML.parse(body) { path, text in
            guard path.first == "ListBucketResult" else { return }
            sawRoot = true
            if path.count == 3 && path[1] == "Contents" && path[2] == "Key" {
                page.keys.append(text)
            } else if path.count == 2 && path[1] == "IsTruncated" {
                page.isTruncated = text == "true"
            } else if path.count == 2 && path[1] == "NextContinuationToken" {
                page.nextContinuationToken = text
            }
        }
        guard sawRoot else { throw .missing("ListBucketResult") }
        return page
    }
}

/// The `<Error>` body of a failed S3 request: "Code" and "Message".
struct S3ErrorBody: Equatable {
    var code: String?
    var message: String?

    /// Nil if `body` is not an S3 `<Error>` document.
    static func parse(_ body: [UInt8]) -> S3ErrorBody? {
        var result = S3ErrorBody()
        var sawError = false
        do {
            try S3XML.parse(body) { path, text in
                guard path.count == 2, path[0] == "Error" else { return }
                sawError = true
                if path[1] == "Code" { result.code = text }
                if path[1] == "Message" { result.message = text }
            }
        } catch {
            return nil
        }
        return sawError ? result : nil
    }
}

/// The single text element `root/name` of an S3 answer (UploadId of InitiateMultipartUploadResult).
func s3XMLValue(_ body: [UInt8], root: String, name: String) throws(S3XMLError) -> String {
    var value: String?
    try S3XML.parse(body) { path, text in
        if path.count == 2 && path[0] == root && path[1] == name { value = text }
    }
    guard let value else { throw .missing("\(root)/\(name)") }
    return value
}

/// Escapes text for an XML element body (the ETags of CompleteMultipartUpload carry quotes).
func xmlEscape(_ text: String) -> String {
    var out = ""
    for ch in text {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(ch)
        }
    }
    return out
}
