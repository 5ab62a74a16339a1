// edgeswap: the Noise Protocol Framework's CipherState and SymmetricState (noiseprotocol.org/noise.html § 5.1,
// § 5.2) for ChaChaPoly and SHA-256.

import Crypto
import Foundation
import NIOCore

/// A Noise `CipherState`: a ChaChaPoly key and a 64-bit nonce counter.
///
/// Noise § 12.3: ChaChaPoly's 96-bit nonce is "32 bits of zeros followed by little-endian encoding of n".
/// Noise § 5.1: "The maximum n value (2^64-1) is reserved for other use. If incrementing n results in
/// 2^64-1, then any further EncryptWithAd() or DecryptWithAd() calls will signal an error to the caller."
struct NoiseCipherState: Sendable {
    private(set) var key: SymmetricKey?
    /// The next nonce. Internal so tests can start near exhaustion.
    var nonce: UInt64

    init(key: SymmetricKey? = nil, nonce: UInt64 = 0) {
        self.key = key
        self.nonce = nonce
    }

    /// Noise `InitializeKey`.
    mutating func initializeKey(_ key: SymmetricKey) {
        self.key = key
        self.nonce = 0
    }

    private func chachaNonce() throws(NoiseError) -> ChaChaPoly.Nonce {
        guard self.nonce < UInt64.max else { throw .nonceExhausted }
        // Three u32s are laid out contiguously (12 bytes, no padding): zeros, then the counter's low and
        // high halves, each little-endian. No heap allocation per frame.
        let raw: (UInt32, UInt32, UInt32) = (
            0, UInt32(truncatingIfNeeded: self.nonce).littleEndian,
            UInt32(truncatingIfNeeded: self.nonce >> 32).littleEndian
        )
        let nonce = withUnsafeBytes(of: raw) { try? ChaChaPoly.Nonce(data: $0) }
        guard let nonce else { throw .encryptionFailed }
        return nonce
    }

    /// `EncryptWithAd` on arrays (handshake messages). Without a key the plaintext passes through.
    mutating func encrypt(ad: [UInt8], plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key = self.key else { return plaintext }
        let nonce = try self.chachaNonce()
        do {
            let box = try ChaChaPoly.seal(plaintext, using: key, nonce: nonce, authenticating: ad)
            self.nonce += 1
            return [UInt8](box.ciphertext) + [UInt8](box.tag)
        } catch {
            throw .encryptionFailed
        }
    }

    /// `DecryptWithAd` on arrays (handshake messages). Without a key the ciphertext passes through.
    mutating func decrypt(ad: [UInt8], ciphertext: ArraySlice<UInt8>) throws(NoiseError) -> [UInt8] {
        guard let key = self.key else { return Array(ciphertext) }
        guard ciphertext.count >= 16 else { throw .decryptionFailed }
        let nonce = try self.chachaNonce()
        do {
            let split = ciphertext.endIndex - 16
            let box = try ChaChaPoly.SealedBox(
                nonce: nonce, ciphertext: ciphertext[..<split], tag: ciphertext[split...])
            let plaintext = try ChaChaPoly.open(box, using: key, authenticating: ad)
            self.nonce += 1
            return [UInt8](plaintext)
        } catch {
            throw .decryptionFailed
        }
    }

    /// Seals one transport message (empty associated data) from raw bytes and appends
    /// `u16be length ‖ ciphertext ‖ tag` to `output`. Raw pointers keep swift-crypto on its fast path.
    mutating func sealFrame(_ plaintext: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(NoiseError) {
        guard let key = self.key else { preconditionFailure("transport cipher without a key") }
        let nonce = try self.chachaNonce()
        let box: ChaChaPoly.SealedBox
        do {
            box = try ChaChaPoly.seal(plaintext, using: key, nonce: nonce)
        } catch {
            throw .encryptionFailed
        }
        self.nonce += 1
        output.writeInteger(UInt16(plaintext.count + 16))
        box.ciphertext.withUnsafeBytes { _ = output.writeBytes($0) }
        box.tag.withUnsafeBytes { _ = output.writeBytes($0) }
    }

    /// Opens one transport message (`ciphertext ‖ tag`, empty associated data) and appends the plaintext.
    mutating func openFrame(_ message: UnsafeRawBufferPointer, into output: inout ByteBuffer) throws(NoiseError) {
        guard let key = self.key else { preconditionFailure("transport cipher without a key") }
        guard message.count >= 16 else { throw .frameTooShort(length: message.count, minimum: 16) }
        let nonce = try self.chachaNonce()
        let split = message.count - 16
        do {
            let box = try ChaChaPoly.SealedBox(
                nonce: nonce,
                ciphertext: UnsafeRawBufferPointer(rebasing: message[..<split]),
                tag: UnsafeRawBufferPointer(rebasing: message[split...]))
            let plaintext = try ChaChaPoly.open(box, using: key)
            self.nonce += 1
            plaintext.withUnsafeBytes { _ = output.writeBytes($0) }
        } catch {
            throw .decryptionFailed
        }
    }
}

/// A Noise `SymmetricState` for `Noise_*_25519_ChaChaPoly_SHA256`: chaining key `ck`, handshake hash `h`
/// and the handshake `CipherState`.
struct NoiseSymmetricState: Sendable {
    private(set) var chainingKey: [UInt8]
    private(set) var handshakeHash: [UInt8]
    private(set) var cipher = NoiseCipherState()

    /// Noise `InitializeSymmetric(protocol_name)`: "If protocol_name is less than or equal to HASHLEN bytes
    /// in length, sets h equal to protocol_name with zero bytes appended to make HASHLEN bytes. Otherwise
    /// sets h = HASH(protocol_name). Sets ck = h." `Noise_XX_25519_ChaChaPoly_SHA256` is exactly 32 bytes.
    init(protocolName: String) {
        let name = Array(protocolName.utf8)
        if name.count <= 32 {
            self.handshakeHash = name + [UInt8](repeating: 0, count: 32 - name.count)
        } else {
            self.handshakeHash = Array(SHA256.hash(data: name))
        }
        self.chainingKey = self.handshakeHash
    }

    /// `MixHash(data)`: h = HASH(h ‖ data).
    mutating func mixHash(_ data: some Collection<UInt8>) {
        var hasher = SHA256()
        hasher.update(data: self.handshakeHash)
        hasher.update(data: Array(data))
        self.handshakeHash = Array(hasher.finalize())
    }

    /// `MixKey(input_key_material)`: ck, temp_k = HKDF(ck, ikm, 2); InitializeKey(temp_k).
    mutating func mixKey(_ inputKeyMaterial: [UInt8]) {
        let (ck, tempKey) = Self.hkdf(chainingKey: self.chainingKey, inputKeyMaterial: inputKeyMaterial)
        self.chainingKey = ck
        self.cipher.initializeKey(SymmetricKey(data: tempKey))
    }

    /// `EncryptAndHash(plaintext)`: ciphertext = EncryptWithAd(h, plaintext); MixHash(ciphertext).
    mutating func encryptAndHash(_ plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        let ciphertext = try self.cipher.encrypt(ad: self.handshakeHash, plaintext: plaintext)
        self.mixHash(ciphertext)
        return ciphertext
    }

    /// `DecryptAndHash(ciphertext)`: plaintext = DecryptWithAd(h, ciphertext); MixHash(ciphertext).
    mutating func decryptAndHash(_ ciphertext: ArraySlice<UInt8>) throws(NoiseError) -> [UInt8] {
        let plaintext = try self.cipher.decrypt(ad: self.handshakeHash, ciphertext: ciphertext)
        self.mixHash(ciphertext)
        return plaintext
    }

    /// `Split()`: temp_k1, temp_k2 = HKDF(ck, zerolen, 2); the initiator sends with the first.
    func split() -> (NoiseCipherState, NoiseCipherState) {
        let (k1, k2) = Self.hkdf(chainingKey: self.chainingKey, inputKeyMaterial: [])
        return (NoiseCipherState(key: SymmetricKey(data: k1)), NoiseCipherState(key: SymmetricKey(data: k2)))
    }

    /// Noise § 4.3 `HKDF(chaining_key, input_key_material, 2)`: temp_key = HMAC(ck, ikm);
    /// output1 = HMAC(temp_key, 0x01); output2 = HMAC(temp_key, output1 ‖ 0x02).
    static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8]) -> ([UInt8], [UInt8]) {
        let tempKey = SymmetricKey(data: HMAC<SHA256>.authenticationCode(
            for: inputKeyMaterial, using: SymmetricKey(data: chainingKey)))
        let output1 = Array(HMAC<SHA256>.authenticationCode(for: [0x01], using: tempKey))
        let output2 = Array(HMAC<SHA256>.authenticationCode(for: output1 + [0x02], using: tempKey))
        return (output1, output2)
    }
}
