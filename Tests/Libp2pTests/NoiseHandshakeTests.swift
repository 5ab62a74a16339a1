// edgeswap: the libp2p Noise handshake state machines run against each other in memory.

import Crypto
import NIOCore
import Testing

@testable import Libp2p

/// Drives an initiator and a responder machine against each other with no I/O.
struct NoiseHandshakePair {
    var initiator: NoiseHandshakeStateMachine
    var responder: NoiseHandshakeStateMachine

    init(initiator: NoiseIdentity, responder: NoiseIdentity, expectedResponder: PeerID? = nil) {
        self.initiator = NoiseHandshakeStateMachine(
            role: .initiator, identity: initiator, expectedRemotePeerID: expectedResponder)
        self.responder = NoiseHandshakeStateMachine(role: .responder, identity: responder)
    }

    /// Which side threw.
    enum Failure: Error, Equatable {
        case initiator(NoiseError)
        case responder(NoiseError)
    }

    /// Runs the whole handshake; `tamper` may rewrite each message (1, 2, 3) on the wire.
    mutating func run(tamper: (Int, inout ByteBuffer) -> Void = { _, _ in })
        throws(Failure) -> (initiator: NoiseHandshakeResult, responder: NoiseHandshakeResult)
    {
        func onInitiator<T>(_ body: () throws(NoiseError) -> T) throws(Failure) -> T {
            do throws(NoiseError) { return try body() } catch { throw .initiator(error) }
        }
        func onResponder<T>(_ body: () throws(NoiseError) -> T) throws(Failure) -> T {
            do throws(NoiseError) { return try body() } catch { throw .responder(error) }
        }
        guard case .send(var message1) = try onInitiator({ () throws(NoiseError) in try self.initiator.start() })
        else { preconditionFailure("initiator must send message 1") }
        guard case .needMoreData = try onResponder({ () throws(NoiseError) in try self.responder.start() })
        else { preconditionFailure("responder must wait") }
        tamper(1, &message1)
        guard case .send(var message2) = try onResponder({ () throws(NoiseError) in
            try self.responder.receive(&message1)
        }) else { preconditionFailure("responder must send message 2") }
        tamper(2, &message2)
        guard case .sendAndComplete(var message3, let initiatorResult) = try onInitiator({ () throws(NoiseError) in
            try self.initiator.receive(&message2)
        }) else { preconditionFailure("initiator must send message 3 and complete") }
        tamper(3, &message3)
        guard case .complete(let responderResult) = try onResponder({ () throws(NoiseError) in
            try self.responder.receive(&message3)
        }) else { preconditionFailure("responder must complete") }
        return (initiatorResult, responderResult)
    }
}

enum NoiseTestIdentities {
    /// One identity per key type: spec vectors for ECDSA, secp256k1 and RSA-4096, Python's RSA-2048, a
    /// generated Ed25519.
    static func all() throws -> [(String, PrivateKey)] {
        let vectors = try KeysNoiseFixtures.specVectors()
        let extra = try KeysNoiseFixtures.csv("peer-ids/extra-key-vectors.csv")
        let rsa2048 = extra.first { $0["name"] == "rsa2048" }!["private_key"]!
        return [
            ("ed25519", PrivateKey.generateEd25519()),
            ("ecdsa", try PrivateKey(protobuf: vectors["ECDSA private key"]!)),
            ("secp256k1", try PrivateKey(protobuf: vectors["secp256k1 private key"]!)),
            ("rsa4096", try PrivateKey(protobuf: vectors["rsa private key"]!)),
            ("rsa2048", try PrivateKey(protobuf: KeysNoiseFixtures.hex(rsa2048))),
        ]
    }
}

@Suite struct NoiseHandshakeTests {
    static let keyNames = ["ed25519", "ecdsa", "secp256k1", "rsa4096", "rsa2048"]

    static func identity(_ name: String) throws -> PrivateKey {
        try NoiseTestIdentities.all().first { $0.0 == name }!.1
    }

    /// Checks both results agree and the transports talk in both directions.
    static func checkConnected(_ i: NoiseHandshakeResult, _ r: NoiseHandshakeResult,
                               initiatorKey: PrivateKey, responderKey: PrivateKey) throws {
        #expect(i.remotePeerID == responderKey.peerID)
        #expect(r.remotePeerID == initiatorKey.peerID)
        #expect(i.remotePublicKey == responderKey.publicKey)
        #expect(r.remotePublicKey == initiatorKey.publicKey)
        #expect(i.handshakeHash == r.handshakeHash)
        var it = i.transport
        var rt = r.transport
        for (from, payload) in [(0, Array("hello responder".utf8)), (1, Array("hello initiator".utf8))] {
            var wire = ByteBuffer()
            var plain = ByteBuffer()
            if from == 0 {
                try it.encrypt(ByteBuffer(bytes: payload), into: &wire)
                rt.receive(&wire)
                #expect(try rt.decryptNext(into: &plain))
            } else {
                try rt.encrypt(ByteBuffer(bytes: payload), into: &wire)
                it.receive(&wire)
                #expect(try it.decryptNext(into: &plain))
            }
            #expect(Array(plain.readableBytesView) == payload)
        }
    }

    @Test(arguments: keyNames)
    func initiatorWithEachKeyType(name: String) throws {
        let initiatorKey = try Self.identity(name)
        let responderKey = PrivateKey.generateEd25519()
        var pair = NoiseHandshakePair(
            initiator: try NoiseIdentity(identityKey: initiatorKey),
            responder: try NoiseIdentity(identityKey: responderKey), expectedResponder: responderKey.peerID)
        let (i, r) = try pair.run()
        try Self.checkConnected(i, r, initiatorKey: initiatorKey, responderKey: responderKey)
    }

    @Test(arguments: keyNames)
    func responderWithEachKeyType(name: String) throws {
        let initiatorKey = PrivateKey.generateEd25519()
        let responderKey = try Self.identity(name)
        var pair = NoiseHandshakePair(
            initiator: try NoiseIdentity(identityKey: initiatorKey),
            responder: try NoiseIdentity(identityKey: responderKey), expectedResponder: responderKey.peerID)
        let (i, r) = try pair.run()
        try Self.checkConnected(i, r, initiatorKey: initiatorKey, responderKey: responderKey)
    }

    @Test func oneIdentityServesManyConnections() throws {
        // The static key and its signature are made once and reused (noise/README.md allows a single static
        // keypair for all sessions); each session still derives different keys from fresh ephemerals.
        let server = try NoiseIdentity(identityKey: PrivateKey.generateEd25519())
        let clientKey = PrivateKey.generateEd25519()
        var first = NoiseHandshakePair(initiator: try NoiseIdentity(identityKey: clientKey), responder: server)
        var second = NoiseHandshakePair(initiator: try NoiseIdentity(identityKey: clientKey), responder: server)
        let a = try first.run()
        let b = try second.run()
        #expect(a.responder.remoteStaticKey != b.responder.remoteStaticKey)
        #expect(a.initiator.remoteStaticKey == b.initiator.remoteStaticKey)
        #expect(a.initiator.handshakeHash != b.initiator.handshakeHash)
    }

    @Test(arguments: [NoiseRole.initiator, .responder])
    func tamperedSignatureTerminates(side: NoiseRole) throws {
        let honestKey = PrivateKey.generateEd25519()
        let honest = try NoiseIdentity(identityKey: honestKey)
        let staticKey = Curve25519.KeyAgreement.PrivateKey()
        let forgerKey = try Self.identity("ecdsa")
        var signature = try forgerKey.sign(NoiseHandshakePayload.signedData(staticPublicKey: staticKey.publicKey.rawRepresentation))
        signature[signature.count - 3] ^= 0x01
        let forged = NoiseIdentity(
            publicKey: forgerKey.publicKey, staticKey: staticKey,
            payload: NoiseHandshakePayload(identityKey: forgerKey.publicKey.protobufEncoding, identitySignature: signature))
        var pair = side == .initiator
            ? NoiseHandshakePair(initiator: forged, responder: honest)
            : NoiseHandshakePair(initiator: honest, responder: forged)
        let expected: NoiseHandshakePair.Failure = side == .initiator
            ? .responder(.invalidIdentitySignature) : .initiator(.invalidIdentitySignature)
        #expect(throws: expected) { try pair.run() }
        // The machine that detected it is dead: any further input is refused.
        var more = ByteBuffer(bytes: [0, 1, 2])
        if side == .initiator {
            #expect(throws: NoiseError.invalidState("handshake already failed")) { try pair.responder.receive(&more) }
        } else {
            #expect(throws: NoiseError.invalidState("handshake already failed")) { try pair.initiator.receive(&more) }
        }
    }

    @Test func signatureOverAnotherStaticKeyIsRejected() throws {
        // A valid signature, but for a static key other than the one used in the handshake (a replayed payload).
        let key = PrivateKey.generateEd25519()
        let replayed = try NoiseIdentity(identityKey: key)
        let impostor = NoiseIdentity(
            publicKey: key.publicKey, staticKey: Curve25519.KeyAgreement.PrivateKey(),
            payload: try NoiseHandshakePayload(decoding: replayed.payload))
        var pair = NoiseHandshakePair(initiator: try NoiseIdentity(identityKey: PrivateKey.generateEd25519()),
                                      responder: impostor)
        #expect(throws: NoiseHandshakePair.Failure.initiator(.invalidIdentitySignature)) { try pair.run() }
    }

    @Test func wrongExpectedPeerIDIsRejected() throws {
        let responderKey = PrivateKey.generateEd25519()
        let expected = PrivateKey.generateEd25519().peerID
        var pair = NoiseHandshakePair(
            initiator: try NoiseIdentity(identityKey: PrivateKey.generateEd25519()),
            responder: try NoiseIdentity(identityKey: responderKey), expectedResponder: expected)
        #expect(throws: NoiseHandshakePair.Failure.initiator(.peerIDMismatch(expected: expected, actual: responderKey.peerID))) {
            try pair.run()
        }
    }

    @Test func missingOrBadIdentityFields() throws {
        let key = PrivateKey.generateEd25519()
        let honest = try NoiseIdentity(identityKey: PrivateKey.generateEd25519())
        let staticKey = Curve25519.KeyAgreement.PrivateKey()
        let cases: [(NoiseHandshakePayload, NoiseError)] = [
            (NoiseHandshakePayload(identityKey: [], identitySignature: [1]),
             .invalidIdentityKey(.malformedProtobuf("truncated")) ),
            (NoiseHandshakePayload(identityKey: [0x08, 0x07, 0x12, 0x00], identitySignature: [1]),
             .invalidIdentityKey(.unknownKeyType(7))),
        ]
        for (payload, error) in cases {
            var pair = NoiseHandshakePair(
                initiator: honest, responder: NoiseIdentity(publicKey: key.publicKey, staticKey: staticKey, payload: payload))
            let thrown = #expect(throws: NoiseHandshakePair.Failure.self) { try pair.run() }
            if case .initiator(let e) = thrown {
                switch (e, error) {
                case (.invalidIdentityKey, .invalidIdentityKey): break
                default: Issue.record("expected \(error), got \(e)")
                }
            } else {
                Issue.record("expected an initiator failure, got \(String(describing: thrown))")
            }
        }
        // Fields absent altogether: the payload decoder names which.
        #expect(throws: NoiseError.missingIdentityKey) { try NoiseHandshakePayload(decoding: [0x12, 0x01, 0x00]) }
        #expect(throws: NoiseError.missingIdentitySignature) { try NoiseHandshakePayload(decoding: [0x0a, 0x01, 0x00]) }
        #expect(throws: NoiseError.self) { try NoiseHandshakePayload(decoding: [0x0a, 0x05, 0x00]) }
    }

    @Test func extensionsAndUnknownFieldsAreIgnored() throws {
        let key = PrivateKey.generateEd25519()
        let identity = try NoiseIdentity(identityKey: key)
        var payload = identity.payload
        // extensions = 4 { stream_muxers = 2 "/yamux/1.0.0" }, then an unknown varint field 9.
        let muxer = Array("/yamux/1.0.0".utf8)
        let extensions: [UInt8] = [0x12, UInt8(muxer.count)] + muxer
        payload += [0x22, UInt8(extensions.count)] + extensions + [0x48, 0x01]
        let decoded = try NoiseHandshakePayload(decoding: payload)
        #expect(try decoded.verify(remoteStaticKey: identity.staticPublicKey) == key.publicKey)
    }

    @Test func corruptedAndTruncatedMessages() throws {
        let a = try NoiseIdentity(identityKey: PrivateKey.generateEd25519())
        let b = try NoiseIdentity(identityKey: PrivateKey.generateEd25519())
        // A flipped ciphertext byte in message 2 breaks the AEAD tag.
        var pair = NoiseHandshakePair(initiator: a, responder: b)
        #expect(throws: NoiseHandshakePair.Failure.initiator(.decryptionFailed)) {
            try pair.run { number, buffer in
                if number == 2 { buffer.setInteger(buffer.getInteger(at: 60, as: UInt8.self)! ^ 1, at: 60) }
            }
        }
        // Message 2 cut to 50 bytes (re-framed): shorter than e + encrypted s + tag.
        pair = NoiseHandshakePair(initiator: a, responder: b)
        #expect(throws: NoiseHandshakePair.Failure.initiator(.handshakeMessageTooShort(message: 2, length: 50, minimum: 96))) {
            try pair.run { number, buffer in
                if number == 2 {
                    let body = buffer.getBytes(at: 2, length: 50)!
                    buffer = ByteBuffer()
                    buffer.writeInteger(UInt16(50))
                    buffer.writeBytes(body)
                }
            }
        }
        // Message 1 shorter than an X25519 key.
        pair = NoiseHandshakePair(initiator: a, responder: b)
        #expect(throws: NoiseHandshakePair.Failure.responder(.handshakeMessageTooShort(message: 1, length: 31, minimum: 32))) {
            try pair.run { number, buffer in
                if number == 1 { buffer = ByteBuffer(bytes: [0, 31] + [UInt8](repeating: 9, count: 31)) }
            }
        }
    }

    @Test func bytesArriveOneAtATimeAndTransportDataIsPipelined() throws {
        let initiatorKey = PrivateKey.generateEd25519()
        let responderKey = try Self.identity("rsa2048")
        var initiator = NoiseHandshakeStateMachine(role: .initiator, identity: try NoiseIdentity(identityKey: initiatorKey))
        var responder = NoiseHandshakeStateMachine(role: .responder, identity: try NoiseIdentity(identityKey: responderKey))

        /// Feeds `bytes` one byte per call; every call but the last must ask for more data.
        func trickle(_ bytes: ByteBuffer, into machine: inout NoiseHandshakeStateMachine) throws -> NoiseHandshakeStateMachine.Action {
            let all = Array(bytes.readableBytesView)
            for byte in all.dropLast() {
                var one = ByteBuffer(bytes: [byte])
                guard case .needMoreData = try machine.receive(&one) else {
                    Issue.record("acted before the whole message arrived")
                    return .needMoreData
                }
            }
            var last = ByteBuffer(bytes: [all.last!])
            return try machine.receive(&last)
        }

        guard case .send(let m1) = try initiator.start() else { Issue.record("no message 1"); return }
        _ = try responder.start()
        guard case .send(let m2) = try trickle(m1, into: &responder) else { Issue.record("no message 2"); return }
        guard case .sendAndComplete(let m3, var initiatorResult) = try trickle(m2, into: &initiator) else {
            Issue.record("initiator did not complete"); return
        }
        // The initiator pipelines two transport frames right behind message 3, all in one read.
        var wire = m3
        try initiatorResult.transport.encrypt(ByteBuffer(bytes: Array("first".utf8)), into: &wire)
        try initiatorResult.transport.encrypt(ByteBuffer(bytes: Array("second".utf8)), into: &wire)
        guard case .complete(var responderResult) = try responder.receive(&wire) else {
            Issue.record("responder did not complete"); return
        }
        #expect(wire.readableBytes == 0)
        #expect(responderResult.remotePeerID == initiatorKey.peerID)
        #expect(initiatorResult.remotePeerID == responderKey.peerID)
        var plain = ByteBuffer()
        #expect(try responderResult.transport.decryptNext(into: &plain))
        #expect(try responderResult.transport.decryptNext(into: &plain))
        #expect(try !responderResult.transport.decryptNext(into: &plain))
        #expect(String(buffer: plain) == "firstsecond")
        var extra = ByteBuffer(bytes: [1])
        #expect(throws: NoiseError.invalidState("handshake already complete; use the transport")) {
            try responder.receive(&extra)
        }
    }

    @Test func disabledKeyTypeIsRefused() throws {
        let key = try Self.identity("secp256k1")
        var initiator = NoiseHandshakeStateMachine(role: .initiator, identity: try NoiseIdentity(identityKey: key))
        var responder = NoiseHandshakeStateMachine(
            role: .responder, identity: try NoiseIdentity(identityKey: PrivateKey.generateEd25519()),
            acceptedKeyTypes: [.ed25519, .rsa, .ecdsa])
        guard case .send(var m1) = try initiator.start(), case .needMoreData = try responder.start(),
              case .send(var m2) = try responder.receive(&m1),
              case .sendAndComplete(var m3, _) = try initiator.receive(&m2)
        else { Issue.record("handshake did not reach message 3"); return }
        #expect(throws: NoiseError.invalidIdentityKey(.unsupportedKeyType("secp256k1 identities are not accepted"))) {
            try responder.receive(&m3)
        }
    }

    @Test func startTwiceIsAnError() throws {
        var machine = NoiseHandshakeStateMachine(
            role: .initiator, identity: try NoiseIdentity(identityKey: PrivateKey.generateEd25519()))
        _ = try machine.start()
        #expect(throws: NoiseError.invalidState("start() called twice")) { try machine.start() }
    }
}
