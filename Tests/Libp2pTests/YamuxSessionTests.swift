import Libp2p
import NIOCore
import Testing

private func pattern(count: Int, seed: Int) -> ByteBuffer {
    let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count { buffer[i] = UInt8(truncatingIfNeeded: i &* 7 &+ seed) }
        initialized = count
    }
    return ByteBuffer(bytes: bytes)
}

private func id(_ value: UInt64) -> MuxedStreamID { MuxedStreamID(value) }

@Suite struct YamuxFrameTests {
    @Test func headerLayoutIsBigEndian() throws {
        var out = ByteBuffer()
        YamuxHeader(type: .windowUpdate, flags: [.syn, .fin], streamID: 0x0102_0304, length: 0x0A0B_0C0D)
            .write(into: &out)
        #expect(out == hexBuffer("00 01 0005 01020304 0a0b0c0d"))
        var copy = out
        #expect(try YamuxHeader.read(from: &copy)
                == YamuxHeader(type: .windowUpdate, flags: [.syn, .fin], streamID: 0x0102_0304, length: 0x0A0B_0C0D))
        #expect(copy.readableBytes == 0)
    }

    @Test func incompleteHeaderIsNotConsumed() throws {
        var partial = hexBuffer("00 02 0001 000000")
        #expect(try YamuxHeader.read(from: &partial) == nil)
        #expect(partial.readableBytes == 7)
    }
}

@Suite struct YamuxSessionTests {
    // MARK: Byte fixtures

    /// anchors-and-specs c.4: ping `00 02 0001 00000000 <opaque>` → pong `00 02 0002 00000000 <same>`.
    @Test func pingIsAnsweredImmediatelyWithTheSameOpaqueValue() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 02 0001 00000000 deadbeef"))
        #expect(server.takeOutboundBytes() == hexBuffer("00 02 0002 00000000 deadbeef"))
        #expect(drainEvents(&server).isEmpty)
    }

    @Test func pongIsReportedAsAnEvent() {
        var client = YamuxSession(role: .client)
        client.sendPing(opaque: 7)
        #expect(client.takeOutboundBytes() == hexBuffer("00 02 0001 00000000 00000007"))
        client.receive(hexBuffer("00 02 0002 00000000 00000007"))
        #expect(drainEvents(&client) == [.pong(7)])
    }

    @Test func invalidVersionIsAProtocolError() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("01 00 0001 00000001 00000000"))
        #expect(drainEvents(&server) == [.sessionError(.invalidVersion(1))])
        #expect(server.takeOutboundBytes() == hexBuffer("00 03 0000 00000000 00000001"))
        #expect(server.isFailed)
        // Further input is ignored, calls fail.
        server.receive(hexBuffer("00 02 0001 00000000 00000001"))
        #expect(server.takeOutboundBytes() == nil)
        #expect(throws: StreamMuxerError.sessionClosed) { _ = try server.openStream() }
    }

    @Test func invalidTypeIsAProtocolError() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 04 0000 00000000 00000000"))
        #expect(drainEvents(&server) == [.sessionError(.invalidFrameType(4))])
        #expect(server.takeOutboundBytes() == hexBuffer("00 03 0000 00000000 00000001"))
    }

    @Test func synWithDataOpensAStreamAndDeliversThePayload() {
        var client = YamuxSession(role: .client)
        let stream = try! client.openStream()
        #expect(stream == id(1))
        #expect(client.state(of: stream) == .synPending)
        try! client.write(ByteBuffer(string: "hello"), on: stream)
        #expect(client.state(of: stream) == .synSent)
        let wire = client.takeOutboundBytes()!
        #expect(wire == hexBuffer("00 00 0001 00000001 00000005 68656c6c6f"))

        var server = YamuxSession(role: .server)
        server.receive(wire)
        #expect(drainEvents(&server) == [.streamOpened(id(1)), .data(id(1), ByteBuffer(string: "hello"))])
        #expect(server.state(of: id(1)) == .synReceived)
        server.acceptStream(id(1))
        #expect(server.state(of: id(1)) == .open)
        let ack = server.takeOutboundBytes()!
        #expect(ack == hexBuffer("00 01 0002 00000001 00000000"))
        client.receive(ack)
        #expect(client.state(of: stream) == .open)
    }

    @Test func openWithoutWriteSendsWindowUpdateSyn() {
        var server = YamuxSession(role: .server)
        let stream = try! server.openStream()
        #expect(stream == id(2))  // server streams are even
        #expect(try! server.openStream() == id(4))
        #expect(server.takeOutboundBytes() == hexBuffer("00 01 0001 00000002 00000000  00 01 0001 00000004 00000000"))
    }

    @Test func largerReceiveWindowIsAnnouncedWithTheSyn() {
        var settings = YamuxSettings()
        settings.streamReceiveWindow = 1 << 20
        var client = YamuxSession(role: .client, settings: settings)
        _ = try! client.openStream()
        // delta = 1 MiB − 256 KiB = 0x000c0000
        #expect(client.takeOutboundBytes() == hexBuffer("00 01 0001 00000001 000c0000"))
    }

    @Test func writeAcknowledgesAnInboundStream() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 01 0001 00000003 00000000"))
        #expect(drainEvents(&server) == [.streamOpened(id(3))])
        try! server.write(ByteBuffer(string: "ok"), on: id(3))
        #expect(server.takeOutboundBytes() == hexBuffer("00 00 0002 00000003 00000002 6f6b"))
    }

    @Test func receiveWindowOverrunIsASessionProtocolError() {
        var server = YamuxSession(role: .server)
        // SYN + Data of 256 KiB + 1: rejected from the header alone, before any payload byte.
        server.receive(hexBuffer("00 00 0001 00000001 00040001"))
        #expect(drainEvents(&server) == [.streamOpened(id(1)),
                                         .sessionError(.receiveWindowExceeded(stream: 1, length: 0x40001, window: 0x40000))])
        #expect(server.takeOutboundBytes() == hexBuffer("00 03 0000 00000000 00000001"))
    }

    @Test func overrunAfterTheWindowWasConsumed() {
        var server = YamuxSession(role: .server)
        var frame = hexBuffer("00 00 0001 00000001 00040000")
        var payload = pattern(count: 0x40000, seed: 1)
        frame.writeBuffer(&payload)
        server.receive(frame)
        _ = drainEvents(&server)
        // Window is now 0; even one more byte is an overrun.
        server.receive(hexBuffer("00 00 0000 00000001 00000001 ff"))
        #expect(drainEvents(&server) == [.sessionError(.receiveWindowExceeded(stream: 1, length: 1, window: 0))])
    }

    @Test func sendSideWindowIsRespected() {
        var client = YamuxSession(role: .client)
        let stream = try! client.openStream()
        try! client.write(pattern(count: 300 * 1024, seed: 3), on: stream)
        var wire = client.takeOutboundBytes()!
        // 4 Data frames of 64 KiB = 256 KiB, nothing more.
        var dataBytes = 0
        var frames = 0
        while wire.readableBytes > 0 {
            let header = try! YamuxHeader.read(from: &wire)!
            #expect(header.type == .data)
            #expect(header.length <= 64 * 1024)
            #expect(header.flags == (frames == 0 ? .syn : []))
            wire.moveReaderIndex(forwardBy: Int(header.length))
            dataBytes += Int(header.length)
            frames += 1
        }
        #expect(dataBytes == 256 * 1024)
        #expect(frames == 4)
        #expect(client.queuedBytes(on: stream) == 44 * 1024)
        #expect(client.sendWindow(on: stream) == 0)
        // The peer grants 10 KiB: exactly 10 KiB more goes out.
        client.receive(hexBuffer("00 01 0002 00000001 00002800"))
        var more = client.takeOutboundBytes()!
        let header = try! YamuxHeader.read(from: &more)!
        #expect(header == YamuxHeader(type: .data, flags: [], streamID: 1, length: 10 * 1024))
        #expect(drainEvents(&client).isEmpty)
        // The rest: queue drains and the stream reports writable.
        client.receive(hexBuffer("00 01 0000 00000001 00100000"))
        #expect(drainEvents(&client) == [.writable(stream)])
        #expect(client.queuedBytes(on: stream) == 0)
    }

    @Test func finIsQueuedBehindData() {
        var client = YamuxSession(role: .client)
        let stream = try! client.openStream()
        try! client.write(pattern(count: 256 * 1024 + 5, seed: 0), on: stream)
        try! client.closeWrite(stream)
        #expect(client.state(of: stream) == .halfClosedLocal)
        var wire = client.takeOutboundBytes()!
        var sawFin = false
        while wire.readableBytes > 0 {
            let header = try! YamuxHeader.read(from: &wire)!
            if header.flags.contains(.fin) { sawFin = true }
            if header.type == .data { wire.moveReaderIndex(forwardBy: Int(header.length)) }
        }
        #expect(!sawFin)
        client.receive(hexBuffer("00 01 0002 00000001 00000010"))
        #expect(client.takeOutboundBytes()
                == hexBuffer("00 00 0000 00000001 00000005 \(pattern5Hex())  00 01 0004 00000001 00000000"))
        #expect(throws: StreamMuxerError.streamClosedForWriting(stream)) {
            try client.write(ByteBuffer(string: "x"), on: stream)
        }
    }

    /// Bytes 262144..<262149 of `pattern(seed: 0)`.
    private func pattern5Hex() -> String {
        let digits = Array("0123456789abcdef")
        return (262_144..<262_149).map { (value: Int) -> String in
            let byte = UInt8(truncatingIfNeeded: value &* 7)
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
        }.joined()
    }

    @Test func streamFloodPastTheLimitIsReset() {
        var settings = YamuxSettings()
        settings.maxConcurrentStreams = 2
        var server = YamuxSession(role: .server, settings: settings)
        server.receive(hexBuffer("""
            00 01 0001 00000001 00000000
            00 01 0001 00000003 00000000
            00 01 0001 00000005 00000000
            00 00 0000 00000005 00000003 616263
            """))
        #expect(drainEvents(&server) == [
            .streamOpened(id(1)), .streamOpened(id(3)), .streamRefused(id(5), reason: .tooManyStreams(limit: 2)),
        ])
        // Stream 5 gets WindowUpdate+RST, as go-yamux does; its data is discarded.
        #expect(server.takeOutboundBytes() == hexBuffer("00 01 0008 00000005 00000000"))
        #expect(server.streamCount == 2)
        #expect(!server.isFailed)
    }

    @Test func acceptBacklogLimitsUnacknowledgedStreams() {
        var settings = YamuxSettings()
        settings.acceptBacklog = 1
        var server = YamuxSession(role: .server, settings: settings)
        server.receive(hexBuffer("00 01 0001 00000001 00000000  00 01 0001 00000003 00000000"))
        #expect(drainEvents(&server) == [
            .streamOpened(id(1)), .streamRefused(id(3), reason: .acceptBacklogFull(limit: 1)),
        ])
        #expect(server.takeOutboundBytes() == hexBuffer("00 01 0008 00000003 00000000"))
        server.acceptStream(id(1))
        _ = server.takeOutboundBytes()
        server.receive(hexBuffer("00 01 0001 00000005 00000000"))
        #expect(drainEvents(&server) == [.streamOpened(id(5))])
    }

    @Test func synWithOurParityOrIdZeroIsAProtocolError() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 01 0001 00000002 00000000"))
        #expect(drainEvents(&server) == [.sessionError(.invalidStreamID(2))])
        var client = YamuxSession(role: .client)
        client.receive(hexBuffer("00 01 0001 00000000 00000000"))
        #expect(drainEvents(&client) == [.sessionError(.invalidStreamID(0))])
    }

    @Test func duplicateSynIsAProtocolError() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 01 0001 00000001 00000000  00 01 0001 00000001 00000000"))
        #expect(drainEvents(&server) == [.streamOpened(id(1)), .sessionError(.duplicateStream(1))])
    }

    @Test func peerResetRemovesTheStreamAndLaterDataIsDiscarded() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 01 0001 00000001 00000000"))
        server.acceptStream(id(1))
        _ = server.takeOutboundBytes()
        server.receive(hexBuffer("00 01 0008 00000001 00000000  00 00 0000 00000001 00000002 abcd  00 02 0001 00000000 00000009"))
        #expect(drainEvents(&server) == [.streamOpened(id(1)), .streamReset(id(1), errorCode: nil)])
        #expect(server.state(of: id(1)) == nil)
        #expect(server.takeOutboundBytes() == hexBuffer("00 02 0002 00000000 00000009"))
        #expect(throws: StreamMuxerError.unknownStream(id(1))) {
            try server.write(ByteBuffer(string: "x"), on: id(1))
        }
    }

    @Test func resetWithErrorCodeInWindowUpdate() {
        var client = YamuxSession(role: .client)
        let stream = try! client.openStream()
        _ = client.takeOutboundBytes()
        client.receive(hexBuffer("00 01 0008 00000001 00000042"))
        #expect(drainEvents(&client) == [.streamReset(stream, errorCode: 0x42)])
    }

    @Test func localResetSendsRst() {
        var client = YamuxSession(role: .client)
        let stream = try! client.openStream()
        _ = client.takeOutboundBytes()
        client.reset(stream)
        #expect(client.takeOutboundBytes() == hexBuffer("00 01 0008 00000001 00000000"))
        #expect(client.streamCount == 0)
        // A stream whose SYN never left vanishes without a frame.
        let unsent = try! client.openStream()
        client.reset(unsent)
        #expect(client.takeOutboundBytes() == nil)
    }

    @Test func dataForUnknownStreamIsSkippedIncrementally() {
        var server = YamuxSession(role: .server)
        // 4-byte payload for never-opened stream 7, split across reads, then a ping.
        server.receive(hexBuffer("00 00 0000 00000007 00000004 aa"))
        server.receive(hexBuffer("bbcc"))
        server.receive(hexBuffer("dd 00 02 0001 00000000 00000001"))
        #expect(drainEvents(&server).isEmpty)
        #expect(server.takeOutboundBytes() == hexBuffer("00 02 0002 00000000 00000001"))
        #expect(!server.isFailed)
    }

    @Test func dataForUnknownStreamLargerThanAnyWindowIsAnError() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 00 0000 00000007 00040001"))
        #expect(drainEvents(&server) == [.sessionError(.frameTooLarge(length: 0x40001, limit: 0x40000))])
    }

    @Test func goAwayNormalStopsNewStreams() {
        var client = YamuxSession(role: .client)
        let before = try! client.openStream()
        client.goAway()
        #expect(client.takeOutboundBytes() == hexBuffer("00 01 0001 00000001 00000000  00 03 0000 00000000 00000000"))
        #expect(throws: StreamMuxerError.goingAway) { _ = try client.openStream() }
        // Existing streams keep working.
        try! client.write(ByteBuffer(string: "z"), on: before)
        #expect(client.takeOutboundBytes() == hexBuffer("00 00 0000 00000001 00000001 7a"))

        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 03 0000 00000000 00000000"))
        #expect(drainEvents(&server) == [.goAwayReceived(code: 0)])
        #expect(throws: StreamMuxerError.goingAway) { _ = try server.openStream() }
        // SYNs after GoAway are refused.
        server.receive(hexBuffer("00 01 0001 00000001 00000000"))
        #expect(server.takeOutboundBytes() == hexBuffer("00 01 0008 00000001 00000000"))
    }

    @Test func goAwayWithErrorFailsTheSession() {
        var server = YamuxSession(role: .server)
        server.receive(hexBuffer("00 03 0000 00000000 00000002"))
        #expect(drainEvents(&server) == [.goAwayReceived(code: 2), .sessionError(.remoteGoAway(code: 2))])
        #expect(server.isFailed)
    }

    @Test func windowUpdateOverflowIsAProtocolError() {
        var client = YamuxSession(role: .client)
        _ = try! client.openStream()
        _ = client.takeOutboundBytes()
        client.receive(hexBuffer("00 01 0000 00000001 ffffffff"))
        #expect(drainEvents(&client) == [.sessionError(.sendWindowOverflow(stream: 1))])
    }

    @Test func windowUpdateAfterHalfTheWindowIsConsumed() {
        var server = YamuxSession(role: .server)
        var frame = hexBuffer("00 00 0001 00000001 00020000")  // 128 KiB
        var payload = pattern(count: 128 * 1024, seed: 9)
        frame.writeBuffer(&payload)
        server.receive(frame)
        _ = drainEvents(&server)
        server.acceptStream(id(1))
        _ = server.takeOutboundBytes()
        server.releaseWindow(128 * 1024 - 1, on: id(1))
        #expect(server.takeOutboundBytes() == nil)  // below half of 256 KiB
        server.releaseWindow(1, on: id(1))
        #expect(server.takeOutboundBytes() == hexBuffer("00 01 0000 00000001 00020000"))
        // Releasing more than was received grants nothing extra.
        server.releaseWindow(1 << 20, on: id(1))
        #expect(server.takeOutboundBytes() == nil)
    }

    @Test func dataPayloadIsHandedOutIncrementally() {
        var client = YamuxSession(role: .client)
        let stream = try! client.openStream()
        try! client.write(pattern(count: 1000, seed: 5), on: stream)
        try! client.closeWrite(stream)
        var wire = client.takeOutboundBytes()!
        var server = YamuxSession(role: .server)
        var received = ByteBuffer()
        var events: [StreamMuxerEvent] = []
        while wire.readableBytes > 0 {
            server.receive(wire.readSlice(length: min(7, wire.readableBytes))!)
            for event in drainEvents(&server) {
                if case .data(_, var bytes) = event {
                    #expect(bytes.readableBytes <= 7)
                    received.writeBuffer(&bytes)
                } else {
                    events.append(event)
                }
            }
        }
        #expect(received == pattern(count: 1000, seed: 5))
        #expect(events == [.streamOpened(id(1)), .remoteClosed(id(1))])
        #expect(server.state(of: id(1)) == .synReceived)
        server.acceptStream(id(1))
        #expect(server.state(of: id(1)) == .halfClosedRemote)
    }

    // MARK: Back to back

    /// Client opens `streamCount` streams and sends `bytesPerStream` on each, then FIN; the server
    /// echoes everything back and closes after the client's FIN. Both exceed the 256 KiB window.
    @Test(arguments: [(1, 1024 * 1024 + 3), (16, 300 * 1024)])
    func backToBackEcho(streamCount: Int, bytesPerStream: Int) {
        var client = YamuxSession(role: .client)
        var server = YamuxSession(role: .server)
        var sentByClient: [MuxedStreamID: ByteBuffer] = [:]
        for index in 0..<streamCount {
            let stream = try! client.openStream()
            let data = pattern(count: bytesPerStream, seed: index)
            sentByClient[stream] = data
            // Write in uneven pieces to exercise queue splitting.
            var rest = data
            while rest.readableBytes > 0 {
                try! client.write(rest.readSlice(length: min(rest.readableBytes, 100_003))!, on: stream)
            }
            try! client.closeWrite(stream)
        }
        var receivedByServer: [MuxedStreamID: ByteBuffer] = [:]
        var receivedByClient: [MuxedStreamID: ByteBuffer] = [:]
        var serverClosed: Set<MuxedStreamID> = []
        var clientClosed: Set<MuxedStreamID> = []
        var clientWritable: Set<MuxedStreamID> = []
        var rounds = 0
        while true {
            rounds += 1
            var moved = false
            if let bytes = client.takeOutboundBytes() {
                moved = true
                server.receive(bytes)
            }
            while let event = server.nextEvent() {
                switch event {
                case .streamOpened(let stream):
                    server.acceptStream(stream)
                case .data(let stream, var bytes):
                    let count = bytes.readableBytes
                    try! server.write(bytes, on: stream)
                    receivedByServer[stream, default: ByteBuffer()].writeBuffer(&bytes)
                    server.releaseWindow(count, on: stream)
                case .remoteClosed(let stream):
                    try! server.closeWrite(stream)
                case .streamClosed(let stream):
                    serverClosed.insert(stream)
                case .writable:
                    break
                default:
                    Issue.record("server: unexpected \(event)")
                }
            }
            if let bytes = server.takeOutboundBytes() {
                moved = true
                client.receive(bytes)
            }
            while let event = client.nextEvent() {
                switch event {
                case .data(let stream, var bytes):
                    let count = bytes.readableBytes
                    receivedByClient[stream, default: ByteBuffer()].writeBuffer(&bytes)
                    client.releaseWindow(count, on: stream)
                case .streamClosed(let stream):
                    clientClosed.insert(stream)
                case .writable(let stream):
                    clientWritable.insert(stream)
                case .remoteClosed:
                    break
                default:
                    Issue.record("client: unexpected \(event)")
                }
            }
            if !moved { break }
            if rounds > 100_000 {
                Issue.record("no progress")
                break
            }
        }
        // Without flow control everything would cross in two rounds; the 256 KiB window forces more,
        // and every client stream had data queued that later drained.
        #expect(rounds >= 3)
        #expect(clientWritable == Set(sentByClient.keys))
        for (stream, data) in sentByClient {
            #expect(receivedByServer[stream] == data)
            #expect(receivedByClient[stream] == data)
        }
        #expect(serverClosed == Set(sentByClient.keys))
        #expect(clientClosed == Set(sentByClient.keys))
        #expect(client.streamCount == 0)
        #expect(server.streamCount == 0)
    }

    /// Both sides open streams at once and send to each other.
    @Test func bothSidesOpenStreams() {
        var client = YamuxSession(role: .client)
        var server = YamuxSession(role: .server)
        let a = try! client.openStream()
        let b = try! server.openStream()
        try! client.write(pattern(count: 300_000, seed: 1), on: a)
        try! server.write(pattern(count: 300_000, seed: 2), on: b)
        var atServer = ByteBuffer()
        var atClient = ByteBuffer()
        for _ in 0..<50 {
            if let bytes = client.takeOutboundBytes() { server.receive(bytes) }
            if let bytes = server.takeOutboundBytes() { client.receive(bytes) }
            while let event = server.nextEvent() {
                if case .streamOpened(let s) = event { server.acceptStream(s) }
                if case .data(let s, var bytes) = event {
                    #expect(s == a)
                    server.releaseWindow(bytes.readableBytes, on: s)
                    atServer.writeBuffer(&bytes)
                }
            }
            while let event = client.nextEvent() {
                if case .streamOpened(let s) = event { client.acceptStream(s) }
                if case .data(let s, var bytes) = event {
                    #expect(s == b)
                    client.releaseWindow(bytes.readableBytes, on: s)
                    atClient.writeBuffer(&bytes)
                }
            }
        }
        #expect(atServer == pattern(count: 300_000, seed: 1))
        #expect(atClient == pattern(count: 300_000, seed: 2))
        #expect(client.state(of: a) == .open)
        #expect(client.state(of: b) == .open)
    }
}
