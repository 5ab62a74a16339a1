/// One RESP2 reply, as the server sent it.
///
/// RESP ("Redis serialization protocol specification"): "Simple strings", "Simple Errors", "Integers",
/// "Bulk strings", "Arrays", and the null bulk string / null array (both `null` here).
public enum RedisValue: Sendable, Hashable {
    /// `+OK\r\n`: a status line (never contains CR or LF).
    case simpleString(String)
    /// `-ERR message\r\n`: an error reply. `RedisClient.send` throws `RedisError.server` for a top-level one;
    /// inside arrays and pipelines it stays a value.
    case error(String)
    /// `:42\r\n`
    case integer(Int64)
    /// `$3\r\nabc\r\n`: binary-safe bytes.
    case bulkString([UInt8])
    /// `$-1\r\n` or `*-1\r\n`: the key or element does not exist.
    case null
    /// `*2\r\n...`: nested replies.
    case array([RedisValue])

    /// The bytes of a bulk string or the UTF-8 of a simple string; nil for the other cases.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): bytes
        case .simpleString(let text): Array(text.utf8)
        default: nil
        }
    }

    /// A bulk or simple string decoded as UTF-8 (invalid sequences repaired); nil for the other cases.
    public var string: String? {
        switch self {
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        case .simpleString(let text): text
        default: nil
        }
    }

    /// The integer of an integer reply; nil for the other cases.
    public var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The elements of an array reply; nil for the other cases.
    public var array: [RedisValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    /// True for `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension RedisValue: CustomStringConvertible {
    /// A short, log-safe rendering: bulk strings show their length and at most 32 bytes.
    public var description: String {
        switch self {
        case .simpleString(let text): return "+\(text)"
        case .error(let message): return "-\(message)"
        case .integer(let value): return ":\(value)"
        case .null: return "(null)"
        case .array(let values): return "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .bulkString(let bytes):
            let shown = bytes.prefix(32)
            let printable = shown.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
            let hexDigits = Array("0123456789abcdef")
            let body = printable
                ? "\"" + String(decoding: shown, as: UTF8.self) + "\""
                : String(shown.flatMap { [hexDigits[Int($0 >> 4)], hexDigits[Int($0 & 0x0F)]] })
            return "$\(bytes.count)(\(body)\(bytes.count > 32 ? "..." : ""))"
        }
    }
}

/// One argument of a command: arbitrary bytes (RESP bulk strings are binary-safe).
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    /// The bytes sent to the server.
    public var bytes: [UInt8]

    /// The argument `bytes`, verbatim.
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The UTF-8 of `string`.
    public init(_ string: String) { bytes = Array(string.utf8) }

    /// The decimal text of `value` (how Redis expects counts, scores and milliseconds).
    public init<Value: BinaryInteger>(_ value: Value) { bytes = Array(String(value).utf8) }

    /// `"GET"`: the UTF-8 of the literal.
    public init(stringLiteral value: String) { self.init(value) }

    /// `100`: the decimal text of the literal.
    public init(integerLiteral value: Int) { self.init(value) }
}
