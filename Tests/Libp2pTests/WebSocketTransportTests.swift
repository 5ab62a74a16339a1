import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Libp2p

// MARK: - Helpers

/// Echoes every byte it reads (the listener's "upper layer" in these tests).
private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

/// Collects bytes until `expected` have arrived, then fulfils `done`.
private final class CollectHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var received = ByteBuffer()
    private let expected: Int
    private let done: EventLoopPromise<ByteBuffer>

    init(expected: Int, done: EventLoopPromise<ByteBuffer>) {
        self.expected = expected
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = Self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
        if self.received.readableBytes >= self.expected {
            self.done.succeed(self.received)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.done.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.fail(WebSocketTransportError.closedDuringHandshake)
    }
}

private let echoInitializer: WebSocketTransport.ChannelInitializer = { channel in
    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
}

/// Deterministic pseudo-random bytes (xorshift64).
private func patternBytes(_ count: Int, seed: UInt64 = 0x2545_F491_4F6C_DD1D) -> [UInt8] {
    var state = seed
    var out = [UInt8]()
    out.reserveCapacity(count)
    for _ in 0..<count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        out.append(UInt8(truncatingIfNeeded: state >> 24))
    }
    return out
}

private func withGroup<T>(_ body: (MultiThreadedEventLoopGroup) async throws -> T) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    do {
        let result = try await body(group)
        try await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
}

private func port(of channel: any Channel) throws -> Int {
    try #require(channel.localAddress?.port)
}

/// Dials, writes `payload` in chunks of odd sizes, and returns what the echo listener sent back.
private func echoRoundTrip(
    port: Int,
    tls: WebSocketClientTLS?,
    payload: [UInt8],
    group: any EventLoopGroup,
    path: String = "/"
) async throws -> [UInt8] {
    let done = group.next().makePromise(of: ByteBuffer.self)
    let dialed = WebSocketTransport.dial(
        host: "127.0.0.1",
        port: port,
        tls: tls,
        path: path,
        group: group
    ) { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(CollectHandler(expected: payload.count, done: done))
        }
    }
    // A failed dial never reaches the collector: complete its promise so it is not leaked.
    dialed.whenFailure { done.fail($0) }
    let channel = try await dialed.get()
    let chunkSizes = [1, 7, 4093, 65_537, 131_071, 333, 99_991]
    var offset = 0
    var index = 0
    while offset < payload.count {
        let size = min(chunkSizes[index % chunkSizes.count], payload.count - offset)
        channel.write(ByteBuffer(bytes: payload[offset..<(offset + size)]), promise: nil)
        offset += size
        index += 1
    }
    channel.flush()
    let echoed = try await done.futureResult.get()
    try await channel.close()
    return Array(echoed.readableBytesView)
}

// MARK: - Raw TCP client for hand-built frames

/// A TCP connection driven byte by byte, for sending hand-made HTTP and WebSocket frames.
private struct RawConnection {
    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    var pending: [UInt8] = []

    func send(_ bytes: [UInt8]) async throws {
        try await self.outbound.write(ByteBuffer(bytes: bytes))
    }

    func send(_ text: String) async throws {
        try await self.send(Array(text.utf8))
    }

    /// Reads more bytes; false at EOF.
    mutating func fill() async throws -> Bool {
        guard let buffer = try await self.inbound.next() else { return false }
        self.pending += buffer.readableBytesView
        return true
    }

    /// The HTTP response head, through the blank line.
    mutating func readHead() async throws -> String {
        while true {
            if let end = self.pending.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: self.pending[..<end.upperBound], as: UTF8.self)
                self.pending.removeSubrange(..<end.upperBound)
                return head
            }
            guard try await self.fill() else { throw WebSocketTransportError.closedDuringHandshake }
        }
    }

    /// Reads everything until the server closes. A reset counts as the end too: a server that closes
    /// with unread input in its socket buffer makes the kernel send RST instead of FIN.
    mutating func readToEOF() async throws -> [UInt8] {
        while (try? await self.fill()) == true {}
        defer { self.pending = [] }
        return self.pending
    }

    /// One unmasked server frame, or nil at EOF.
    mutating func readFrame() async throws -> (fin: Bool, opcode: UInt8, masked: Bool, payload: [UInt8])? {
        while true {
            if self.pending.count >= 2 {
                let b0 = self.pending[0]
                let b1 = self.pending[1]
                var length = Int(b1 & 0x7F)
                var headerLength = 2
                if length == 126, self.pending.count >= 4 {
                    length = Int(self.pending[2]) << 8 | Int(self.pending[3])
                    headerLength = 4
                } else if length == 127, self.pending.count >= 10 {
                    length = self.pending[2..<10].reduce(0) { $0 << 8 | Int($1) }
                    headerLength = 10
                }
                if b1 & 0x7F < 126 || headerLength > 2, self.pending.count >= headerLength + length {
                    let payload = Array(self.pending[headerLength..<(headerLength + length)])
                    self.pending.removeSubrange(..<(headerLength + length))
                    return (b0 & 0x80 != 0, b0 & 0x0F, b1 & 0x80 != 0, payload)
                }
            }
            guard try await self.fill() else { return nil }
        }
    }
}

/// A masked client frame (RFC 6455 § 5.2), hand-built.
private func clientFrame(opcode: UInt8, fin: Bool = true, payload: [UInt8], key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]) -> [UInt8] {
    var frame: [UInt8] = [(fin ? 0x80 : 0) | opcode]
    switch payload.count {
    case 0...125: frame.append(0x80 | UInt8(payload.count))
    case 126...0xFFFF: frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    default: frame += [0x80 | 127] + (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
    }
    frame += key
    frame += payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
    return frame
}

private let upgradeKey = "dGhlIHNhbXBsZSBub25jZQ=="

private func upgradeRequest(path: String) -> String {
    "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: \(upgradeKey)\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

private func withRawConnection<T: Sendable>(
    port: Int,
    group: any EventLoopGroup,
    _ body: (inout RawConnection) async throws -> T
) async throws -> T {
    let channel = try await ClientBootstrap(group: group)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    var result: T? = nil
    do {
        try await channel.executeThenClose { inbound, outbound in
            var connection = RawConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            result = try await body(&connection)
        }
    } catch let error as ChannelError where error == .ioOnClosedChannel || error == .alreadyClosed {
        // The server hung up first (what several tests wait for); closing our end then has nothing to do.
        guard result != nil else { throw error }
    }
    return try #require(result)
}

/// Sends the upgrade request and checks the 101 answer byte for byte where RFC 6455 fixes it.
private func upgrade(_ connection: inout RawConnection, path: String) async throws {
    try await connection.send(upgradeRequest(path: path))
    let head = try await connection.readHead()
    #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
    // RFC 6455 § 1.3 example key and accept value.
    #expect(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "\(head)")
    #expect(head.lowercased().contains("upgrade: websocket"))
}

// MARK: - TLS material

// MARK: - Tests

@Suite("WebSocket transport over loopback", .timeLimit(.minutes(2)))
struct WebSocketTransportTests {
    @Test func wsEchoOf5MBInOddChunks() async throws {
        try await withGroup { group in
            let server = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, group: group, initializer: echoInitializer).get()
            let payload = patternBytes(5_000_000)
            let echoed = try await echoRoundTrip(port: try port(of: server), tls: nil, payload: payload, group: group)
            #expect(echoed.count == payload.count)
            #expect(echoed == payload)
            try await server.close()
        }
    }

    @Test func wsAndWssListenersTogether() async throws {
        let pki = try TestPKI.make()
        defer { pki.remove() }
        try await withGroup { group in
            let serverTLS = try WebSocketServerTLS(certificateChainFile: pki.certificateFile, privateKeyFile: pki.keyFile)
            let wss = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, tls: serverTLS, group: group, initializer: echoInitializer).get()
            let ws = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, group: group, initializer: echoInitializer).get()
            let payload = patternBytes(5_000_000, seed: 77)

            // Verified against our CA: the certificate's IP SAN matches 127.0.0.1 (no SNI for an IP).
            let byIP = try WebSocketClientTLS(trustRootsFile: pki.caFile)
            let echoedTLS = try await echoRoundTrip(port: try port(of: wss), tls: byIP, payload: payload, group: group)
            #expect(echoedTLS == payload)

            // SNI "localhost", matched by the DNS SAN.
            let bySNI = try WebSocketClientTLS(trustRootsFile: pki.caFile, serverName: "localhost")
            let small = patternBytes(70_000, seed: 5)
            #expect(try await echoRoundTrip(port: try port(of: wss), tls: bySNI, payload: small, group: group, path: "/p2p/x") == small)

            let echoedPlain = try await echoRoundTrip(port: try port(of: ws), tls: nil, payload: small, group: group)
            #expect(echoedPlain == small)

            // The system roots do not trust our throwaway CA: the dial must fail in TLS.
            let untrusted = try WebSocketClientTLS(trustRootsFile: nil)
            await #expect(throws: (any Error).self) {
                _ = try await echoRoundTrip(port: try port(of: wss), tls: untrusted, payload: small, group: group)
            }
            // Name checks, against a certificate that names only DNS:localhost. (swift-nio-ssl accepts a
            // certificate whose IP SAN matches the connected address whatever the SNI name, so the
            // IP-bearing certificate above cannot show a name mismatch.)
            let dnsOnlyTLS = try WebSocketServerTLS(certificateChainFile: pki.dnsOnlyCertificateFile, privateKeyFile: pki.keyFile)
            let dnsOnly = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, tls: dnsOnlyTLS, group: group, initializer: echoInitializer).get()
            let dnsPort = try port(of: dnsOnly)
            #expect(try await echoRoundTrip(port: dnsPort, tls: bySNI, payload: small, group: group) == small)
            let wrongName = try WebSocketClientTLS(trustRootsFile: pki.caFile, serverName: "example.org")
            await #expect(throws: (any Error).self) {
                _ = try await echoRoundTrip(port: dnsPort, tls: wrongName, payload: small, group: group)
            }
            await #expect(throws: (any Error).self, "no SNI and no IP SAN: verification must fail") {
                _ = try await echoRoundTrip(port: dnsPort, tls: byIP, payload: small, group: group)
            }
            try await dnsOnly.close()
            try await wss.close()
            try await ws.close()
        }
    }

    @Test func rawUpgradeOnAnyPathWithFragmentsSplitAcrossWrites() async throws {
        try await withGroup { group in
            let server = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, group: group, initializer: echoInitializer).get()
            let received = try await withRawConnection(port: try port(of: server), group: group) { connection in
                try await upgrade(&connection, path: "/p2p/xyz")
                let text = clientFrame(opcode: 0x1, fin: false, payload: Array("hello, ".utf8))
                let continuation = clientFrame(opcode: 0x0, fin: true, payload: Array("fragmented world".utf8))
                // Each frame split in the middle of its header or payload, sent as separate TCP writes.
                for part in [Array(text[..<1]), Array(text[1..<9]), Array(text[9...]), Array(continuation[..<3]), Array(continuation[3...])] {
                    try await connection.send(part)
                    try await Task.sleep(for: .milliseconds(15))
                }
                var bytes: [UInt8] = []
                while bytes.count < 23, let frame = try await connection.readFrame() {
                    #expect(frame.opcode == 0x2, "server must answer in binary frames")
                    #expect(frame.fin)
                    #expect(!frame.masked, "server frames are never masked")
                    bytes += frame.payload
                }
                return bytes
            }
            #expect(String(decoding: received, as: UTF8.self) == "hello, fragmented world")
            try await server.close()
        }
    }

    @Test func pingIsAnsweredWithPongAndCloseWithClose() async throws {
        try await withGroup { group in
            let server = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, group: group, initializer: echoInitializer).get()
            try await withRawConnection(port: try port(of: server), group: group) { connection in
                try await upgrade(&connection, path: "/")
                try await connection.send(clientFrame(opcode: 0x9, payload: Array("are you there".utf8)))
                let pong = try #require(try await connection.readFrame())
                #expect(pong.opcode == 0xA)
                #expect(pong.payload == Array("are you there".utf8))

                try await connection.send(clientFrame(opcode: 0x8, payload: [0x03, 0xE8] + Array("bye".utf8)))
                let close = try #require(try await connection.readFrame())
                #expect(close.opcode == 0x8)
                #expect(Array(close.payload.prefix(2)) == [0x03, 0xE8], "close must echo 1000")
                #expect(try await connection.readToEOF().isEmpty, "server closes TCP after the close frame")
            }
            try await server.close()
        }
    }

    @Test func oversizeFrameClosesWith1009WhileOthersContinue() async throws {
        try await withGroup { group in
            let configuration = WebSocketTransportConfiguration(maxFrameSize: 64 * 1024)
            let server = try await WebSocketTransport.listen(
                host: "127.0.0.1", port: 0, configuration: configuration, group: group, initializer: echoInitializer
            ).get()
            let serverPort = try port(of: server)
            // A well-behaved connection opened first and used after the bad one is gone.
            let done = group.next().makePromise(of: ByteBuffer.self)
            let good = try await WebSocketTransport.dial(host: "127.0.0.1", port: serverPort, group: group) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(CollectHandler(expected: 65_537, done: done))
                }
            }.get()

            try await withRawConnection(port: serverPort, group: group) { connection in
                try await upgrade(&connection, path: "/")
                // 65_537 bytes is go-libp2p's largest Noise message; it is over this listener's 64 KiB limit.
                try await connection.send(clientFrame(opcode: 0x2, payload: patternBytes(65_537)))
                let close = try #require(try await connection.readFrame())
                #expect(close.opcode == 0x8)
                #expect(Array(close.payload.prefix(2)) == [0x03, 0xF1], "expected status 1009")
                #expect(String(decoding: close.payload.dropFirst(2), as: UTF8.self).contains("limit"))
                _ = try await connection.readToEOF()
            }

            // 65_537 bytes in one write becomes one 65_537-byte frame from the dialer: too large for
            // this listener too, so send it in two writes below the limit.
            let payload = patternBytes(65_537, seed: 9)
            good.write(ByteBuffer(bytes: payload[..<40_000]), promise: nil)
            try await good.writeAndFlush(ByteBuffer(bytes: payload[40_000...]))
            let echoed = try await done.futureResult.get()
            #expect(Array(echoed.readableBytesView) == payload)
            try await good.close()
            try await server.close()
        }
    }

    @Test func defaultLimitAcceptsGoLibp2pNoiseFrames() async throws {
        try await withGroup { group in
            let server = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, group: group, initializer: echoInitializer).get()
            try await withRawConnection(port: try port(of: server), group: group) { connection in
                try await upgrade(&connection, path: "/")
                let payload = patternBytes(65_537, seed: 3)
                try await connection.send(clientFrame(opcode: 0x2, payload: payload))
                var bytes: [UInt8] = []
                while bytes.count < payload.count, let frame = try await connection.readFrame() {
                    #expect(frame.opcode == 0x2)
                    bytes += frame.payload
                }
                #expect(bytes == payload)
            }
            try await server.close()
        }
    }

    @Test func unfinishedUpgradeIsClosedAfterTimeout() async throws {
        try await withGroup { group in
            let configuration = WebSocketTransportConfiguration(handshakeTimeout: .milliseconds(200))
            let server = try await WebSocketTransport.listen(
                host: "127.0.0.1", port: 0, configuration: configuration, group: group, initializer: echoInitializer
            ).get()
            let leftover = try await withRawConnection(port: try port(of: server), group: group) { connection in
                // Half a request line, then silence: the listener must hang up on its own.
                // On a loaded machine the timer may fire before this write; the hang-up is what counts.
                try? await connection.send("GET /p2p/slow HTTP/1.1\r\nHost: 127")
                return try await connection.readToEOF()
            }
            #expect(leftover.isEmpty)
            try await server.close()
        }
    }

    @Test func dialerTimesOutOnSilentServer() async throws {
        try await withGroup { group in
            // A TCP server that accepts and never answers.
            let silent = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            let configuration = WebSocketTransportConfiguration(handshakeTimeout: .milliseconds(200))
            await #expect(throws: WebSocketTransportError.handshakeTimedOut) {
                _ = try await WebSocketTransport.dial(
                    host: "127.0.0.1", port: try port(of: silent), configuration: configuration, group: group,
                    initializer: echoInitializer
                ).get()
            }
            try await silent.close()
        }
    }

    @Test func plainHTTPGetsBannerOr404() async throws {
        try await withGroup { group in
            let configuration = WebSocketTransportConfiguration(banner: "edgeswap 0.0.1 /ip4/127.0.0.1/tcp/0/ws")
            let server = try await WebSocketTransport.listen(
                host: "127.0.0.1", port: 0, configuration: configuration, group: group, initializer: echoInitializer
            ).get()
            let serverPort = try port(of: server)
            let root = try await withRawConnection(port: serverPort, group: group) { connection in
                try await connection.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return String(decoding: try await connection.readToEOF(), as: UTF8.self)
            }
            #expect(root.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(root)")
            #expect(root.lowercased().contains("content-type: text/plain"))
            #expect(root.hasSuffix("\r\n\r\nedgeswap 0.0.1 /ip4/127.0.0.1/tcp/0/ws\n"), "\(root)")

            let other = try await withRawConnection(port: serverPort, group: group) { connection in
                try await connection.send("GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return String(decoding: try await connection.readToEOF(), as: UTF8.self)
            }
            #expect(other.hasPrefix("HTTP/1.1 404"), "\(other)")

            let badUpgrade = try await withRawConnection(port: serverPort, group: group) { connection in
                try await connection.send("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n")
                return String(decoding: try await connection.readToEOF(), as: UTF8.self)
            }
            #expect(badUpgrade.hasPrefix("HTTP/1.1 400"), "\(badUpgrade)")
            try await server.close()
        }
    }
}

/// TCP keepalive on accepted sockets: a peer whose machine vanished without a FIN must not hold its
/// connection forever.
@Suite struct WebSocketKeepaliveTests {
    /// The accepted socket's SO_KEEPALIVE and TCP_KEEPIDLE, read inside the upgrade initializer.
    private func acceptedKeepalive(_ idle: TimeAmount?) async throws -> (enabled: Int, idle: Int) {
        try await withGroup { group in
            let seen = group.next().makePromise(of: (Int, Int).self)
            let initializer: WebSocketTransport.ChannelInitializer = { channel in
                channel.eventLoop.makeCompletedFuture {
                    let options = try #require(channel.syncOptions)
                    let enabled = try options.getOption(.socketOption(.so_keepalive))
                    let tcp = NIOBSDSocket.OptionLevel(rawValue: CInt(IPPROTO_TCP))
                    let seconds = try options.getOption(
                        ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: TCP_KEEPIDLE)))
                    seen.succeed((enabled, seconds))
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            let configuration = WebSocketTransportConfiguration(tcpKeepaliveIdle: idle)
            let server = try await WebSocketTransport.listen(host: "127.0.0.1", port: 0, configuration: configuration,
                                                             group: group, initializer: initializer).get()
            let payload = patternBytes(1000)
            #expect(try await echoRoundTrip(port: try port(of: server), tls: nil, payload: payload, group: group) == payload)
            let result = try await seen.futureResult.get()
            try await server.close()
            return result
        }
    }

    @Test func acceptedSocketsProbeIdlePeers() async throws {
        let on = try await acceptedKeepalive(.seconds(45))
        #expect(on.enabled != 0)
        #expect(on.idle == 45)
        let off = try await acceptedKeepalive(nil)
        #expect(off.enabled == 0)
    }
}
