// edgeswap: the libp2p Noise handshake payload (libp2p/specs noise/README.md § The libp2p Handshake Payload).

import ProtobufWire
import Crypto

/// The decrypted payload of Noise messages 2 and 3:
///
/// ```protobuf
/// message NoiseExtensions {
///     repeated bytes webtransport_certhashes = 1;
///     repeated string stream_muxers = 2;
/// }
/// message NoiseHandshakePayload {
///   optional bytes identity_key = 1;
///   optional bytes identity_sig = 2;
///   optional NoiseExtensions extensions = 4;
/// }
/// ```
///
/// Extensions are neither sent nor interpreted. noise/README.md: "The initiator sends its extensions in
/// message 3 (closing message), and the responder sends theirs in message 2" — sending none is allowed,
/// and per connections/inlined-muxer-negotiation.md a peer that receives no `stream_muxers` falls back to
/// multistream-select for the muxer, which edgeswap always runs. Received extensions are skipped
/// unread ("The noise-libp2p implementation itself MUST NOT process the early data payload in any way
/// during the handshake, except to produce and validate the signature").
struct NoiseHandshakePayload: Sendable, Equatable {
    /// The sender's serialized libp2p `PublicKey`.
    var identityKey: [UInt8]
    /// The signature over `"noise-libp2p-static-key:" ‖ static X25519 public key`.
    var identitySignature: [UInt8]

    /// The prefix of the signed data.
    static let signaturePrefix = Array("noise-libp2p-static-key:".utf8)

    /// The bytes signed for a Noise static public key: "the UTF-8 string `noise-libp2p-static-key:`,
    /// followed by the Noise static public key".
    static func signedData(staticPublicKey: some Collection<UInt8>) -> [UInt8] {
        signaturePrefix + Array(staticPublicKey)
    }

    init(identityKey: [UInt8], identitySignature: [UInt8]) {
        self.identityKey = identityKey
        self.identitySignature = identitySignature
    }

    /// Decodes the protobuf. Unknown fields and `extensions` are skipped (proto2 semantics); a repeated
    /// optional field keeps its last value, as protobuf parsers do.
    init(decoding bytes: [UInt8]) throws(NoiseError) {
        let fields: [ProtoWire.Field]
        do throws(ProtoWire.DecodeError) {
            fields = try ProtoWire.fields(bytes)
        } catch {
            throw .invalidHandshakePayload("\(error)")
        }
        var key: [UInt8]?
        var signature: [UInt8]?
        for field in fields {
            switch field.number {
            case 1:
                guard field.wireType == .lengthDelimited else {
                    throw .invalidHandshakePayload("identity_key must be bytes")
                }
                key = Array(bytes[field.bytes])
            case 2:
                guard field.wireType == .lengthDelimited else {
                    throw .invalidHandshakePayload("identity_sig must be bytes")
                }
                signature = Array(bytes[field.bytes])
            case 4:
                guard field.wireType == .lengthDelimited else {
                    throw .invalidHandshakePayload("extensions must be a message")
                }
            default:
                continue
            }
        }
        guard let key else { throw .missingIdentityKey }
        guard let signature else { throw .missingIdentitySignature }
        self.identityKey = key
        self.identitySignature = signature
    }

    /// `0a len identity_key 12 len identity_sig`.
    var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(self.identityKey.count + self.identitySignature.count + 8)
        ProtoWire.appendBytesField(field: 1, self.identityKey, to: &out)
        ProtoWire.appendBytesField(field: 2, self.identitySignature, to: &out)
        return out
    }

    /// Checks the payload against the remote static key the handshake authenticated, and returns the
    /// remote identity. noise/README.md: "peers MUST decode the public key from the `identity_key` field
    /// into a usable form. The key MUST then be used to validate the `identity_sig` field against the
    /// static Noise key received in the handshake."
    func verify(remoteStaticKey: [UInt8], acceptedKeyTypes: Set<KeyType> = Set(KeyType.allCases))
        throws(NoiseError) -> PublicKey
    {
        let key: PublicKey
        do throws(KeyError) {
            key = try PublicKey(protobuf: self.identityKey)
        } catch {
            throw .invalidIdentityKey(error)
        }
        guard acceptedKeyTypes.contains(key.type) else {
            throw .invalidIdentityKey(.unsupportedKeyType("\(key.type) identities are not accepted"))
        }
        guard key.isValidSignature(self.identitySignature, for: Self.signedData(staticPublicKey: remoteStaticKey))
        else { throw .invalidIdentitySignature }
        return key
    }
}

/// Our side of the libp2p Noise handshake: the identity key, the Noise static X25519 key, and the
/// handshake payload (identity key + signature over the static key), computed once.
///
/// noise/README.md § Static Key Authentication: "implementations MAY generate a new static Noise keypair
/// for each new session. Alternatively, a single static keypair may be generated when noise-libp2p is
/// initialized and used for all sessions. Implementations SHOULD NOT store the static Noise key to disk."
/// edgeswap takes the second option: build one `NoiseIdentity` per process (never persisted) and share it
/// across connections, so the identity signature (an RSA signature costs milliseconds) is made once, not
/// per handshake. Forward secrecy is unaffected: it comes from the per-handshake ephemeral keys.
public struct NoiseIdentity: Sendable {
    /// Our libp2p identity (public half).
    public let publicKey: PublicKey
    /// Our peer ID.
    public let peerID: PeerID
    /// The Noise static key pair.
    let staticKey: Curve25519.KeyAgreement.PrivateKey
    /// The encoded `NoiseHandshakePayload` sent in message 2 (responder) or 3 (initiator).
    let payload: [UInt8]

    /// Signs a Noise static key (a fresh one unless given) with `identityKey`.
    public init(identityKey: PrivateKey, staticKey: Curve25519.KeyAgreement.PrivateKey = .init()) throws(KeyError) {
        let signature = try identityKey.sign(
            NoiseHandshakePayload.signedData(staticPublicKey: staticKey.publicKey.rawRepresentation))
        self.init(
            publicKey: identityKey.publicKey, staticKey: staticKey,
            payload: NoiseHandshakePayload(
                identityKey: identityKey.publicKey.protobufEncoding, identitySignature: signature))
    }

    /// An identity with an arbitrary payload (tests: forged signatures, foreign keys).
    init(publicKey: PublicKey, staticKey: Curve25519.KeyAgreement.PrivateKey, payload: NoiseHandshakePayload) {
        self.publicKey = publicKey
        self.peerID = publicKey.peerID
        self.staticKey = staticKey
        self.payload = payload.encoded
    }

    /// The static X25519 public key.
    public var staticPublicKey: [UInt8] {
        Array(self.staticKey.publicKey.rawRepresentation)
    }
}
