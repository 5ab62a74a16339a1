// edgeswap: Noise_XX_25519_ChaChaPoly_SHA256 against the cacophony/snow vectors
// (Fixtures/conformance/noise/XX_25519_ChaChaPoly_SHA256.json, from mcginty/snow tests/vectors).

import Crypto
import Foundation
import NIOCore
import Testing

@testable import Libp2p

@Suite struct NoiseVectorTests {
    struct Vector: Decodable {
        struct Message: Decodable {
            var payload: String
            var ciphertext: String
        }
        var protocol_name: String
        var init_prologue: String
        var init_static: String
        var init_ephemeral: String
        var resp_prologue: String
        var resp_static: String
        var resp_ephemeral: String
        var handshake_hash: String?
        var messages: [Message]
    }

    struct File: Decodable {
        var vectors: [Vector]
    }

    static func vectors() throws -> [Vector] {
        let data = try Data(contentsOf: KeysNoiseFixtures.url("noise/XX_25519_ChaChaPoly_SHA256.json"))
        return try JSONDecoder().decode(File.self, from: data).vectors
    }

    static func key(_ hex: String) throws -> Curve25519.KeyAgreement.PrivateKey {
        try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: KeysNoiseFixtures.hex(hex))
    }

    @Test func fixtureHasVectors() throws {
        let vectors = try Self.vectors()
        #expect(vectors.count == 2)
        #expect(vectors.allSatisfy { $0.protocol_name == NoiseXXHandshake.protocolName && $0.messages.count > 3 })
    }

    @Test(arguments: 0..<2)
    func handshakeAndTransportMatchByteForByte(index: Int) throws {
        let vector = try Self.vectors()[index]
        var initiator = NoiseXXHandshake(
            role: .initiator, staticKey: try Self.key(vector.init_static),
            ephemeralKey: try Self.key(vector.init_ephemeral), prologue: KeysNoiseFixtures.hex(vector.init_prologue))
        var responder = NoiseXXHandshake(
            role: .responder, staticKey: try Self.key(vector.resp_static),
            ephemeralKey: try Self.key(vector.resp_ephemeral), prologue: KeysNoiseFixtures.hex(vector.resp_prologue))

        // Handshake messages 1-3: initiator, responder, initiator.
        for (i, message) in vector.messages.prefix(3).enumerated() {
            let payload = KeysNoiseFixtures.hex(message.payload)
            let expected = KeysNoiseFixtures.hex(message.ciphertext)
            let written: [UInt8]
            let read: [UInt8]
            if i % 2 == 0 {
                written = try initiator.writeMessage(payload: payload)
                read = try responder.readMessage(written)
            } else {
                written = try responder.writeMessage(payload: payload)
                read = try initiator.readMessage(written)
            }
            #expect(KeysNoiseFixtures.hexString(written) == message.ciphertext, "handshake message \(i + 1)")
            #expect(written == expected)
            #expect(read == payload)
        }
        #expect(initiator.isComplete && responder.isComplete)
        #expect(initiator.handshakeHash == responder.handshakeHash)
        if let hash = vector.handshake_hash {
            #expect(KeysNoiseFixtures.hexString(initiator.handshakeHash) == hash)
        }
        #expect(initiator.remoteStatic?.rawRepresentation == (try Self.key(vector.resp_static)).publicKey.rawRepresentation)

        // Transport messages continue alternating; they go through the framed ByteBuffer API.
        let (iSend, iReceive) = initiator.split()
        let (rSend, rReceive) = responder.split()
        var initiatorTransport = NoiseTransport(send: iSend, receive: iReceive)
        var responderTransport = NoiseTransport(send: rSend, receive: rReceive)
        for (i, message) in vector.messages.enumerated().dropFirst(3) {
            let payload = KeysNoiseFixtures.hex(message.payload)
            var out = ByteBuffer()
            var plain = ByteBuffer()
            var decrypted: Bool
            if i % 2 == 0 {
                try initiatorTransport.encrypt(ByteBuffer(bytes: payload), into: &out)
                var wire = out
                responderTransport.receive(&wire)
                decrypted = try responderTransport.decryptNext(into: &plain)
            } else {
                try responderTransport.encrypt(ByteBuffer(bytes: payload), into: &out)
                var wire = out
                initiatorTransport.receive(&wire)
                decrypted = try initiatorTransport.decryptNext(into: &plain)
            }
            #expect(out.readInteger(as: UInt16.self) == UInt16(message.ciphertext.count / 2))
            #expect(KeysNoiseFixtures.hexString(out.readableBytesView) == message.ciphertext, "transport message \(i + 1)")
            #expect(decrypted)
            #expect(Array(plain.readableBytesView) == payload)
        }
    }

    @Test func wrongPrologueFailsAtMessage2() throws {
        let vector = try Self.vectors()[0]
        var initiator = NoiseXXHandshake(
            role: .initiator, staticKey: try Self.key(vector.init_static),
            ephemeralKey: try Self.key(vector.init_ephemeral), prologue: KeysNoiseFixtures.hex(vector.init_prologue))
        var responder = NoiseXXHandshake(
            role: .responder, staticKey: try Self.key(vector.resp_static),
            ephemeralKey: try Self.key(vector.resp_ephemeral), prologue: [])
        _ = try responder.readMessage(try initiator.writeMessage(payload: []))
        let message2 = try responder.writeMessage(payload: [])
        #expect(throws: NoiseError.decryptionFailed) { try initiator.readMessage(message2) }
    }

    @Test func hkdfMatchesRFC5869Construction() throws {
        // Noise's HKDF(ck, ikm, 2) equals RFC 5869 extract-then-expand with salt = ck and empty info.
        let ck = [UInt8](repeating: 0x0b, count: 32)
        let ikm = [UInt8](repeating: 0x42, count: 32)
        let (o1, o2) = NoiseSymmetricState.hkdf(chainingKey: ck, inputKeyMaterial: ikm)
        let reference = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: ikm), salt: ck, info: [UInt8](), outputByteCount: 64)
        let bytes = reference.withUnsafeBytes { Array($0) }
        #expect(o1 + o2 == bytes)
    }
}
