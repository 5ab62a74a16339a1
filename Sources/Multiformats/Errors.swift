/// Why a multiformats value could not be parsed. Each case names what was wrong so that the caller
/// can log a precise reason (and tests can assert on it).
public enum MultiformatsError: Error, Equatable, Sendable, CustomStringConvertible {
    case varint(Varint.DecodeError)
    case unknownMultibasePrefix(Character)
    case invalidCharacter(base: String, character: Character)
    /// Text made of valid characters that is still not a canonical encoding (bad length, padding or
    /// non-zero leftover bits).
    case invalidEncoding(base: String, reason: String)
    case emptyInput
    case truncated(what: String)
    case trailingBytes(what: String, count: Int)
    case digestLengthMismatch(code: UInt64, expected: Int, actual: Int)
    case unsupportedHashFunction(UInt64)
    case cidTooLong(Int)
    case invalidCIDv0(String)
    case unsupportedCIDVersion(UInt64)
    case invalidMultiaddr(String)

    public var description: String {
        switch self {
        case .varint(let e): return "bad varint: \(e)"
        case .unknownMultibasePrefix(let c): return "unknown multibase prefix '\(c)'"
        case .invalidCharacter(let base, let c): return "character '\(c)' is not valid in \(base)"
        case .invalidEncoding(let base, let reason): return "invalid \(base): \(reason)"
        case .emptyInput: return "empty input"
        case .truncated(let what): return "truncated \(what)"
        case .trailingBytes(let what, let n): return "\(n) trailing bytes after \(what)"
        case .digestLengthMismatch(let code, let expected, let actual):
            return "multihash 0x\(String(code, radix: 16)) digest must be \(expected) bytes, got \(actual)"
        case .unsupportedHashFunction(let code): return "unsupported hash function 0x\(String(code, radix: 16))"
        case .cidTooLong(let n): return "CID of \(n) bytes is over the 168-byte limit"
        case .invalidCIDv0(let why): return "invalid CIDv0: \(why)"
        case .unsupportedCIDVersion(let v): return "unsupported CID version \(v)"
        case .invalidMultiaddr(let why): return "invalid multiaddr: \(why)"
        }
    }
}
