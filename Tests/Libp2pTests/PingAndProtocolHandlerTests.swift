import Libp2p
import NIOCore
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

/// The async services over NIO's testing streams: `source` plays the remote's bytes, `sink` collects ours
/// and ends when we half-close.
@Suite struct ProtocolServiceTests {
    typealias Inbound = NIOAsyncChannelInboundStream<ByteBuffer>
    typealias Outbound = NIOAsyncChannelOutboundWriter<ByteBuffer>

    private func collect(_ sink: Outbound.TestSink) async -> [UInt8] {
        var out: [UInt8] = []
        for await chunk in sink { out += chunk.readableBytesView }
        return out
    }

    @Test func identifyResponderWritesOneDelimitedMessageAndHalfCloses() async throws {
        let message = try IdentifyMessage(protobuf: IdentifyFixture.kuboMessage)
        let (outbound, sink) = Outbound.makeTestingWriter()
        try await IdentifyService.respond(with: message, outbound: outbound)
        // The sink ends only because the responder finished (half-closed) its side.
        #expect(await collect(sink) == [120] + IdentifyFixture.kuboMessage)
    }

    @Test func identifyRequestChecksThePeer() async throws {
        let key = try PublicKey(protobuf: IdentifyFixture.publicKeyProtobuf)
        let (inbound, source) = Inbound.makeTestingStream()
        let (outbound, sink) = Outbound.makeTestingWriter()
        source.yield(ByteBuffer(bytes: [120] + IdentifyFixture.kuboMessage.prefix(50)))
        source.yield(ByteBuffer(bytes: IdentifyFixture.kuboMessage.dropFirst(50)))
        source.finish()
        let message = try await IdentifyService.request(inbound: inbound, outbound: outbound, expectedPeer: key.peerID)
        #expect(message.agentVersion == "kubo/0.22.0/")
        // The initiator has nothing to say: it half-closed without writing.
        #expect(await collect(sink).isEmpty)

        let other = PrivateKey.generateEd25519().peerID
        let (inbound2, source2) = Inbound.makeTestingStream()
        let (outbound2, _) = Outbound.makeTestingWriter()
        source2.yield(ByteBuffer(bytes: [120] + IdentifyFixture.kuboMessage))
        source2.finish()
        await #expect(throws: IdentifyError.publicKeyMismatch(expected: "\(other)", got: "\(key.peerID)")) {
            try await IdentifyService.request(inbound: inbound2, outbound: outbound2, expectedPeer: other)
        }
    }

    @Test func identifyRequestTimesOut() async throws {
        let (inbound, source) = Inbound.makeTestingStream()
        let (outbound, _) = Outbound.makeTestingWriter()
        source.yield(ByteBuffer(bytes: [120]))
        await #expect(throws: IdentifyTimeout()) {
            try await IdentifyService.request(inbound: inbound, outbound: outbound, expectedPeer: nil,
                                              timeout: .milliseconds(50))
        }
        source.finish()
    }

    @Test func pingResponderEchoesAndEnforcesTheStreamLimit() async throws {
        let service = PingService()
        let peer = PrivateKey.generateEd25519().peerID
        let payload = PingInitiator.randomPayload()
        // Two streams stay open (their remote has not closed yet)...
        var sources: [Inbound.TestSource] = []
        var tasks: [Task<Int, any Error>] = []
        var sinks: [Outbound.TestSink] = []
        for _ in 0..<2 {
            let (inbound, source) = Inbound.makeTestingStream()
            let (outbound, sink) = Outbound.makeTestingWriter()
            sources.append(source)
            sinks.append(sink)
            tasks.append(Task { try await service.respond(to: peer, inbound: inbound, outbound: outbound) })
        }
        // ...once both are counted, a third from the same peer is refused.
        var iterator = sinks[0].makeAsyncIterator()
        sources[0].yield(ByteBuffer(bytes: payload.prefix(10)))
        sources[0].yield(ByteBuffer(bytes: payload.dropFirst(10)))
        #expect(await iterator.next() == ByteBuffer(bytes: payload))
        var second = sinks[1].makeAsyncIterator()
        sources[1].yield(ByteBuffer(bytes: payload))
        #expect(await second.next() == ByteBuffer(bytes: payload))
        #expect(service.openStreams(from: peer) == 2)
        let (inbound3, _) = Inbound.makeTestingStream()
        let (outbound3, _) = Outbound.makeTestingWriter()
        await #expect(throws: PingError.tooManyStreams(limit: 2)) {
            try await service.respond(to: peer, inbound: inbound3, outbound: outbound3)
        }
        // Another peer is not affected.
        let (inbound4, source4) = Inbound.makeTestingStream()
        let (outbound4, _) = Outbound.makeTestingWriter()
        source4.finish()
        #expect(try await service.respond(to: PrivateKey.generateEd25519().peerID, inbound: inbound4,
                                          outbound: outbound4) == 0)
        // The remote half-closes: the responder half-closes too (the sink ends) and frees its slot.
        sources[0].yield(ByteBuffer(bytes: payload.prefix(3)))
        sources[0].finish()
        #expect(await iterator.next() == nil)
        #expect(try await tasks[0].value == 1)
        #expect(service.openStreams(from: peer) == 1)
        sources[1].finish()
        #expect(try await tasks[1].value == 1)
        #expect(service.openStreams(from: peer) == 0)
    }

    @Test func pingInitiatorMeasuresAgainstAnEcho() async throws {
        let (inbound, source) = Inbound.makeTestingStream()
        let (outbound, sink) = Outbound.makeTestingWriter()
        // The "remote" echoes whatever the initiator writes.
        let echo = Task {
            var count = 0
            for await chunk in sink {
                source.yield(chunk)
                count += 1
            }
            source.finish()
            return count
        }
        let rtts = try await PingService.ping(count: 3, inbound: inbound, outbound: outbound)
        #expect(rtts.count == 3)
        #expect(await echo.value == 3)
    }

    @Test func pingInitiatorRefusesACorruptEchoAndAnEarlyClose() async throws {
        let (inbound, source) = Inbound.makeTestingStream()
        let (outbound, sink) = Outbound.makeTestingWriter()
        let corrupt = Task {
            for await chunk in sink {
                var bytes = Array(chunk.readableBytesView)
                bytes[0] ^= 0xff
                source.yield(ByteBuffer(bytes: bytes))
            }
        }
        await #expect(throws: PingError.payloadMismatch) {
            try await PingService.ping(count: 1, inbound: inbound, outbound: outbound)
        }
        corrupt.cancel()

        let (inbound2, source2) = Inbound.makeTestingStream()
        let (outbound2, _) = Outbound.makeTestingWriter()
        source2.finish()
        await #expect(throws: PingError.closedBeforeEcho) {
            try await PingService.ping(count: 1, inbound: inbound2, outbound: outbound2)
        }
    }
}
