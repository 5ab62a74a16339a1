// edgeswap: Noise for libp2p (libp2p/specs noise/README.md).

/// Why a Noise handshake or transport failed. Every case is fatal for the connection: the handler closes it.
public enum NoiseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A frame's 2-byte length announces fewer bytes than the smallest valid message at this point
    /// (for example a transport frame shorter than its 16-byte tag).
    case frameTooShort(length: Int, minimum: Int)
    /// A frame's length is above the limit configured for this decoder (checked before buffering the body).
    case frameTooLong(length: Int, maximum: Int)
    /// The input ended (connection closed) in the middle of a frame.
    case truncatedFrame(buffered: Int)
    /// A handshake message is shorter than its pattern requires (message number 1, 2 or 3).
    case handshakeMessageTooShort(message: Int, length: Int, minimum: Int)
    /// An AEAD tag did not verify: the bytes were corrupted, forged, or encrypted under other keys.
    case decryptionFailed
    /// Encryption failed inside swift-crypto (not expected with valid keys).
    case encryptionFailed
    /// The remote ephemeral or static X25519 key is invalid (wrong length, or a low-order point giving an
    /// all-zero shared secret).
    case invalidRemoteKey
    /// 2^64 − 1 messages were sent or received with one key. noise/README.md: "In the unlikely event that
    /// peers exchange more than 2^64 - 1 messages, they MUST terminate the connection".
    case nonceExhausted
    /// The decrypted handshake payload is not a valid `NoiseHandshakePayload` protobuf.
    case invalidHandshakePayload(String)
    /// The handshake payload has no `identity_key`.
    case missingIdentityKey
    /// The handshake payload has no `identity_sig`.
    case missingIdentitySignature
    /// `identity_key` is not a usable libp2p public key.
    case invalidIdentityKey(KeyError)
    /// `identity_sig` does not verify over `"noise-libp2p-static-key:" ‖ remote static key`. noise/README.md:
    /// "If the signature is invalid, the connection MUST be terminated immediately."
    case invalidIdentitySignature
    /// The dialer expected another peer at this address.
    case peerIDMismatch(expected: PeerID, actual: PeerID)
    /// An event arrived in a state that cannot take it (for example bytes after the handshake failed).
    case invalidState(String)

    public var description: String {
        switch self {
        case .frameTooShort(let length, let minimum):
            return "Noise frame of \(length) bytes is shorter than the minimum \(minimum)"
        case .frameTooLong(let length, let maximum):
            return "Noise frame of \(length) bytes is longer than the maximum \(maximum)"
        case .truncatedFrame(let buffered):
            return "input ended inside a Noise frame (\(buffered) bytes buffered)"
        case .handshakeMessageTooShort(let message, let length, let minimum):
            return "Noise handshake message \(message) has \(length) bytes, needs at least \(minimum)"
        case .decryptionFailed: return "Noise decryption failed (bad authentication tag)"
        case .encryptionFailed: return "Noise encryption failed"
        case .invalidRemoteKey: return "invalid remote X25519 key"
        case .nonceExhausted: return "Noise nonce exhausted (2^64-1 messages); the connection must end"
        case .invalidHandshakePayload(let why): return "invalid Noise handshake payload: \(why)"
        case .missingIdentityKey: return "Noise handshake payload has no identity_key"
        case .missingIdentitySignature: return "Noise handshake payload has no identity_sig"
        case .invalidIdentityKey(let error): return "invalid identity_key: \(error)"
        case .invalidIdentitySignature: return "identity_sig does not sign the remote Noise static key"
        case .peerIDMismatch(let expected, let actual): return "expected peer \(expected), got \(actual)"
        case .invalidState(let why): return "Noise state machine misuse: \(why)"
        }
    }
}
