// edgeswap: libp2p peer IDs (libp2p/specs peer-ids/peer-ids.md § Peer Ids).

import Crypto
import Multiformats

/// A libp2p peer ID: the multihash of a serialized `PublicKey` protobuf.
///
/// peer-ids.md: "keys that serialize to at most 42 bytes must be hashed using the "identity" multihash
/// codec", longer ones (RSA, ECDSA) "using sha256 multihash". So Ed25519 and secp256k1 peer IDs embed
/// their key (`12D3KooW…`, `16Uiu2…`), RSA and ECDSA ones are a SHA-256 (`Qm…`).
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    /// The multihash (identity or sha2-256).
    public let multihash: Multihash

    /// Serialized keys up to this many bytes are embedded with the identity multihash.
    public static let maximumInlineKeyLength = 42

    /// The peer ID of `publicKey`.
    public init(publicKey: PublicKey) {
        let encoded = publicKey.protobufEncoding
        if encoded.count <= Self.maximumInlineKeyLength {
            self.multihash = Multihash(code: Multicodec.identity, digest: encoded)
        } else {
            let digest = SHA256.hash(data: encoded).withUnsafeBytes { Array($0) }
            self.multihash = Multihash(code: Multicodec.sha2_256, digest: digest)
        }
    }

    /// Wraps a multihash, checking it is one a peer ID can be: sha2-256 with a 32-byte digest, or identity
    /// over a valid `PublicKey` protobuf of at most 42 bytes.
    public init(multihash: Multihash) throws(KeyError) {
        switch multihash.code {
        case Multicodec.sha2_256:
            guard multihash.digest.count == 32 else {
                throw .invalidPeerID("sha2-256 digest of \(multihash.digest.count) bytes, expected 32")
            }
        case Multicodec.identity:
            guard multihash.digest.count <= Self.maximumInlineKeyLength else {
                throw .invalidPeerID("identity multihash of \(multihash.digest.count) bytes (at most 42 allowed)")
            }
            do throws(KeyError) {
                _ = try PublicKey(protobuf: multihash.digest)
            } catch {
                throw .invalidPeerID("identity multihash does not hold a valid public key: \(error)")
            }
        default:
            throw .invalidPeerID("multihash code 0x\(String(multihash.code, radix: 16)) is not identity or sha2-256")
        }
        self.multihash = multihash
    }

    /// Parses the binary form (a multihash).
    public init(bytes: some Collection<UInt8>) throws(KeyError) {
        let multihash: Multihash
        do throws(MultiformatsError) {
            multihash = try Multihash(bytes: bytes)
        } catch {
            throw .invalidPeerID("\(error)")
        }
        try self.init(multihash: multihash)
    }

    /// Parses either text form. peer-ids.md § Decoding: "If it starts with `1` or `Qm`, it's a bare
    /// base58btc encoded multihash ... If it starts with a multibase prefix, it's a CIDv1 CID ... verify
    /// that the CIDs multicodec is `libp2p-key`."
    public init(string: some StringProtocol) throws(KeyError) {
        // "1…" (identity multihash, code 0x00) and "Qm…" (sha2-256) are bare base58btc; so is "12D3KooW…".
        if string.hasPrefix("1") || string.hasPrefix("Qm") {
            let raw: [UInt8]
            do throws(MultiformatsError) {
                raw = try Multibase.base58btc.decodeWithoutPrefix(string)
            } catch {
                throw .invalidPeerID("bad base58btc: \(error)")
            }
            try self.init(bytes: raw)
            return
        }
        let cid: CID
        do throws(MultiformatsError) {
            let (_, raw) = try Multibase.decode(string)
            cid = try CID(bytes: raw)
        } catch {
            throw .invalidPeerID("neither a base58btc multihash nor a CID: \(error)")
        }
        guard cid.version == .v1 else { throw .invalidPeerID("peer ID CIDs must be CIDv1") }
        guard cid.codec == Multicodec.libp2pKey else {
            throw .invalidPeerID("CID codec 0x\(String(cid.codec, radix: 16)) is not libp2p-key (0x72)")
        }
        try self.init(multihash: cid.multihash)
    }

    /// The binary form: the multihash bytes.
    public var bytes: [UInt8] {
        self.multihash.bytes
    }

    /// The legacy, still default text form: the bare base58btc multihash ("Implementations SHOULD display
    /// peer IDs using the first (raw base58btc encoded multihash) format").
    public var description: String {
        Multibase.base58btc.encodeWithoutPrefix(self.multihash.bytes)
    }

    /// The CIDv1 `libp2p-key` form in base32 (`bafz…`).
    public var cidString: String {
        self.cid.description
    }

    /// The CIDv1 with codec `libp2p-key` (0x72).
    public var cid: CID {
        CID(codec: Multicodec.libp2pKey, multihash: self.multihash)
    }

    /// The public key, when the peer ID embeds it (identity multihash); nil for sha2-256 peer IDs.
    public var embeddedPublicKey: PublicKey? {
        guard self.multihash.code == Multicodec.identity else { return nil }
        return try? PublicKey(protobuf: self.multihash.digest)
    }

    /// Whether `publicKey` is the key this peer ID names.
    public func matches(_ publicKey: PublicKey) -> Bool {
        PeerID(publicKey: publicKey) == self
    }
}
