import Libp2p
import NIOCore
import NIOPosix
import Synchronization

/// A libp2p dialer for tests, assembled by hand from our sans-IO pieces (WebSocket transport, multistream
/// dialer, Noise initiator, yamux client session) so that a test can stop at any layer and send bad bytes.
/// Every wait is bounded by `timeout`; `TestDialerError.timedOut` names the step.
struct TestDialer {
    let channel: any Channel
    private var inbound: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
    /// Raw bytes read but not yet used by the current layer.
    private var pending = ByteBuffer()
    /// Set once Noise completes: later reads and writes go through it.
    private(set) var secure: NoiseHandshakeResult?
    /// Plaintext read but not yet used.
    private var plaintext = ByteBuffer()
    /// Set once yamux is negotiated.
    var yamux: YamuxSession?
    /// Yamux events read but not yet consumed by a test.
    private var events: [StreamMuxerEvent] = []
    let timeout: Duration

    /// Dials `ws://127.0.0.1:port/` (or `wss` with `tls`).
    static func dial(port: Int, tls: WebSocketClientTLS? = nil, group: any EventLoopGroup,
                     timeout: Duration = .seconds(60)) async throws -> TestDialer {
        let (stream, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let channel = try await WebSocketTransport.dial(host: "127.0.0.1", port: port, tls: tls, group: group) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(InboundCollector(continuation))
            }
        }.get()
        return TestDialer(channel: channel, inbound: stream.makeAsyncIterator(), timeout: timeout)
    }

    private init(channel: any Channel, inbound: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator,
                 timeout: Duration) {
        self.channel = channel
        self.inbound = inbound
        self.timeout = timeout
    }

    // MARK: raw bytes

    /// Writes raw bytes on the WebSocket stream (below Noise).
    func sendRaw(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(bytes)
    }

    /// Writes raw bytes.
    func sendRaw(_ bytes: [UInt8]) async throws {
        try await sendRaw(ByteBuffer(bytes: bytes))
    }

    /// Reads the next raw chunk; nil when the listener closed the connection.
    mutating func readRaw(_ step: String) async throws -> ByteBuffer? {
        if pending.readableBytes > 0 {
            defer { pending.clear() }
            return pending
        }
        // The deadline closes the channel, which ends the iterator; the flag tells a timeout from a close.
        let fired = TimeoutFlag()
        let channel = self.channel
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                                     + timeout.components.attoseconds / 1_000_000_000)) {
            fired.value.store(true, ordering: .relaxed)
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        let chunk = try await inbound.next()
        if fired.value.load(ordering: .relaxed) { throw TestDialerError.timedOut(step) }
        return chunk
    }

    /// Reads until the listener closes the connection; returns the bytes seen meanwhile.
    /// A reset (ECONNRESET: the listener closed with our bytes unread) counts as closed; a timeout throws.
    mutating func readUntilClosed(_ step: String) async throws -> Int {
        var total = 0
        do {
            while let chunk = try await readRaw(step) { total += chunk.readableBytes }
        } catch let error as TestDialerError {
            throw error
        } catch {
            // The connection ended with an error (reset): closed all the same.
        }
        return total
    }

    // MARK: multistream

    /// Negotiates `protocolID` at the current layer (raw before Noise, encrypted after).
    mutating func select(_ protocolID: String) async throws {
        var dialer = try MultistreamDialer(proposals: [protocolID])
        try await send(dialer.start())
        while true {
            guard let chunk = try await read("multistream \(protocolID)") else {
                throw TestDialerError.closed("during multistream negotiation of \(protocolID)")
            }
            switch try dialer.receive(chunk) {
            case .needMoreData(let write):
                if let write { try await send(write) }
            case .selected(_, let write, let leftover):
                if let write { try await send(write) }
                if secure == nil { pending = leftover } else { plaintext = leftover }
                return
            }
        }
    }

    // MARK: Noise

    /// Runs the Noise XX handshake as initiator; `expected` makes a mismatching listener an error.
    mutating func noise(identity: NoiseIdentity, expected: PeerID? = nil) async throws -> NoiseHandshakeResult {
        var machine = NoiseHandshakeStateMachine(role: .initiator, identity: identity, expectedRemotePeerID: expected)
        var action = try machine.start()
        while true {
            switch action {
            case .send(let bytes):
                try await sendRaw(bytes)
                action = .needMoreData
            case .needMoreData:
                guard var chunk = try await readRaw("noise handshake") else {
                    throw TestDialerError.closed("during the Noise handshake")
                }
                action = try machine.receive(&chunk)
            case .sendAndComplete(let bytes, let result):
                try await sendRaw(bytes)
                self.secure = result
                return result
            case .complete(let result):
                self.secure = result
                return result
            }
        }
    }

    /// Sends through Noise once it is up, raw before.
    mutating func send(_ bytes: ByteBuffer) async throws {
        try await channel.writeAndFlush(try encrypt(bytes))
    }

    /// `bytes` as Noise transport frames (or unchanged before Noise); advances the Noise nonce.
    mutating func encrypt(_ bytes: ByteBuffer) throws -> ByteBuffer {
        guard var result = secure else { return bytes }
        var out = ByteBuffer()
        var rest = bytes
        while rest.readableBytes > 0 {
            let slice = rest.readSlice(length: min(rest.readableBytes, NoiseTransport.maximumPlaintextLength))!
            try result.transport.encrypt(slice, into: &out)
        }
        secure = result
        return out
    }

    /// Reads the next chunk of plaintext (decrypted after Noise); nil when the connection closed.
    mutating func read(_ step: String) async throws -> ByteBuffer? {
        guard secure != nil else { return try await readRaw(step) }
        while true {
            if plaintext.readableBytes > 0 {
                defer { plaintext.clear() }
                return plaintext
            }
            guard var chunk = try await readRaw(step) else { return nil }
            var result = secure!
            result.transport.receive(&chunk)
            while try result.transport.decryptNext(into: &plaintext) {}
            secure = result
        }
    }

    // MARK: yamux

    /// Negotiates yamux over Noise and starts a client session.
    mutating func startYamux() async throws {
        try await select("/yamux/1.0.0")
        var session = YamuxSession(role: .client)
        if plaintext.readableBytes > 0 {
            session.receive(plaintext)
            plaintext.clear()
        }
        yamux = session
    }

    /// Sends whatever the yamux session queued.
    mutating func flushYamux() async throws {
        while let bytes = yamux?.takeOutboundBytes() { try await send(bytes) }
    }

    /// The next yamux event, reading from the connection when none is queued; nil at EOF.
    mutating func nextYamuxEvent(_ step: String) async throws -> StreamMuxerEvent? {
        while true {
            if !events.isEmpty { return events.removeFirst() }
            if let event = yamux?.nextEvent() {
                events.append(event)
                continue
            }
            try await flushYamux()
            guard let chunk = try await read(step) else { return nil }
            yamux?.receive(chunk)
        }
    }

    /// Opens a stream and negotiates `protocolID` on it (multistream inside the stream). Returns the stream id.
    mutating func openStream(_ protocolID: String) async throws -> MuxedStreamID {
        guard var session = yamux else { throw TestDialerError.closed("yamux not started") }
        let id = try session.openStream()
        var dialer = try MultistreamDialer(proposals: [protocolID])
        try session.write(dialer.start(), on: id)
        yamux = session
        try await flushYamux()
        while true {
            guard let event = try await nextYamuxEvent("stream negotiation of \(protocolID)") else {
                throw TestDialerError.closed("during stream negotiation of \(protocolID)")
            }
            switch event {
            case .data(id, let bytes):
                yamux?.releaseWindow(bytes.readableBytes, on: id)
                switch try dialer.receive(bytes) {
                case .needMoreData(let write):
                    if let write { try yamux?.write(write, on: id); try await flushYamux() }
                case .selected(_, let write, let leftover):
                    if let write { try yamux?.write(write, on: id); try await flushYamux() }
                    if leftover.readableBytes > 0 { events.insert(.data(id, leftover), at: 0) }
                    return id
                }
            case .streamReset(id, _), .remoteClosed(id), .streamClosed(id):
                throw TestDialerError.closed("stream refused during negotiation of \(protocolID): \(event)")
            case .sessionError(let error):
                throw error
            default:
                continue
            }
        }
    }

    /// Reads a stream to its end: all data until the listener's FIN (or a reset, which throws).
    mutating func readStreamToEnd(_ id: MuxedStreamID, _ step: String) async throws -> ByteBuffer {
        var out = ByteBuffer()
        while true {
            guard let event = try await nextYamuxEvent(step) else { throw TestDialerError.closed(step) }
            switch event {
            case .data(id, var bytes):
                yamux?.releaseWindow(bytes.readableBytes, on: id)
                out.writeBuffer(&bytes)
            case .remoteClosed(id), .streamClosed(id):
                return out
            case .streamReset(id, _):
                throw TestDialerError.closed("\(step): stream reset")
            case .sessionError(let error):
                throw error
            default:
                continue
            }
        }
    }

    /// Runs one ping on a fresh `/ipfs/ping/1.0.0` stream; returns the round trip.
    mutating func ping() async throws -> Duration {
        let id = try await openStream(Ping.protocolID)
        var initiator = PingInitiator()
        try yamux?.write(initiator.sendPing(payload: PingInitiator.randomPayload(), now: .now), on: id)
        try await flushYamux()
        while true {
            guard let event = try await nextYamuxEvent("ping echo") else { throw TestDialerError.closed("ping") }
            switch event {
            case .data(id, let bytes):
                yamux?.releaseWindow(bytes.readableBytes, on: id)
                if let rtt = try initiator.receive(bytes, now: .now) {
                    try yamux?.closeWrite(id)
                    try await flushYamux()
                    return rtt
                }
            case .streamReset(id, _), .remoteClosed(id), .streamClosed(id):
                throw TestDialerError.closed("ping stream ended: \(event)")
            case .sessionError(let error):
                throw error
            default:
                continue
            }
        }
    }

    /// Reads the listener's identify.
    mutating func identify() async throws -> IdentifyMessage {
        let id = try await openStream(IdentifyMessage.protocolID)
        var reader = IdentifyReader()
        try reader.receive(try await readStreamToEnd(id, "identify"))
        let message = try reader.finish()
        if let secure {
            let key = try message.decodedPublicKey()
            guard secure.remotePeerID.matches(key) else {
                throw IdentifyError.publicKeyMismatch(expected: "\(secure.remotePeerID)", got: "\(key.peerID)")
            }
        }
        return message
    }

    /// Dials, secures and starts yamux: a well-behaved connection.
    static func connect(port: Int, tls: WebSocketClientTLS? = nil, group: any EventLoopGroup,
                        identity: NoiseIdentity, expected: PeerID? = nil) async throws -> TestDialer {
        var dialer = try await dial(port: port, tls: tls, group: group)
        try await dialer.select(NoiseHandshakeStateMachine.protocolID)
        _ = try await dialer.noise(identity: identity, expected: expected)
        try await dialer.startYamux()
        return dialer
    }

    /// Closes the connection.
    func close() async {
        try? await channel.close()
    }
}

/// Hands the stream channel's inbound bytes to an AsyncThrowingStream; ends it on close or half-close.
private final class InboundCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation

    init(_ continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation) {
        self.continuation = continuation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        continuation.yield(Self.unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { continuation.finish() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        continuation.finish(throwing: error)
        context.close(promise: nil)
    }
}

/// Set when a read deadline fired.
private final class TimeoutFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// Why a test dialer step failed.
enum TestDialerError: Error, CustomStringConvertible {
    case timedOut(String)
    case closed(String)

    var description: String {
        switch self {
        case .timedOut(let step): "timed out: \(step)"
        case .closed(let step): "connection closed: \(step)"
        }
    }
}

