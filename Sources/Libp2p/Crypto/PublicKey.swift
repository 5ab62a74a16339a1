// edgeswap: libp2p keys and peer IDs (libp2p/specs peer-ids/peer-ids.md).

import ProtobufWire
import BigInt
import Crypto
import Foundation
import _CryptoExtras

/// libp2p key types, as numbered in the `KeyType` enum of peer-ids.md.
public enum KeyType: UInt64, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case rsa = 0
    case ed25519 = 1
    case secp256k1 = 2
    case ecdsa = 3

    public var description: String {
        switch self {
        case .rsa: return "RSA"
        case .ed25519: return "Ed25519"
        case .secp256k1: return "secp256k1"
        case .ecdsa: return "ECDSA"
        }
    }
}

/// The `PublicKey`/`PrivateKey` protobuf envelope: `{ required KeyType Type = 1; required bytes Data = 2; }`.
enum KeyEnvelope {
    /// Decodes the envelope, insisting on libp2p's deterministic encoding. peer-ids.md: "1. Fields must be
    /// minimally encoded. 2. Fields must be encoded in tag order. 3. All fields must be included. 4. No
    /// additional fields may be defined." A non-canonical key would re-encode to different bytes and so
    /// to a different peer ID than its owner computes, so it is refused rather than silently normalised.
    static func decode(_ bytes: [UInt8]) throws(KeyError) -> (KeyType, [UInt8]) {
        let fields: [ProtoWire.Field]
        do throws(ProtoWire.DecodeError) {
            fields = try ProtoWire.fields(bytes)
        } catch {
            throw .malformedProtobuf("\(error)")
        }
        guard fields.count == 2 else {
            throw .nonCanonicalEncoding("expected exactly fields 1 (Type) and 2 (Data), got \(fields.count) fields")
        }
        let typeField = fields[0]
        let dataField = fields[1]
        guard typeField.number == 1, typeField.wireType == .varint else {
            throw .nonCanonicalEncoding("first field must be Type (1, varint)")
        }
        guard dataField.number == 2, dataField.wireType == .lengthDelimited else {
            throw .nonCanonicalEncoding("second field must be Data (2, bytes)")
        }
        guard typeField.isMinimallyEncoded, dataField.isMinimallyEncoded else {
            throw .nonCanonicalEncoding("varints must be minimally encoded")
        }
        guard let type = KeyType(rawValue: typeField.varint) else { throw .unknownKeyType(typeField.varint) }
        return (type, Array(bytes[dataField.bytes]))
    }

    /// `08 type 12 len data`.
    static func encode(type: KeyType, data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 6)
        ProtoWire.appendVarintField(field: 1, type.rawValue, to: &out)
        ProtoWire.appendBytesField(field: 2, data, to: &out)
        return out
    }
}

/// A libp2p public key: the key type, the type-specific `Data` bytes, and a parsed key ready to verify
/// signatures.
///
/// `Data` per type (peer-ids.md § Key Types): Ed25519 the 32 raw bytes; RSA "the DER-encoded PKIX
/// format" (SubjectPublicKeyInfo); secp256k1 "the standard Bitcoin EC encoding" (33-byte compressed or
/// 65-byte SEC1 point); ECDSA an ASN.1 DER SubjectPublicKeyInfo (P-256, P-384 or P-521 here).
/// Signatures: Ed25519 over the message itself; RSA PKCS#1 v1.5 over SHA-256; ECDSA and secp256k1 a
/// DER `{r, s}` over SHA-256 of the message.
///
/// Equality and hashing use the type and `Data` bytes only.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    /// The key type.
    public let type: KeyType
    /// The type-specific key bytes (the protobuf `Data` field).
    public let data: [UInt8]
    private let verifier: Verifier

    /// Smallest and largest RSA moduli accepted. go-libp2p refuses keys under 2048 bits
    /// (`ErrRsaKeyTooSmall`) and over 8192 bits (`maxRsaKeyBits`); the upper bound also caps the cost a
    /// peer can impose with one verification.
    public static let rsaKeyBits = 2048...8192

    private enum Verifier: Sendable {
        case ed25519(Curve25519.Signing.PublicKey)
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case p521(P521.Signing.PublicKey)
        case secp256k1(Secp256k1.Point)
    }

    /// Decodes a serialized libp2p `PublicKey` protobuf (for example Noise's `identity_key`).
    public init(protobuf bytes: some Collection<UInt8>) throws(KeyError) {
        let (type, data) = try KeyEnvelope.decode(Array(bytes))
        try self.init(type: type, data: data)
    }

    /// Builds a key from its type and `Data` bytes, validating them.
    public init(type: KeyType, data: [UInt8]) throws(KeyError) {
        func fail(_ why: String) -> KeyError { .invalidKeyData(type: type.description, reason: why) }
        self.type = type
        self.data = data
        switch type {
        case .ed25519:
            guard data.count == 32 else { throw fail("expected 32 bytes, got \(data.count)") }
            do {
                self.verifier = .ed25519(try Curve25519.Signing.PublicKey(rawRepresentation: data))
            } catch {
                throw fail("\(error)")
            }
        case .rsa:
            let key: _RSA.Signing.PublicKey
            do {
                key = try _RSA.Signing.PublicKey(derRepresentation: data)
            } catch {
                throw fail("not a DER SubjectPublicKeyInfo RSA key of at least 2048 bits (\(error))")
            }
            guard Self.rsaKeyBits.contains(key.keySizeInBits) else {
                throw fail("modulus of \(key.keySizeInBits) bits is outside \(Self.rsaKeyBits)")
            }
            // swift-crypto also accepts PKCS#1 `RSAPublicKey`; libp2p mandates PKIX, and only a canonical
            // encoding keeps the peer ID stable, so the bytes must be exactly what we would write.
            guard [UInt8](key.derRepresentation) == data else {
                throw fail("not the canonical DER PKIX (SubjectPublicKeyInfo) encoding")
            }
            self.verifier = .rsa(key)
        case .ecdsa:
            // The SubjectPublicKeyInfo names its curve, so at most one of these parses.
            if let key = try? P256.Signing.PublicKey(derRepresentation: data) {
                self.verifier = .p256(key)
                guard [UInt8](key.derRepresentation) == data else { throw fail("non-canonical P-256 SPKI") }
            } else if let key = try? P384.Signing.PublicKey(derRepresentation: data) {
                self.verifier = .p384(key)
                guard [UInt8](key.derRepresentation) == data else { throw fail("non-canonical P-384 SPKI") }
            } else if let key = try? P521.Signing.PublicKey(derRepresentation: data) {
                self.verifier = .p521(key)
                guard [UInt8](key.derRepresentation) == data else { throw fail("non-canonical P-521 SPKI") }
            } else {
                throw fail("not a DER SubjectPublicKeyInfo for P-256, P-384 or P-521")
            }
        case .secp256k1:
            self.verifier = .secp256k1(try Secp256k1.Point(sec1: data))
        }
    }

    /// The deterministic `PublicKey` protobuf (what peer IDs hash and Noise sends as `identity_key`).
    public var protobufEncoding: [UInt8] {
        KeyEnvelope.encode(type: self.type, data: self.data)
    }

    /// The peer ID of this key.
    public var peerID: PeerID {
        PeerID(publicKey: self)
    }

    /// Whether `signature` is this key's signature over `message`, under the signing rules of
    /// peer-ids.md for the key type. Malformed signatures are simply invalid.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        switch self.verifier {
        case .ed25519(let key):
            return key.isValidSignature(signature, for: message)
        case .rsa(let key):
            // "hash it with SHA-256 and then sign it using the RSASSA-PKCS1-V1.5-SIGN method"
            return key.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature),
                for: SHA256.hash(data: message),
                padding: .insecurePKCS1v1_5)
        case .p256(let key):
            guard let sig = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA256.hash(data: message))
        case .p384(let key):
            // go-libp2p hashes with SHA-256 whatever the curve (`ECDSAPublicKey.Verify`).
            guard let sig = try? P384.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA256.hash(data: message))
        case .p521(let key):
            guard let sig = try? P521.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: SHA256.hash(data: message))
        case .secp256k1(let point):
            return Secp256k1.isValidSignature(signature, for: message, publicKey: point)
        }
    }

    public var description: String {
        "\(self.type) public key \(self.peerID)"
    }

    public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool {
        lhs.type == rhs.type && lhs.data == rhs.data
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.type)
        hasher.combine(self.data)
    }
}
