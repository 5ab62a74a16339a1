// edgeswap: libp2p keys (libp2p/specs peer-ids/peer-ids.md).

import BigInt
import Crypto
import Foundation
import _CryptoExtras

/// A libp2p private key: our own identity, used to sign (for example the Noise static key).
///
/// `Data` forms accepted (peer-ids.md § Key Types, and what go-libp2p writes):
/// - Ed25519: "`[private key bytes][public key bytes]` (64 bytes)", or the older 96-byte
///   `[private key][public key][public key]`, whose two public key copies must match. Written back as 64 bytes.
/// - RSA: "a PKCS1 key using ASN.1 DER" (`RSAPrivateKey`), 2048 to 8192 bits.
/// - ECDSA: P-256 as a SEC1 `ECPrivateKey` DER, as go-libp2p's `x509.MarshalECPrivateKey` stores it
///   (PKCS#8 is also read).
/// - secp256k1: the 32-byte big-endian scalar. Signing with it is not constant time (see `Secp256k1`).
///
/// `data` keeps the bytes as given (except the 96-byte Ed25519 form), so re-encoding a key read from a
/// file is byte-identical.
public struct PrivateKey: Sendable {
    /// The key type.
    public let type: KeyType
    /// The type-specific private key bytes (the protobuf `Data` field).
    public let data: [UInt8]
    /// The matching public key.
    public let publicKey: PublicKey
    private let signer: Signer

    private enum Signer: Sendable {
        case ed25519(Curve25519.Signing.PrivateKey)
        case rsa(_RSA.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
        case secp256k1(BigUInt)
    }

    /// Decodes a serialized libp2p `PrivateKey` protobuf (the on-disk form, and `ipfs key export` output).
    public init(protobuf bytes: some Collection<UInt8>) throws(KeyError) {
        let (type, data) = try KeyEnvelope.decode(Array(bytes))
        try self.init(type: type, data: data)
    }

    /// Builds a key from its type and `Data` bytes, validating them and deriving the public key.
    public init(type: KeyType, data: [UInt8]) throws(KeyError) {
        func fail(_ why: String) -> KeyError { .invalidKeyData(type: type.description, reason: why) }
        self.type = type
        switch type {
        case .ed25519:
            let seed: [UInt8]
            let storedPublic: [UInt8]
            switch data.count {
            case 64:
                seed = Array(data[0..<32])
                storedPublic = Array(data[32..<64])
            case 96:
                // peer-ids.md: "compare the two public key strings (32 bytes each) and verify they are
                // identical ... If they do not match, reject or error out because the byte array is invalid."
                guard data[32..<64] == data[64..<96] else { throw fail("the two public key copies differ") }
                seed = Array(data[0..<32])
                storedPublic = Array(data[32..<64])
            default:
                throw fail("expected 64 (or legacy 96) bytes, got \(data.count)")
            }
            let key: Curve25519.Signing.PrivateKey
            do {
                key = try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
            } catch {
                throw fail("\(error)")
            }
            guard [UInt8](key.publicKey.rawRepresentation) == storedPublic else {
                throw fail("the stored public key does not belong to the private key")
            }
            self.data = seed + storedPublic
            self.signer = .ed25519(key)
            self.publicKey = try PublicKey(type: .ed25519, data: storedPublic)
        case .rsa:
            let key: _RSA.Signing.PrivateKey
            do {
                key = try _RSA.Signing.PrivateKey(derRepresentation: data)
            } catch {
                throw fail("not a DER PKCS#1 RSA private key of at least 2048 bits (\(error))")
            }
            guard PublicKey.rsaKeyBits.contains(key.keySizeInBits) else {
                throw fail("modulus of \(key.keySizeInBits) bits is outside \(PublicKey.rsaKeyBits)")
            }
            self.data = data
            self.signer = .rsa(key)
            self.publicKey = try PublicKey(type: .rsa, data: [UInt8](key.publicKey.derRepresentation))
        case .ecdsa:
            let key: P256.Signing.PrivateKey
            do {
                key = try P256.Signing.PrivateKey(derRepresentation: data)
            } catch {
                throw fail("only P-256 SEC1/PKCS#8 DER private keys are supported (\(error))")
            }
            self.data = data
            self.signer = .p256(key)
            self.publicKey = try PublicKey(type: .ecdsa, data: [UInt8](key.publicKey.derRepresentation))
        case .secp256k1:
            guard data.count == 32 else { throw fail("expected a 32-byte scalar, got \(data.count) bytes") }
            let d = data.withUnsafeBytes { BigUInt($0) }
            guard !d.isZero, d < Secp256k1.n, let point = Secp256k1.multiplyGenerator(d) else {
                throw fail("scalar is not in [1, n-1]")
            }
            self.data = data
            self.signer = .secp256k1(d)
            self.publicKey = try PublicKey(type: .secp256k1, data: point.compressed)
        }
    }

    /// The deterministic `PrivateKey` protobuf (the key file format).
    public var protobufEncoding: [UInt8] {
        KeyEnvelope.encode(type: self.type, data: self.data)
    }

    /// The peer ID of this identity.
    public var peerID: PeerID {
        self.publicKey.peerID
    }

    /// Signs `message` under the peer-ids.md rules for the key type (see `PublicKey.isValidSignature`).
    public func sign(_ message: [UInt8]) throws(KeyError) -> [UInt8] {
        do {
            switch self.signer {
            case .ed25519(let key):
                return [UInt8](try key.signature(for: message))
            case .rsa(let key):
                return [UInt8](try key.signature(for: SHA256.hash(data: message), padding: .insecurePKCS1v1_5)
                    .rawRepresentation)
            case .p256(let key):
                return [UInt8](try key.signature(for: SHA256.hash(data: message)).derRepresentation)
            case .secp256k1(let d):
                return Secp256k1.sign(message, privateScalar: d)
            }
        } catch {
            throw .signingFailed("\(error)")
        }
    }

    // MARK: - Generating identities

    /// A fresh Ed25519 identity (the libp2p default key type).
    public static func generateEd25519() -> PrivateKey {
        let key = Curve25519.Signing.PrivateKey()
        let data = [UInt8](key.rawRepresentation) + [UInt8](key.publicKey.rawRepresentation)
        // A key swift-crypto just made is valid by construction.
        return try! PrivateKey(type: .ed25519, data: data)
    }

    /// A fresh ECDSA P-256 identity, stored as go-libp2p stores it (SEC1 DER).
    public static func generateECDSAP256() -> PrivateKey {
        let key = P256.Signing.PrivateKey()
        let data = DER.sec1P256PrivateKey(
            scalar: [UInt8](key.rawRepresentation), x963PublicKey: [UInt8](key.publicKey.x963Representation))
        return try! PrivateKey(type: .ecdsa, data: data)
    }

    /// A fresh RSA identity of `bits` bits (2048 to 8192), stored as PKCS#1 DER.
    public static func generateRSA(bits: Int = 2048) throws(KeyError) -> PrivateKey {
        guard PublicKey.rsaKeyBits.contains(bits) else {
            throw .unsupportedKeyType("RSA keys must have 2048 to 8192 bits, not \(bits)")
        }
        do {
            let key = try _RSA.Signing.PrivateKey(keySize: .init(bitCount: bits))
            return try PrivateKey(type: .rsa, data: [UInt8](key.derRepresentation))
        } catch let error as KeyError {
            throw error
        } catch {
            throw .signingFailed("RSA key generation failed: \(error)")
        }
    }
}
