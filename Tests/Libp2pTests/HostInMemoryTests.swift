// The connection upgrade and stream handling with no sockets: two EmbeddedChannels back to back on one
// EmbeddedEventLoop, bytes moved between them by `interactInMemory` (as swift-nio-ssh's EndToEndTests do).

import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import Libp2p

// MARK: - Harness

/// A client and a server channel on one loop; `interactInMemory` moves outbound bytes across until quiet.
private final class BackToBack {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let server: EmbeddedChannel

    init() throws {
        self.client = EmbeddedChannel(loop: self.loop)
        self.server = EmbeddedChannel(loop: self.loop)
        try self.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try self.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
    }

    /// Moves bytes both ways until neither side writes anything more. Returns the bytes each side sent.
    @discardableResult
    func interactInMemory() throws -> (client: Int, server: Int) {
        var sent = (client: 0, server: 0)
        var progress = true
        while progress {
            progress = false
            self.loop.run()
            while self.client.isActive, let data = try self.client.readOutbound(as: ByteBuffer.self) {
                sent.client += data.readableBytes
                progress = true
                if self.server.isActive { try self.server.writeInbound(data) }
            }
            while self.server.isActive, let data = try self.server.readOutbound(as: ByteBuffer.self) {
                sent.server += data.readableBytes
                progress = true
                if self.client.isActive { try self.client.writeInbound(data) }
            }
            // A closed side is a closed TCP connection: the other side sees EOF.
            if self.client.isActive != self.server.isActive {
                let open = self.client.isActive ? self.client : self.server
                _ = try? open.close().wait()
                progress = true
            }
        }
        return sent
    }

    func finish() {
        _ = try? self.client.finish(acceptAlreadyClosed: true)
        _ = try? self.server.finish(acceptAlreadyClosed: true)
    }
}

private let quiet: Logger = {
    var logger = Logger(label: "test.inmemory")
    logger.logLevel = .critical
    return logger
}()

/// Echoes reads; half-closes when the peer does.
private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }
    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(mode: .output, promise: nil)
        }
    }
}

/// Collects reads and notes the peer's half-close.
private final class CollectHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received: [UInt8] = []
    var inputClosed = false
    var errors: [any Error] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.received.append(contentsOf: Self.unwrapInboundIn(data).readableBytesView)
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { self.inputClosed = true }
    }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.errors.append(error)
    }
}

/// Inbound streams: multistream listener for the echo protocol, then an echo handler.
private func echoStreams(_ channel: any Channel) -> EventLoopFuture<Void> {
    channel.eventLoop.makeCompletedFuture {
        let mss = MultistreamSelectHandler(listening: ["/echo/1.0.0"], stage: "stream", logger: quiet) { _, channel in
            try channel.pipeline.syncOperations.addHandler(EchoHandler())
        }
        try channel.pipeline.syncOperations.addHandler(mss)
    }
}

private func settings(_ key: PrivateKey, muxers: [String]? = nil) throws -> ConnectionUpgrade.Settings {
    var s = ConnectionUpgrade.Settings(identity: try NoiseIdentity(identityKey: key), logger: quiet)
    if let muxers { s.muxers = muxers }
    return s
}

/// Upgrades both sides; returns (client's view, server's view).
private func upgrade(_ pair: BackToBack, clientKey: PrivateKey, serverKey: PrivateKey, expected: PeerID?,
                     muxers: [String]? = nil)
    throws -> (EventLoopFuture<ConnectionUpgrade.Upgraded>, EventLoopFuture<ConnectionUpgrade.Upgraded>)
{
    let server = try ConnectionUpgrade.configure(
        channel: pair.server, role: .listener, settings: try settings(serverKey), inboundStreamInitializer: echoStreams)
    let client = try ConnectionUpgrade.configure(
        channel: pair.client, role: .dialer(expectedPeer: expected), settings: try settings(clientKey, muxers: muxers),
        inboundStreamInitializer: echoStreams)
    try pair.interactInMemory()
    return (client, server)
}

/// Opens an echo stream lazily with a collector on top; returns the collector and the stream channel.
private func openEchoStream(_ upgraded: ConnectionUpgrade.Upgraded, pair: BackToBack) throws
    -> (CollectHandler, any Channel)
{
    let collector = CollectHandler()
    let opened = upgraded.streams.value.openStream { channel in
        channel.eventLoop.makeCompletedFuture {
            let mss = try MultistreamSelectHandler(proposing: ["/echo/1.0.0"], lazy: true, stage: "stream",
                                                   logger: quiet, onSelected: { _, _ in })
            try channel.pipeline.syncOperations.addHandler(mss)
            try channel.pipeline.syncOperations.addHandler(collector)
        }
    }
    pair.loop.run()
    let channel = try opened.wait()
    return (collector, channel)
}

// MARK: - Tests

@Suite("Connection upgrade in memory")
struct HostInMemoryTests {
    @Test func handshakeAuthenticatesBothSidesAndNegotiatesYamux() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        let clientKey = PrivateKey.generateEd25519()
        let serverKey = try PrivateKey.generateRSA(bits: 2048)
        let (client, server) = try upgrade(pair, clientKey: clientKey, serverKey: serverKey, expected: serverKey.peerID)
        let clientView = try client.wait()
        let serverView = try server.wait()
        #expect(clientView.remotePeerID == serverKey.peerID)
        #expect(serverView.remotePeerID == clientKey.peerID)
        #expect(clientView.muxerProtocol == "/yamux/1.0.0")
        #expect(serverView.muxerProtocol == "/yamux/1.0.0")
        // Once upgraded, only the muxer and the tail remain above the byte stream.
        #expect(throws: (any Error).self) {
            _ = try pair.server.pipeline.syncOperations.handler(type: MultistreamSelectHandler.self)
        }
        _ = try pair.server.pipeline.syncOperations.handler(type: NoiseHandler.self)
    }

    @Test func streamsBothWaysEchoThroughNoiseAndYamux() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        let clientKey = PrivateKey.generateEd25519()
        let serverKey = PrivateKey.generateEd25519()
        let (client, server) = try upgrade(pair, clientKey: clientKey, serverKey: serverKey, expected: nil)
        let clientView = try client.wait()
        let serverView = try server.wait()

        for (view, label) in [(clientView, "client"), (serverView, "server")] {
            let (collector, stream) = try openEchoStream(view, pair: pair)
            let message = Array("hello from the \(label)".utf8)
            stream.writeAndFlush(ByteBuffer(bytes: message), promise: nil)
            stream.close(mode: .output, promise: nil)
            try pair.interactInMemory()
            #expect(collector.received == message)
            #expect(collector.inputClosed)
            #expect(collector.errors.isEmpty)
        }
    }

    @Test func largeWritesAreSplitIntoNoiseFramesAndArriveIntact() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        let (client, _) = try upgrade(pair, clientKey: .generateEd25519(), serverKey: .generateEd25519(), expected: nil)
        let (collector, stream) = try openEchoStream(try client.wait(), pair: pair)
        var payload = [UInt8](repeating: 0, count: 1_000_003)
        for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) }
        // Many small writes and one big one, flushed together: coalesced into ≤65519-byte Noise frames.
        for i in 0..<100 { stream.write(ByteBuffer(bytes: payload[(i * 3)..<(i * 3 + 3)]), promise: nil) }
        stream.writeAndFlush(ByteBuffer(bytes: payload[300...]), promise: nil)
        stream.close(mode: .output, promise: nil)
        let sent = try pair.interactInMemory()
        #expect(collector.received.count == payload.count)
        #expect(collector.received == payload)
        // Overhead per Noise frame is 18 bytes; yamux adds 12 per 64 KiB frame: far below 1 %.
        #expect(sent.client < payload.count + payload.count / 100)
    }

    @Test func mplexIsNegotiatedWhenTheDialerOffersOnlyMplex() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        let (client, server) = try upgrade(pair, clientKey: .generateEd25519(), serverKey: .generateEd25519(),
                                           expected: nil, muxers: ["/mplex/6.7.0"])
        let clientView = try client.wait()
        #expect(clientView.muxerProtocol == "/mplex/6.7.0")
        #expect(try server.wait().muxerProtocol == "/mplex/6.7.0")
        let (collector, stream) = try openEchoStream(clientView, pair: pair)
        stream.writeAndFlush(ByteBuffer(string: "over mplex"), promise: nil)
        try pair.interactInMemory()
        #expect(collector.received == Array("over mplex".utf8))
    }

    @Test func wrongExpectedPeerFailsTheUpgradeAndClosesTheConnection() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        let stranger = PrivateKey.generateEd25519().peerID
        let (client, server) = try upgrade(pair, clientKey: .generateEd25519(), serverKey: .generateEd25519(),
                                           expected: stranger)
        #expect(throws: (any Error).self) { _ = try client.wait() }
        #expect(throws: (any Error).self) { _ = try server.wait() }
        #expect(!pair.client.isActive)
    }

    @Test func listenerAnswersNaToSimultaneousConnectAndTLSThenAcceptsNoise() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        _ = try ConnectionUpgrade.configure(channel: pair.server, role: .listener,
                                            settings: try settings(.generateEd25519()),
                                            inboundStreamInitializer: echoStreams)
        pair.loop.run()
        var header = try #require(try pair.server.readOutbound(as: ByteBuffer.self))
        #expect(header.readBytes(length: header.readableBytes) == Array("\u{13}/multistream/1.0.0\n".utf8))
        // kubo's dialer: header, simultaneous-connect and a security proposal in one write.
        var proposal = ByteBuffer()
        for token in ["/multistream/1.0.0", "/libp2p/simultaneous-connect", "/tls/1.0.0", "/noise"] {
            Multistream.writeMessage(token, into: &proposal)
        }
        try pair.server.writeInbound(proposal)
        pair.loop.run()
        var answer: [UInt8] = []
        while var chunk = try pair.server.readOutbound(as: ByteBuffer.self) {
            answer += chunk.readBytes(length: chunk.readableBytes)!
        }
        var expected = ByteBuffer()
        for token in ["na", "na", "/noise"] { Multistream.writeMessage(token, into: &expected) }
        #expect(answer == Array(expected.readableBytesView))
        #expect(pair.server.isActive)
    }

    @Test func garbageInsteadOfTheHeaderClosesTheConnection() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        let upgraded = try ConnectionUpgrade.configure(channel: pair.server, role: .listener,
                                                       settings: try settings(.generateEd25519()),
                                                       inboundStreamInitializer: echoStreams)
        pair.loop.run()
        _ = try pair.server.readOutbound(as: ByteBuffer.self)
        _ = try? pair.server.writeInbound(ByteBuffer(string: "\u{05}GET /"))
        pair.loop.run()
        #expect(!pair.server.isActive)
        #expect(throws: (any Error).self) { _ = try upgraded.wait() }
    }

    @Test func upgradeTimesOutWhenThePeerStalls() throws {
        let pair = try BackToBack()
        defer { pair.finish() }
        var s = try settings(.generateEd25519())
        s.handshakeTimeout = .seconds(10)
        let upgraded = try ConnectionUpgrade.configure(channel: pair.server, role: .listener, settings: s,
                                                       inboundStreamInitializer: echoStreams)
        var proposal = ByteBuffer()
        for token in ["/multistream/1.0.0", "/noise"] { Multistream.writeMessage(token, into: &proposal) }
        try pair.server.writeInbound(proposal)
        pair.loop.advanceTime(by: .seconds(9))
        #expect(pair.server.isActive)
        pair.loop.advanceTime(by: .seconds(2))
        #expect(!pair.server.isActive)
        #expect(throws: (any Error).self) { _ = try upgraded.wait() }
    }
}
