// edgeswap: the I/O side of identify and ping, as async functions over one negotiated stream: the inbound
// sequence of the stream's bytes (it ends when the remote half-closes) and its outbound writer (`finish()`
// half-closes ours). That is what `Libp2pStream.executeThenClose` hands a stream handler. The protocol logic
// lives in the sans-IO machines next to this file.

import NIOCore
import Synchronization

/// Identify over a stream.
public enum IdentifyService {
    /// go-libp2p's identify timeout (`Timeout = 5 * time.Second` in id.go).
    public static let defaultTimeout: Duration = .seconds(5)

    /// The responder: writes one length-delimited message and half-closes. identify/README.md: "The peer being
    /// identified responds by returning an `Identify` message and closes the stream."
    public static func respond(with message: IdentifyMessage,
                               outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        var buffer = ByteBuffer()
        message.writeDelimited(into: &buffer)
        try await outbound.write(buffer)
        outbound.finish()
    }

    /// The initiator: half-closes its own side (it has nothing to send), reads the remote's messages until
    /// the remote closes, merges them, and, with `expectedPeer`, checks that the public key belongs to that
    /// peer. The spec only says publicKey "is the public key of the peer"; a key that names another peer than
    /// the one Noise authenticated is refused here (go-libp2p also checks it against the connection's peer).
    /// Fails after `timeout`.
    public static func request(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        expectedPeer: PeerID?, timeout: Duration = defaultTimeout
    ) async throws -> IdentifyMessage {
        outbound.finish()
        return try await withTimeout(timeout, IdentifyTimeout()) {
            var reader = IdentifyReader()
            for try await chunk in inbound { try reader.receive(chunk) }
            let message = try reader.finish()
            if let expectedPeer {
                let key = try message.decodedPublicKey()
                guard expectedPeer.matches(key) else {
                    throw IdentifyError.publicKeyMismatch(expected: "\(expectedPeer)", got: "\(key.peerID)")
                }
            }
            return message
        }
    }
}

/// The identify initiator waited longer than its timeout.
public struct IdentifyTimeout: Error, Sendable, Equatable, CustomStringConvertible {
    public init() {}
    public var description: String { "identify timed out" }
}

/// A ping exchange waited longer than its timeout.
public struct PingTimeout: Error, Sendable, Equatable, CustomStringConvertible {
    public init() {}
    public var description: String { "ping timed out" }
}

/// Ping over a stream, with the per-peer limit on inbound streams shared by every connection of a host.
public final class PingService: Sendable {
    private let limiter: Mutex<PingStreamLimiter<PeerID>>

    /// Creates the service; `maximumStreamsPerPeer` follows ping.md ("The listening peer SHOULD accept at most
    /// two streams per peer").
    public init(maximumStreamsPerPeer: Int = Ping.maximumInboundStreamsPerPeer) {
        self.limiter = Mutex(PingStreamLimiter(limit: maximumStreamsPerPeer))
    }

    /// Inbound ping streams currently open from `peer`.
    public func openStreams(from peer: PeerID) -> Int {
        limiter.withLock { $0.count(from: peer) }
    }

    /// The responder: echoes 32-byte payloads until the remote half-closes, then half-closes ours. Throws
    /// `PingError.tooManyStreams` without reading when `peer` already has the maximum open (the caller resets
    /// the stream). Returns the number of payloads echoed.
    public func respond(to peer: PeerID, inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
                        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> Int {
        try limiter.withLock { (limiter) throws(PingError) in try limiter.open(from: peer) }
        defer { limiter.withLock { $0.close(from: peer) } }
        var machine = PingResponder()
        for try await chunk in inbound {
            if case .write(let echo) = machine.receive(chunk) { try await outbound.write(echo) }
        }
        _ = machine.receiveEOF()
        outbound.finish()
        return machine.echoed
    }

    /// The initiator: `count` pings one after the other on the stream, all within `count × timeout`; returns
    /// the round trips and half-closes our side.
    public static func ping(
        count: Int, inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, timeout: Duration = .seconds(10)
    ) async throws -> [Duration] {
        precondition(count > 0, "at least one ping")
        let roundTrips = try await withTimeout(timeout * count, PingTimeout()) {
            var machine = PingInitiator()
            var iterator = inbound.makeAsyncIterator()
            for _ in 0..<count {
                try await outbound.write(machine.sendPing(payload: PingInitiator.randomPayload(), now: .now))
                var rtt: Duration?
                while rtt == nil {
                    guard let bytes = try await iterator.next() else { throw PingError.closedBeforeEcho }
                    rtt = try machine.receive(bytes, now: .now)
                }
            }
            return machine.roundTrips
        }
        outbound.finish()
        return roundTrips
    }
}

/// Runs `body`; throws `error` if it has not finished after `limit`.
func withTimeout<T: Sendable>(_ limit: Duration, _ error: some Error & Sendable,
                              _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw error
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
