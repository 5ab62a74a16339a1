// edgeswap: libp2p keys and peer IDs.

/// Why a libp2p key, signature or peer ID could not be used. Each case names what was wrong so that the
/// caller can log a precise reason and tests can assert on it.
public enum KeyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The `PublicKey`/`PrivateKey` protobuf is malformed (truncated, bad varint, wrong wire type).
    case malformedProtobuf(String)
    /// The protobuf is well formed but not in libp2p's deterministic form (peer-ids.md: "Fields must be
    /// minimally encoded", "encoded in tag order", "All fields must be included", "No additional fields").
    case nonCanonicalEncoding(String)
    /// The `Type` field names no key type libp2p defines.
    case unknownKeyType(UInt64)
    /// The key type is valid but this operation does not support it (for example, an identity key type
    /// edgeswap cannot sign with).
    case unsupportedKeyType(String)
    /// The `Data` field does not hold a valid key of the declared type.
    case invalidKeyData(type: String, reason: String)
    /// A signature could not be produced.
    case signingFailed(String)
    /// A peer ID string or multihash is not valid.
    case invalidPeerID(String)
    /// A key file (raw protobuf or Hoverboard `PEER_ID_JSON`) could not be read or is inconsistent.
    case invalidKeyFile(String)

    public var description: String {
        switch self {
        case .malformedProtobuf(let why): return "malformed key protobuf: \(why)"
        case .nonCanonicalEncoding(let why): return "key protobuf is not deterministic: \(why)"
        case .unknownKeyType(let type): return "unknown libp2p key type \(type)"
        case .unsupportedKeyType(let why): return "unsupported key type: \(why)"
        case .invalidKeyData(let type, let why): return "invalid \(type) key: \(why)"
        case .signingFailed(let why): return "signing failed: \(why)"
        case .invalidPeerID(let why): return "invalid peer ID: \(why)"
        case .invalidKeyFile(let why): return "invalid key file: \(why)"
        }
    }
}
