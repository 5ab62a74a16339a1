import Libp2p
import NIOCore
import Testing

@Suite struct MplexSessionTests {
    @Test func outboundStreamFrames() throws {
        var session = MplexSession()
        let stream = try session.openStream()
        #expect(stream == MuxedStreamID(0))
        #expect(!MplexSession.isRemotelyOpened(stream))
        // NewStream (flag 0) for id 0, named "0".
        #expect(session.takeOutboundBytes() == hexBuffer("00 01 30"))
        try session.write(ByteBuffer(string: "hi"), on: stream)
        // MessageInitiator: 0 << 3 | 2.
        #expect(session.takeOutboundBytes() == hexBuffer("02 02 6869"))
        try session.closeWrite(stream)
        #expect(session.takeOutboundBytes() == hexBuffer("04 00"))
        #expect(throws: StreamMuxerError.streamClosedForWriting(stream)) {
            try session.write(ByteBuffer(string: "x"), on: stream)
        }
        session.reset(stream)
        #expect(session.takeOutboundBytes() == hexBuffer("06 00"))
        #expect(session.streamCount == 0)
    }

    @Test func inboundStreamLifecycle() throws {
        var session = MplexSession()
        // NewStream id 5 (5 << 3 = 0x28) named "5", then MessageInitiator (0x2a) "abc".
        session.receive(hexBuffer("28 01 35  2a 03 616263"))
        let stream = MuxedStreamID(11)
        #expect(drainEvents(&session) == [.streamOpened(stream), .data(stream, ByteBuffer(string: "abc"))])
        #expect(MplexSession.isRemotelyOpened(stream))
        try session.write(ByteBuffer(string: "ok"), on: stream)
        // MessageReceiver: 5 << 3 | 1.
        #expect(session.takeOutboundBytes() == hexBuffer("29 02 6f6b"))
        session.receive(hexBuffer("2c 00"))  // CloseInitiator
        #expect(drainEvents(&session) == [.remoteClosed(stream)])
        try session.closeWrite(stream)
        #expect(session.takeOutboundBytes() == hexBuffer("2b 00"))  // CloseReceiver
        #expect(drainEvents(&session) == [.streamClosed(stream)])
        #expect(session.streamCount == 0)
    }

    @Test func receiverMessagesNameOurStreams() throws {
        var session = MplexSession()
        for _ in 0..<17 { _ = try session.openStream() }
        _ = session.takeOutboundBytes()
        // Stream 16: header 16 << 3 | 1 = 129 = varint 81 01.
        session.receive(hexBuffer("81 01 02 7879  85 01 00"))
        #expect(drainEvents(&session) == [.data(MuxedStreamID(32), ByteBuffer(string: "xy")),
                                          .streamReset(MuxedStreamID(32), errorCode: nil)])
        #expect(session.streamCount == 16)
    }

    @Test func messageLargerThanOneMiBIsRejectedFromItsHeader() {
        var session = MplexSession()
        // length varint 81 80 40 = 0x100001
        session.receive(hexBuffer("02 81 80 40"))
        #expect(drainEvents(&session) == [.sessionError(.frameTooLarge(length: 0x100001, limit: 0x100000))])
    }

    @Test func invalidFlagAndMalformedVarint() {
        var a = MplexSession()
        a.receive(hexBuffer("07 00"))
        #expect(drainEvents(&a) == [.sessionError(.invalidFrameType(7))])
        var b = MplexSession()
        b.receive(hexBuffer("80 00 00"))
        #expect(drainEvents(&b) == [.sessionError(.malformedVarint)])
        var c = MplexSession()
        c.receive(hexBuffer("ffffffffffffffffff 01"))
        #expect(drainEvents(&c) == [.sessionError(.malformedVarint)])
    }

    @Test func floodPastTheLimitIsReset() {
        var settings = MplexSettings()
        settings.maxConcurrentStreams = 1
        var session = MplexSession(settings: settings)
        session.receive(hexBuffer("08 00  10 00  12 01 61"))
        #expect(drainEvents(&session) == [
            .streamOpened(MuxedStreamID(3)),
            .streamRefused(MuxedStreamID(5), reason: .tooManyStreams(limit: 1)),
        ])
        // ResetReceiver for id 2: 2 << 3 | 5 = 0x15. Its data (MessageInitiator 0x12) is dropped.
        #expect(session.takeOutboundBytes() == hexBuffer("15 00"))
    }

    @Test func duplicateNewStreamIsASessionError() {
        var session = MplexSession()
        session.receive(hexBuffer("08 00 08 00"))
        #expect(drainEvents(&session) == [.streamOpened(MuxedStreamID(3)), .sessionError(.duplicateStream(1))])
    }

    @Test func dataAfterRemoteCloseResetsTheStream() {
        var session = MplexSession()
        session.receive(hexBuffer("08 00 0c 00 0a 01 61"))
        #expect(drainEvents(&session) == [.streamOpened(MuxedStreamID(3)), .remoteClosed(MuxedStreamID(3)),
                                          .streamReset(MuxedStreamID(3), errorCode: nil)])
        #expect(session.takeOutboundBytes() == hexBuffer("0d 00"))  // ResetReceiver for id 1
    }

    @Test func unknownStreamMessagesAreIgnored() {
        var session = MplexSession()
        session.receive(hexBuffer("4a 02 abcd 4c 00 4e 00"))
        #expect(drainEvents(&session).isEmpty)
        #expect(session.takeOutboundBytes() == nil)
    }

    @Test func backToBackByteByByteAndLargeWrites() throws {
        var a = MplexSession()
        var b = MplexSession()
        let stream = try a.openStream()
        let count = 2 * 1024 * 1024 + 17
        let payload = ByteBuffer(bytes: [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count { buffer[i] = UInt8(truncatingIfNeeded: i &* 13) }
            initialized = count
        })
        try a.write(payload, on: stream)
        try a.closeWrite(stream)
        var wire = a.takeOutboundBytes()!
        // Large payload is split into 1 MiB messages; feed the first 200 bytes one at a time.
        var received = ByteBuffer()
        var events: [StreamMuxerEvent] = []
        func feed(_ bytes: ByteBuffer) {
            b.receive(bytes)
            while let event = b.nextEvent() {
                if case .data(_, var data) = event { received.writeBuffer(&data) } else { events.append(event) }
            }
        }
        for _ in 0..<200 { feed(wire.readSlice(length: 1)!) }
        feed(wire)
        #expect(received == payload)
        let remote = MuxedStreamID(1)
        #expect(events == [.streamOpened(remote), .remoteClosed(remote)])
        try b.write(ByteBuffer(string: "bye"), on: remote)
        try b.closeWrite(remote)
        a.receive(b.takeOutboundBytes()!)
        #expect(drainEvents(&a) == [.data(stream, ByteBuffer(string: "bye")), .remoteClosed(stream), .streamClosed(stream)])
        #expect(drainEvents(&b) == [.streamClosed(remote)])
        #expect(a.streamCount == 0 && b.streamCount == 0)
    }
}
