// edgeswap: the Noise transport phase (framing, splitting, decoding limits, nonce exhaustion).

import Crypto
import NIOCore
import Testing

@testable import Libp2p

@Suite struct NoiseTransportTests {
    /// A connected transport pair from a real in-memory handshake.
    static func connectedPair() throws -> (initiator: NoiseTransport, responder: NoiseTransport) {
        var pair = NoiseHandshakePair(
            initiator: try NoiseIdentity(identityKey: PrivateKey.generateEd25519()),
            responder: try NoiseIdentity(identityKey: PrivateKey.generateEd25519()))
        let (i, r) = try pair.run()
        return (i.transport, r.transport)
    }

    static func pattern(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    }

    @Test(arguments: [0, 1, 65519, 65520, 200 * 1024])
    func roundTrip(size: Int) throws {
        var (sender, receiver) = try Self.connectedPair()
        let payload = Self.pattern(size)
        var wire = ByteBuffer()
        try sender.encrypt(ByteBuffer(bytes: payload), into: &wire)

        // Frame layout: ceil(size / 65519) frames (one empty frame for 0 bytes), each ≤ 65535 bytes.
        let expectedFrames = max(1, (size + 65518) / 65519)
        #expect(wire.readableBytes == NoiseTransport.encryptedLength(ofPlaintextLength: size))
        var frames = 0
        var offset = wire.readerIndex
        while offset < wire.writerIndex {
            let length = Int(wire.getInteger(at: offset, as: UInt16.self)!)
            #expect(length >= 16 && length <= 65535)
            offset += 2 + length
            frames += 1
        }
        #expect(frames == expectedFrames)
        #expect(sender.messageCounts.sent == UInt64(expectedFrames))

        receiver.receive(&wire)
        var plain = ByteBuffer()
        var decrypted = 0
        while try receiver.decryptNext(into: &plain) { decrypted += 1 }
        #expect(decrypted == expectedFrames)
        #expect(Array(plain.readableBytesView) == payload)
        #expect(receiver.bufferedByteCount == 0)
        try receiver.finish()
    }

    @Test func partialDeliveryReturnsNothingUntilTheFrameIsWhole() throws {
        var (sender, receiver) = try Self.connectedPair()
        var wire = ByteBuffer()
        try sender.encrypt(ByteBuffer(bytes: Self.pattern(1000)), into: &wire)
        var plain = ByteBuffer()
        // Deliver in 7-byte pieces.
        while wire.readableBytes > 7 {
            var piece = wire.readSlice(length: 7)!
            receiver.receive(&piece)
            #expect(try !receiver.decryptNext(into: &plain))
            #expect(plain.readableBytes == 0)
        }
        #expect(throws: NoiseError.truncatedFrame(buffered: 1018 - wire.readableBytes)) { try receiver.finish() }
        receiver.receive(&wire)
        #expect(try receiver.decryptNext(into: &plain))
        #expect(Array(plain.readableBytesView) == Self.pattern(1000))
    }

    @Test func shortFrameIsRejectedFromItsHeader() throws {
        var (_, receiver) = try Self.connectedPair()
        // Length 15 < the 16-byte tag: rejected as soon as the two length bytes are in.
        var header = ByteBuffer(bytes: [0x00, 0x0f])
        receiver.receive(&header)
        var plain = ByteBuffer()
        #expect(throws: NoiseError.frameTooShort(length: 15, minimum: 16)) { try receiver.decryptNext(into: &plain) }
    }

    @Test func decoderLimitsAreCheckedBeforeBuffering() throws {
        var decoder = NoiseFrameDecoder(minimumFrameLength: 16, maximumFrameLength: 1000)
        var header = ByteBuffer(bytes: [0x03, 0xe9])  // 1001, no body yet
        decoder.append(&header)
        #expect(throws: NoiseError.frameTooLong(length: 1001, maximum: 1000)) { try decoder.nextFrame() }

        var ok = NoiseFrameDecoder(minimumFrameLength: 0, maximumFrameLength: 65535)
        var bytes = ByteBuffer(bytes: [0x00, 0x03, 1, 2])
        ok.append(&bytes)
        #expect(bytes.readableBytes == 0)
        #expect(try ok.nextFrame() == nil)
        var rest = ByteBuffer(bytes: [3, 0x00, 0x00, 0x00])
        ok.append(&rest)
        #expect(try ok.nextFrame() == ByteBuffer(bytes: [1, 2, 3]))
        #expect(try ok.nextFrame() == ByteBuffer())  // an empty frame
        #expect(throws: NoiseError.truncatedFrame(buffered: 1)) { try ok.finish() }
    }

    @Test func tamperedReplayedOrReorderedFramesFail() throws {
        var (sender, receiver) = try Self.connectedPair()
        var first = ByteBuffer()
        var second = ByteBuffer()
        try sender.encrypt(ByteBuffer(bytes: [1, 2, 3]), into: &first)
        try sender.encrypt(ByteBuffer(bytes: [4, 5, 6]), into: &second)
        var plain = ByteBuffer()

        // Reordered: frame 2 under nonce 0 fails.
        var copy = second
        var r1 = receiver
        r1.receive(&copy)
        #expect(throws: NoiseError.decryptionFailed) { try r1.decryptNext(into: &plain) }

        // Tampered: one flipped bit.
        var tampered = first
        tampered.setInteger(tampered.getInteger(at: 3, as: UInt8.self)! ^ 0x80, at: 3)
        var r2 = receiver
        r2.receive(&tampered)
        #expect(throws: NoiseError.decryptionFailed) { try r2.decryptNext(into: &plain) }

        // Replayed: frame 1 twice.
        var once = first
        var twice = first
        receiver.receive(&once)
        #expect(try receiver.decryptNext(into: &plain))
        receiver.receive(&twice)
        #expect(throws: NoiseError.decryptionFailed) { try receiver.decryptNext(into: &plain) }
        #expect(Array(plain.readableBytesView) == [1, 2, 3])
    }

    @Test func nonceExhaustionTerminates() throws {
        var (sender, receiver) = try Self.connectedPair()
        // n = 2^64 − 1 is reserved: the message with nonce 2^64 − 2 is the last one allowed.
        sender.setNonces(send: UInt64.max - 1, receive: 0)
        receiver.setNonces(send: 0, receive: UInt64.max - 1)
        var wire = ByteBuffer()
        try sender.encrypt(ByteBuffer(bytes: [42]), into: &wire)
        var out = ByteBuffer()
        #expect(throws: NoiseError.nonceExhausted) { try sender.encrypt(ByteBuffer(bytes: [43]), into: &out) }
        #expect(out.readableBytes == 0)

        receiver.receive(&wire)
        var plain = ByteBuffer()
        #expect(try receiver.decryptNext(into: &plain))
        #expect(Array(plain.readableBytesView) == [42])
        // Any further frame is refused before decryption is even attempted.
        var fake = ByteBuffer(bytes: [0, 16] + [UInt8](repeating: 0, count: 16))
        receiver.receive(&fake)
        #expect(throws: NoiseError.nonceExhausted) { try receiver.decryptNext(into: &plain) }
    }

    @Test func plaintextBufferIsAppendedNotReplaced() throws {
        var (sender, receiver) = try Self.connectedPair()
        var wire = ByteBuffer()
        try sender.encrypt(ByteBuffer(bytes: [1]), into: &wire)
        try sender.encrypt(ByteBuffer(bytes: [2]), into: &wire)
        receiver.receive(&wire)
        var plain = ByteBuffer(bytes: [0])
        while try receiver.decryptNext(into: &plain) {}
        #expect(Array(plain.readableBytesView) == [0, 1, 2])
    }
}
