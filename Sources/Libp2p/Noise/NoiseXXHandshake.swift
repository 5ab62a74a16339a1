// edgeswap: the Noise XX handshake pattern with 25519 (noiseprotocol.org/noise.html § 5.3, § 7.5),
// independent of libp2p's payloads and framing so it can be checked against the cacophony/snow vectors.

import Crypto

/// Which side of a Noise handshake this is.
public enum NoiseRole: Sendable, Hashable {
    /// The dialer: writes messages 1 and 3, sends with the first split key.
    case initiator
    /// The listener: writes message 2, sends with the second split key.
    case responder
}

/// Noise `HandshakeState` for exactly `Noise_XX_25519_ChaChaPoly_SHA256`:
///
/// ```
/// XX:
///   -> e
///   <- e, ee, s, es
///   -> s, se
/// ```
///
/// `writeMessage` and `readMessage` take and return whole Noise messages (no libp2p framing) with
/// arbitrary payloads. Misuse (writing out of turn) is a programming error and traps; anything the
/// remote sends that is wrong is a thrown `NoiseError`.
struct NoiseXXHandshake: Sendable {
    /// The protocol name; 32 bytes, so `h` starts as the name itself (noise/README.md § Noise Protocol Name).
    static let protocolName = "Noise_XX_25519_ChaChaPoly_SHA256"
    static let dhLength = 32
    static let tagLength = 16

    let role: NoiseRole
    private var symmetric: NoiseSymmetricState
    private let staticKey: Curve25519.KeyAgreement.PrivateKey
    private let ephemeralKey: Curve25519.KeyAgreement.PrivateKey
    private var remoteEphemeral: Curve25519.KeyAgreement.PublicKey?
    /// The remote static public key, once message 2 (initiator) or 3 (responder) has been read.
    private(set) var remoteStatic: Curve25519.KeyAgreement.PublicKey?
    /// How many handshake messages have been written or read (0...3).
    private(set) var messageCount = 0

    /// Noise `Initialize(handshake_pattern, initiator, prologue, s, e, rs, re)`: InitializeSymmetric, then
    /// MixHash(prologue). XX has no pre-messages.
    init(
        role: NoiseRole, staticKey: Curve25519.KeyAgreement.PrivateKey,
        ephemeralKey: Curve25519.KeyAgreement.PrivateKey = .init(), prologue: [UInt8] = []
    ) {
        self.role = role
        self.staticKey = staticKey
        self.ephemeralKey = ephemeralKey
        self.symmetric = NoiseSymmetricState(protocolName: Self.protocolName)
        self.symmetric.mixHash(prologue)
    }

    var isComplete: Bool { self.messageCount == 3 }

    /// Whether the next message is ours to write.
    var isOurTurn: Bool {
        switch self.role {
        case .initiator: return self.messageCount == 0 || self.messageCount == 2
        case .responder: return self.messageCount == 1
        }
    }

    /// The handshake hash `h` (equal on both sides after the handshake; usable for channel binding).
    var handshakeHash: [UInt8] { self.symmetric.handshakeHash }

    /// The smallest valid size of message 1, 2 or 3 with an empty payload.
    static func minimumLength(ofMessage number: Int) -> Int {
        switch number {
        case 1: return dhLength  // e, payload in clear
        case 2: return dhLength + dhLength + tagLength + tagLength  // e, encrypted s, payload tag
        default: return dhLength + tagLength + tagLength  // encrypted s, payload tag
        }
    }

    private func dh(_ key: Curve25519.KeyAgreement.PrivateKey, _ remote: Curve25519.KeyAgreement.PublicKey?)
        throws(NoiseError) -> [UInt8]
    {
        guard let remote else { preconditionFailure("DH before the remote key is known") }
        // swift-crypto refuses low-order points (all-zero output); treat that as a bad remote key.
        guard let secret = try? key.sharedSecretFromKeyAgreement(with: remote) else { throw .invalidRemoteKey }
        return secret.withUnsafeBytes { Array($0) }
    }

    private static func publicKey(_ bytes: ArraySlice<UInt8>) throws(NoiseError) -> Curve25519.KeyAgreement.PublicKey {
        guard let key = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes) else {
            throw .invalidRemoteKey
        }
        return key
    }

    /// Noise `WriteMessage(payload)` for the next message of the pattern.
    mutating func writeMessage(payload: [UInt8]) throws(NoiseError) -> [UInt8] {
        precondition(self.isOurTurn, "Noise XX: writing message \(self.messageCount + 1) out of turn")
        var out: [UInt8] = []
        switch self.messageCount {
        case 0:
            // -> e
            let e = Array(self.ephemeralKey.publicKey.rawRepresentation)
            out += e
            self.symmetric.mixHash(e)
        case 1:
            // <- e, ee, s, es
            let e = Array(self.ephemeralKey.publicKey.rawRepresentation)
            out += e
            self.symmetric.mixHash(e)
            self.symmetric.mixKey(try self.dh(self.ephemeralKey, self.remoteEphemeral))
            out += try self.symmetric.encryptAndHash(Array(self.staticKey.publicKey.rawRepresentation))
            self.symmetric.mixKey(try self.dh(self.staticKey, self.remoteEphemeral))
        default:
            // -> s, se
            out += try self.symmetric.encryptAndHash(Array(self.staticKey.publicKey.rawRepresentation))
            self.symmetric.mixKey(try self.dh(self.staticKey, self.remoteEphemeral))
        }
        out += try self.symmetric.encryptAndHash(payload)
        self.messageCount += 1
        return out
    }

    /// Noise `ReadMessage(message)` for the next message of the pattern; returns the decrypted payload.
    mutating func readMessage(_ message: [UInt8]) throws(NoiseError) -> [UInt8] {
        precondition(!self.isOurTurn && !self.isComplete, "Noise XX: reading message out of turn")
        let number = self.messageCount + 1
        let minimum = Self.minimumLength(ofMessage: number)
        guard message.count >= minimum else {
            throw .handshakeMessageTooShort(message: number, length: message.count, minimum: minimum)
        }
        var index = 0
        switch self.messageCount {
        case 0:
            // -> e
            let re = message[0..<Self.dhLength]
            self.remoteEphemeral = try Self.publicKey(re)
            self.symmetric.mixHash(re)
            index = Self.dhLength
        case 1:
            // <- e, ee, s, es
            let re = message[0..<Self.dhLength]
            self.remoteEphemeral = try Self.publicKey(re)
            self.symmetric.mixHash(re)
            self.symmetric.mixKey(try self.dh(self.ephemeralKey, self.remoteEphemeral))
            let encryptedStatic = message[Self.dhLength..<(2 * Self.dhLength + Self.tagLength)]
            let rs = try self.symmetric.decryptAndHash(encryptedStatic)
            self.remoteStatic = try Self.publicKey(rs[...])
            self.symmetric.mixKey(try self.dh(self.ephemeralKey, self.remoteStatic))
            index = 2 * Self.dhLength + Self.tagLength
        default:
            // -> s, se
            let encryptedStatic = message[0..<(Self.dhLength + Self.tagLength)]
            let rs = try self.symmetric.decryptAndHash(encryptedStatic)
            self.remoteStatic = try Self.publicKey(rs[...])
            self.symmetric.mixKey(try self.dh(self.ephemeralKey, self.remoteStatic))
            index = Self.dhLength + Self.tagLength
        }
        let payload = try self.symmetric.decryptAndHash(message[index...])
        self.messageCount += 1
        return payload
    }

    /// Noise `Split()` after message 3: `(send, receive)` cipher states for this role. The initiator sends
    /// with the first key, the responder with the second (go-libp2p `p2p/security/noise/handshake.go`).
    func split() -> (send: NoiseCipherState, receive: NoiseCipherState) {
        precondition(self.isComplete, "Noise XX: split before the handshake completed")
        let (c1, c2) = self.symmetric.split()
        switch self.role {
        case .initiator: return (c1, c2)
        case .responder: return (c2, c1)
        }
    }
}
