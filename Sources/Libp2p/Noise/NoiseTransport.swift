// edgeswap: the libp2p Noise transport phase (libp2p/specs noise/README.md § Encryption and I/O).

import NIOCore

/// The two transport `CipherState`s after a Noise handshake, plus the inbound frame decoder.
///
/// noise/README.md: "After the handshake, peers continue to exchange messages in the format described in
/// the Wire Format section. However, instead of containing a Noise handshake message, the contents of the
/// `noise_message` field will be Noise transport message, which is an AEAD ciphertext consisting of an
/// encrypted payload plus 16 bytes of authentication data." So each frame carries at most
/// 65535 − 16 = 65519 plaintext bytes; larger writes are split.
///
/// All crypto runs on raw pointers into `ByteBuffer`s (`withUnsafeReadableBytes`): swift-crypto handed a
/// `ByteBufferView` takes a generic copy path that is about 9x slower.
///
/// Driving it from a NIO `ChannelDuplexHandler` after the handshake:
/// - `channelRead(buffer)`: `transport.receive(&buffer)`, then `while try transport.decryptNext(into: &plain)
///   {}` with one plaintext buffer reused across reads (`plain.clear()` first), and fire `plain` once if
///   non-empty; on a thrown `NoiseError`, close the channel.
/// - `write(buffer)`: `try transport.encrypt(buffer, into: &out)` into a scratch buffer, write `out`.
/// - `channelInactive` / EOF: `try transport.finish()` reports a frame cut short.
public struct NoiseTransport: Sendable {
    /// Largest Noise message: 65535 bytes.
    public static let maximumMessageLength = 65535
    /// Largest plaintext per transport message: 65535 − 16 (tag) = 65519 bytes.
    public static let maximumPlaintextLength = 65519

    private var sendCipher: NoiseCipherState
    private var receiveCipher: NoiseCipherState
    private var decoder: NoiseFrameDecoder

    init(send: NoiseCipherState, receive: NoiseCipherState, pendingInput: NoiseFrameDecoder? = nil) {
        self.sendCipher = send
        self.receiveCipher = receive
        self.decoder = NoiseFrameDecoder(minimumFrameLength: 16, maximumFrameLength: Self.maximumMessageLength)
        if let pendingInput { self.decoder.append(contentsOf: pendingInput) }
    }

    /// Nonces used so far (send, receive). Exposed for tests and metrics.
    public var messageCounts: (sent: UInt64, received: UInt64) {
        (self.sendCipher.nonce, self.receiveCipher.nonce)
    }

    /// Test hook: start the counters at given nonces (to exercise exhaustion).
    mutating func setNonces(send: UInt64, receive: UInt64) {
        self.sendCipher.nonce = send
        self.receiveCipher.nonce = receive
    }

    // MARK: - Outbound

    /// The number of bytes `encrypt` appends for `plaintextLength` bytes of plaintext.
    public static func encryptedLength(ofPlaintextLength plaintextLength: Int) -> Int {
        let frames = max(1, (plaintextLength + maximumPlaintextLength - 1) / maximumPlaintextLength)
        return plaintextLength + frames * (2 + 16)
    }

    /// Encrypts the readable bytes of `plaintext` and appends the framed ciphertext to `output`: one frame
    /// per 65519 bytes, and one (empty) frame if `plaintext` is empty. `plaintext` is not consumed.
    public mutating func encrypt(_ plaintext: ByteBuffer, into output: inout ByteBuffer) throws(NoiseError) {
        output.reserveCapacity(
            minimumWritableBytes: Self.encryptedLength(ofPlaintextLength: plaintext.readableBytes))
        var failure: NoiseError?
        plaintext.withUnsafeReadableBytes { raw in
            do throws(NoiseError) {
                try self.encrypt(raw, into: &output)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    /// Encrypts raw bytes; see `encrypt(_:into:)`.
    public mutating func encrypt(_ plaintext: UnsafeRawBufferPointer, into output: inout ByteBuffer)
        throws(NoiseError)
    {
        var offset = 0
        repeat {
            let end = min(plaintext.count, offset + Self.maximumPlaintextLength)
            try self.sendCipher.sealFrame(UnsafeRawBufferPointer(rebasing: plaintext[offset..<end]), into: &output)
            offset = end
        } while offset < plaintext.count
    }

    // MARK: - Inbound

    /// Takes received ciphertext (all readable bytes of `bytes`).
    public mutating func receive(_ bytes: inout ByteBuffer) {
        self.decoder.append(&bytes)
    }

    /// Decrypts the next complete frame, appending its plaintext to `plaintext`. Returns false (and
    /// appends nothing) if no complete frame is buffered.
    public mutating func decryptNext(into plaintext: inout ByteBuffer) throws(NoiseError) -> Bool {
        var cipher = self.receiveCipher
        let decoded = try self.decoder.withNextFrame { (frame) throws(NoiseError) in
            try cipher.openFrame(frame, into: &plaintext)
        }
        self.receiveCipher = cipher
        return decoded
    }

    /// Ciphertext bytes received but not yet decrypted.
    public var bufferedByteCount: Int { self.decoder.bufferedByteCount }

    /// Call at end of input: throws `.truncatedFrame` if a partial frame is buffered.
    public func finish() throws(NoiseError) {
        try self.decoder.finish()
    }
}
