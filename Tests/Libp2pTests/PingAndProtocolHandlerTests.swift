import Libp2p
import Logging
import NIOCore
import NIOEmbedded
import Testing

@Suite struct PingMachineTests {
    private let payload: [UInt8] = (0..<32).map { UInt8($0 * 7 & 0xff) }

    @Test func responderEchoesWholePayloadsAcrossSplits() {
        var responder = PingResponder()
        #expect(responder.receive(ByteBuffer(bytes: payload.prefix(20))) == .none)
        // The rest of the first payload plus 5 bytes of a second one: only the whole payload is echoed.
        let action = responder.receive(ByteBuffer(bytes: Array(payload.suffix(12)) + payload.prefix(5)))
        #expect(action == .write(ByteBuffer(bytes: payload)))
        #expect(responder.echoed == 1)
        #expect(responder.receiveEOF() == .close(partial: 5))
    }

    @Test func responderEchoesSeveralPayloadsAtOnce() {
        var responder = PingResponder()
        #expect(responder.receive(ByteBuffer(bytes: payload + payload.reversed())) ==
                .write(ByteBuffer(bytes: payload + payload.reversed())))
        #expect(responder.echoed == 2)
        #expect(responder.receiveEOF() == .close(partial: 0))
    }

    @Test func initiatorMeasuresTheRoundTrip() throws {
        var initiator = PingInitiator()
        let start = ContinuousClock.Instant.now
        let sent = try initiator.sendPing(payload: payload, now: start)
        #expect(Array(sent.readableBytesView) == payload)
        #expect(throws: PingError.pingOutstanding) { try initiator.sendPing(payload: payload, now: start) }
        #expect(try initiator.receive(ByteBuffer(bytes: payload.prefix(16)), now: start + .milliseconds(1)) == nil)
        let rtt = try initiator.receive(ByteBuffer(bytes: payload.suffix(16)), now: start + .milliseconds(3))
        #expect(rtt == .milliseconds(3))
        #expect(initiator.roundTrips == [.milliseconds(3)])
        #expect(!initiator.isOutstanding)
        try initiator.receiveEOF()
    }

    @Test func initiatorRefusesBadEchoes() throws {
        var mismatch = PingInitiator()
        _ = try mismatch.sendPing(payload: payload, now: .now)
        #expect(throws: PingError.payloadMismatch) {
            try mismatch.receive(ByteBuffer(bytes: payload.reversed()), now: .now)
        }
        var extra = PingInitiator()
        _ = try extra.sendPing(payload: payload, now: .now)
        #expect(throws: PingError.unexpectedBytes(count: 1)) {
            try extra.receive(ByteBuffer(bytes: payload + [0]), now: .now)
        }
        var unsolicited = PingInitiator()
        #expect(throws: PingError.unexpectedBytes(count: 2)) {
            try unsolicited.receive(ByteBuffer(bytes: [1, 2]), now: .now)
        }
        var closed = PingInitiator()
        _ = try closed.sendPing(payload: payload, now: .now)
        #expect(throws: PingError.closedBeforeEcho) { try closed.receiveEOF() }
    }

    @Test func randomPayloadsDiffer() {
        let a = PingInitiator.randomPayload(), b = PingInitiator.randomPayload()
        #expect(a.count == 32 && b.count == 32)
        #expect(a != b)
    }

    @Test func limiterAllowsTwoStreamsPerPeer() throws {
        var limiter = PingStreamLimiter<String>()
        try limiter.open(from: "A")
        try limiter.open(from: "A")
        #expect(throws: PingError.tooManyStreams(limit: 2)) { try limiter.open(from: "A") }
        try limiter.open(from: "B")
        limiter.close(from: "A")
        #expect(limiter.count(from: "A") == 1)
        try limiter.open(from: "A")
        #expect(limiter.count(from: "A") == 2)
    }
}

/// Records `close(mode: .output)` instead of passing it on: EmbeddedChannel would close the whole channel.
final class HalfCloseRecorder: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var outputClosed = false

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .output {
            outputClosed = true
            promise?.succeed(())
        } else {
            context.close(mode: mode, promise: promise)
        }
    }
}

@Suite struct ProtocolHandlerTests {
    private let logger = Logger(label: "test")

    private func channel(with handler: some ChannelHandler) throws -> (EmbeddedChannel, HalfCloseRecorder) {
        try channel { _ in handler }
    }

    /// An active embedded channel with a half-close recorder, then the handler `make` builds on its loop.
    private func channel(_ make: (any EventLoop) -> some ChannelHandler) throws -> (EmbeddedChannel, HalfCloseRecorder) {
        let recorder = HalfCloseRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(make(channel.eventLoop))
        return (channel, recorder)
    }

    @Test func identifyResponderWritesOneDelimitedMessageAndCloses() throws {
        let message = try IdentifyMessage(protobuf: IdentifyFixture.kuboMessage)
        let (channel, recorder) = try channel(with: IdentifyResponderHandler(message: message, logger: logger))
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(written.readableBytesView) == [126] + IdentifyFixture.kuboMessage)
        #expect(recorder.outputClosed)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!channel.isActive)
    }

    @Test func identifyInitiatorChecksThePeer() throws {
        let key = try PublicKey(protobuf: IdentifyFixture.publicKeyProtobuf)
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: IdentifyMessage.self)
        try channel.pipeline.syncOperations.addHandler(IdentifyInitiatorHandler(promise: promise, expectedPeer: key.peerID))
        try channel.writeInbound(ByteBuffer(bytes: [126] + IdentifyFixture.kuboMessage.prefix(50)))
        try channel.writeInbound(ByteBuffer(bytes: IdentifyFixture.kuboMessage.dropFirst(50)))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let message = try promise.futureResult.wait()
        #expect(message.agentVersion == "kubo/0.22.0/")

        // The same message read by a dialer that authenticated a different peer.
        let other = PrivateKey.generateEd25519().peerID
        let wrong = EmbeddedChannel()
        let wrongPromise = wrong.eventLoop.makePromise(of: IdentifyMessage.self)
        try wrong.pipeline.syncOperations.addHandler(IdentifyInitiatorHandler(promise: wrongPromise, expectedPeer: other))
        try wrong.writeInbound(ByteBuffer(bytes: [126] + IdentifyFixture.kuboMessage))
        wrong.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(throws: IdentifyError.publicKeyMismatch(expected: "\(other)", got: "\(key.peerID)")) {
            try wrongPromise.futureResult.wait()
        }
    }

    @Test func identifyInitiatorTimesOut() throws {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: IdentifyMessage.self)
        try channel.pipeline.syncOperations.addHandler(
            IdentifyInitiatorHandler(promise: promise, expectedPeer: nil, timeout: .seconds(5)))
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(throws: IdentifyTimeout.self) { try promise.futureResult.wait() }
    }

    @Test func pingResponderEchoesUntilInputCloses() throws {
        let (channel, recorder) = try channel(with: PingResponderHandler(logger: logger))
        let payload = PingInitiator.randomPayload()
        try channel.writeInbound(ByteBuffer(bytes: payload.prefix(10)))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(bytes: payload.dropFirst(10)))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(bytes: payload))
        #expect(!recorder.outputClosed)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(recorder.outputClosed)
    }

    @Test func pingInitiatorAndResponderTalk() throws {
        // Two embedded channels joined by hand: what the initiator writes is fed to the responder and back.
        var promise: EventLoopPromise<[Duration]>?
        let (client, clientRecorder) = try channel { loop in
            promise = loop.makePromise(of: [Duration].self)
            return PingInitiatorHandler(count: 3, promise: promise!)
        }
        let (server, _) = try channel(with: PingResponderHandler(logger: logger))
        var rounds = 0
        while let out = try client.readOutbound(as: ByteBuffer.self) {
            try server.writeInbound(out)
            while let echo = try server.readOutbound(as: ByteBuffer.self) { try client.writeInbound(echo) }
            rounds += 1
        }
        #expect(rounds == 3)
        let rtts = try #require(promise).futureResult.wait()
        #expect(rtts.count == 3)
        #expect(rtts.allSatisfy { $0 >= .zero })
        // After the last echo the initiator ends its write side.
        #expect(clientRecorder.outputClosed)
    }

    @Test func pingInitiatorFailsOnACorruptEcho() throws {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: [Duration].self)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(PingInitiatorHandler(count: 1, promise: promise))
        var sent = try #require(try channel.readOutbound(as: ByteBuffer.self))
        var bytes = sent.readBytes(length: 32)!
        bytes[0] ^= 0xff
        try? channel.writeInbound(ByteBuffer(bytes: bytes))
        #expect(throws: PingError.payloadMismatch) { try promise.futureResult.wait() }
    }
}
