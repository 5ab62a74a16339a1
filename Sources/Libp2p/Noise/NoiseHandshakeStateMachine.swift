// edgeswap: the libp2p Noise XX handshake as a sans-IO state machine (libp2p/specs noise/README.md).

import Crypto
import NIOCore

/// What a finished handshake established.
public struct NoiseHandshakeResult: Sendable {
    /// The remote peer, derived from its `identity_key`.
    public let remotePeerID: PeerID
    /// The remote identity key, whose signature over the remote static key was verified.
    public let remotePublicKey: PublicKey
    /// The remote Noise static X25519 public key (32 bytes).
    public let remoteStaticKey: [UInt8]
    /// The Noise handshake hash `h` (same on both sides).
    public let handshakeHash: [UInt8]
    /// The transport ciphers. Any bytes that arrived after the last handshake message are already
    /// buffered inside it: call `decryptNext(into:)` before waiting for the next read.
    public var transport: NoiseTransport
}

/// The libp2p Noise handshake (`/noise`, `Noise_XX_25519_ChaChaPoly_SHA256`, empty prologue) for one
/// connection, as a sans-IO state machine: bytes in, actions out.
///
/// ```
///  initiator                                    responder
///  start() -> .send(msg1)       -> e          start() -> .needMoreData
///                               <- e, ee, s, es         receive(msg1) -> .send(msg2 ‖ our payload)
///  receive(msg2) -> verify responder payload,
///    -> .sendAndComplete(msg3, result)
///                               -> s, se                receive(msg3) -> verify initiator payload,
///                                                         -> .complete(result)
/// ```
///
/// Messages are framed `u16be length ‖ message` (noise/README.md § Wire Format). Messages 2 and 3 carry a
/// `NoiseHandshakePayload` with the sender's identity key and its signature over the sender's static key;
/// an invalid signature is a thrown `NoiseError.invalidIdentitySignature` ("the connection MUST be
/// terminated immediately"). A dialer may pass the peer ID it expects; a different remote identity is
/// `NoiseError.peerIDMismatch`.
///
/// Driving it from a NIO `ChannelInboundHandler` (the security stage after multistream-select chose
/// `/noise`):
/// - on `handlerAdded`/`channelActive`: `start()`; write the bytes of `.send`.
/// - on `channelRead(buffer)`: `receive(&buffer)`, then act on the result: `.send(b)` → write and flush `b`;
///   `.needMoreData` → nothing; `.sendAndComplete(b, r)` → write and flush `b`, then switch to
///   `r.transport`; `.complete(r)` → switch to `r.transport`. After switching, drain
///   `r.transport.decryptNext(into:)` at once, since the peer may have pipelined data behind its last
///   handshake message.
/// - a thrown `NoiseError`: close the connection. Every later call throws `.invalidState`.
/// - EOF during the handshake: close; nothing to flush.
public struct NoiseHandshakeStateMachine: Sendable {
    /// The multistream-select protocol id. noise/README.md: "noise-libp2p is identified by the protocol ID
    /// string `/noise`."
    public static let protocolID = "/noise"

    /// What the I/O layer must do next.
    public enum Action: Sendable {
        /// Write these bytes (one framed handshake message).
        case send(ByteBuffer)
        /// Wait for more input.
        case needMoreData
        /// Write these bytes (the initiator's message 3) and then use the result's transport.
        case sendAndComplete(ByteBuffer, NoiseHandshakeResult)
        /// The handshake is complete; use the result's transport.
        case complete(NoiseHandshakeResult)
    }

    private enum State: Sendable {
        /// Created; `start()` not called yet.
        case idle(NoiseXXHandshake)
        /// Initiator: sent message 1, waiting for message 2.
        case awaitingMessage2(NoiseXXHandshake)
        /// Responder: waiting for message 1.
        case awaitingMessage1(NoiseXXHandshake)
        /// Responder: sent message 2, waiting for message 3.
        case awaitingMessage3(NoiseXXHandshake)
        /// Handed out the transport.
        case complete
        /// A fatal error was thrown.
        case failed
    }

    /// Our role.
    public let role: NoiseRole
    private var state: State
    private let identity: NoiseIdentity
    private let expectedRemotePeerID: PeerID?
    private let acceptedKeyTypes: Set<KeyType>
    private var decoder: NoiseFrameDecoder

    /// - Parameters:
    ///   - role: initiator (dialer) or responder (listener).
    ///   - identity: our identity and Noise static key, shared across connections.
    ///   - expectedRemotePeerID: for a dialer that knows whom it dials; a different remote is an error.
    ///   - acceptedKeyTypes: remote identity key types to accept; others fail with
    ///     `.invalidIdentityKey(.unsupportedKeyType)` before any signature check. peer-ids.md: "implementation
    ///     MAY allow the user to enable/disable specific key types via configuration". All four by default;
    ///     a server may drop `.secp256k1`, whose verification here is far slower than the others.
    ///   - prologue: Noise prologue. libp2p uses none; exposed for test vectors.
    ///   - ephemeralKey: injected ephemeral key for test vectors; fresh by default.
    public init(
        role: NoiseRole, identity: NoiseIdentity, expectedRemotePeerID: PeerID? = nil,
        acceptedKeyTypes: Set<KeyType> = Set(KeyType.allCases), prologue: [UInt8] = [],
        ephemeralKey: Curve25519.KeyAgreement.PrivateKey = .init()
    ) {
        self.role = role
        self.identity = identity
        self.expectedRemotePeerID = expectedRemotePeerID
        self.acceptedKeyTypes = acceptedKeyTypes
        self.state = .idle(
            NoiseXXHandshake(role: role, staticKey: identity.staticKey, ephemeralKey: ephemeralKey, prologue: prologue))
        self.decoder = NoiseFrameDecoder()
    }

    /// Starts the handshake: the initiator gets message 1 to send, the responder waits.
    public mutating func start() throws(NoiseError) -> Action {
        guard case .idle(var handshake) = self.state else { throw .invalidState("start() called twice") }
        switch self.role {
        case .initiator:
            // noise/README.md: "the initiator MUST NOT send extensions in their first message"; it sends an
            // empty payload, as go-libp2p and js-libp2p do.
            let message = try self.guarded { () throws(NoiseError) in try handshake.writeMessage(payload: []) }
            self.state = .awaitingMessage2(handshake)
            return .send(Self.frame(message))
        case .responder:
            self.state = .awaitingMessage1(handshake)
            return .needMoreData
        }
    }

    /// Feeds received bytes (all readable bytes of `bytes` are taken) and returns what to do next.
    public mutating func receive(_ bytes: inout ByteBuffer) throws(NoiseError) -> Action {
        switch self.state {
        case .complete: throw .invalidState("handshake already complete; use the transport")
        case .failed: throw .invalidState("handshake already failed")
        case .idle, .awaitingMessage1, .awaitingMessage2, .awaitingMessage3: break
        }
        // Buffer even before start(): bytes can arrive in the same read that completed multistream-select.
        self.decoder.append(&bytes)
        do throws(NoiseError) {
            return try self.process()
        } catch {
            self.state = .failed
            throw error
        }
    }

    /// Runs `body`; on error moves to `.failed` so no later event can use half-updated state.
    private mutating func guarded<T>(_ body: () throws(NoiseError) -> T) throws(NoiseError) -> T {
        do throws(NoiseError) {
            return try body()
        } catch {
            self.state = .failed
            throw error
        }
    }

    private mutating func process() throws(NoiseError) -> Action {
        switch self.state {
        case .idle, .complete, .failed:
            return .needMoreData
        case .awaitingMessage1(var handshake):
            guard let message = try self.nextMessage() else { return .needMoreData }
            // The initiator's first payload is unauthenticated and carries nothing libp2p defines; ignore it.
            _ = try handshake.readMessage(message)
            let reply = try handshake.writeMessage(payload: self.identity.payload)
            self.state = .awaitingMessage3(handshake)
            return .send(Self.frame(reply))
        case .awaitingMessage2(var handshake):
            guard let message = try self.nextMessage() else { return .needMoreData }
            let payload = try handshake.readMessage(message)
            let (remoteKey, remoteStatic) = try self.authenticate(payload: payload, handshake: handshake)
            let final = try handshake.writeMessage(payload: self.identity.payload)
            self.state = .complete
            return .sendAndComplete(Self.frame(final), self.finish(handshake, remoteKey, remoteStatic))
        case .awaitingMessage3(var handshake):
            guard let message = try self.nextMessage() else { return .needMoreData }
            let payload = try handshake.readMessage(message)
            let (remoteKey, remoteStatic) = try self.authenticate(payload: payload, handshake: handshake)
            self.state = .complete
            return .complete(self.finish(handshake, remoteKey, remoteStatic))
        }
    }

    private mutating func nextMessage() throws(NoiseError) -> [UInt8]? {
        guard var frame = try self.decoder.nextFrame() else { return nil }
        return frame.readBytes(length: frame.readableBytes)
    }

    /// Verifies the remote payload against the static key the handshake just authenticated.
    private func authenticate(payload: [UInt8], handshake: NoiseXXHandshake)
        throws(NoiseError) -> (PublicKey, [UInt8])
    {
        guard let remoteStatic = handshake.remoteStatic else { preconditionFailure("no remote static key") }
        let staticBytes = Array(remoteStatic.rawRepresentation)
        let decoded = try NoiseHandshakePayload(decoding: payload)
        let remoteKey = try decoded.verify(remoteStaticKey: staticBytes, acceptedKeyTypes: self.acceptedKeyTypes)
        if let expected = self.expectedRemotePeerID {
            let actual = remoteKey.peerID
            guard actual == expected else { throw .peerIDMismatch(expected: expected, actual: actual) }
        }
        return (remoteKey, staticBytes)
    }

    /// Builds the result and hands any bytes buffered after the last handshake message to the transport.
    private mutating func finish(_ handshake: NoiseXXHandshake, _ remoteKey: PublicKey, _ remoteStatic: [UInt8])
        -> NoiseHandshakeResult
    {
        let (send, receive) = handshake.split()
        let pending = self.decoder
        // Drop our reference so the transport's decoder owns the buffer uniquely (no copy-on-write later).
        self.decoder = NoiseFrameDecoder()
        return NoiseHandshakeResult(
            remotePeerID: remoteKey.peerID, remotePublicKey: remoteKey, remoteStaticKey: remoteStatic,
            handshakeHash: handshake.handshakeHash,
            transport: NoiseTransport(send: send, receive: receive, pendingInput: pending))
    }

    /// `u16be length ‖ message`. Handshake messages here are far below 65535 bytes (an 8192-bit RSA identity
    /// makes a payload of about 2.1 KB).
    private static func frame(_ message: [UInt8]) -> ByteBuffer {
        precondition(message.count <= NoiseTransport.maximumMessageLength)
        var buffer = ByteBuffer()
        buffer.reserveCapacity(2 + message.count)
        buffer.writeInteger(UInt16(message.count))
        buffer.writeBytes(message)
        return buffer
    }
}
