// edgeswap: libp2p ping (`/ipfs/ping/1.0.0`), sans-IO. Spec: libp2p/specs ping/ping.md.

import NIOCore

/// Constants and limits of the ping protocol.
public enum Ping {
    /// The protocol id.
    public static let protocolID = "/ipfs/ping/1.0.0"
    /// ping.md: "The dialing peer MUST NOT keep more than one outbound stream for the ping protocol per peer.
    /// The listening peer SHOULD accept at most two streams per peer".
    public static let maximumInboundStreamsPerPeer = 2
    /// ping.md: "The dialing peer sends a 32-byte payload of random binary data on an open stream."
    public static let payloadSize = 32
}

/// Why a ping stream failed.
public enum PingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The remote ended its write side in the middle of a 32-byte payload.
    case truncatedPayload(received: Int)
    /// The echoed bytes differ from the payload sent.
    case payloadMismatch
    /// The remote sent bytes the initiator did not ask for.
    case unexpectedBytes(count: Int)
    /// The remote closed before echoing the outstanding payload.
    case closedBeforeEcho
    /// A ping was sent while the previous one is unanswered.
    case pingOutstanding
    /// The peer already has `limit` ping streams open.
    case tooManyStreams(limit: Int)

    public var description: String {
        switch self {
        case .truncatedPayload(let received): "ping stream ended after \(received) of 32 payload bytes"
        case .payloadMismatch: "ping echo differs from the payload sent"
        case .unexpectedBytes(let count): "\(count) unrequested bytes on a ping stream"
        case .closedBeforeEcho: "ping stream closed before the echo"
        case .pingOutstanding: "a ping is already outstanding"
        case .tooManyStreams(let limit): "more than \(limit) ping streams from one peer"
        }
    }
}

/// The listening side of ping: echoes every complete 32-byte payload until the remote closes its write
/// side, then closes ours. ping.md: "The listening peer echoes the same 32-byte payload back to the dialing
/// peer", and "the listening peer SHOULD finish writing the echoed payload and then exit the loop and close
/// the stream" once the dialer closed its write side.
public struct PingResponder: Sendable {
    /// What the stream handler must do after an event.
    public enum Action: Equatable, Sendable {
        /// Nothing yet.
        case none
        /// Write these bytes (whole 32-byte payloads).
        case write(ByteBuffer)
        /// Close our write side; the exchange is over. `partial` counts trailing bytes of an incomplete
        /// payload, which are dropped (nothing to echo).
        case close(partial: Int)
    }

    private var pending: ByteBuffer
    /// Payloads echoed so far.
    public private(set) var echoed = 0

    /// Creates a responder.
    public init() {
        self.pending = ByteBuffer()
    }

    /// Bytes from the remote: returns the whole payloads to echo. At most 31 bytes stay buffered, so a
    /// flood is never held in memory beyond one payload.
    public mutating func receive(_ bytes: ByteBuffer) -> Action {
        var bytes = bytes
        self.pending.writeBuffer(&bytes)
        let whole = self.pending.readableBytes / Ping.payloadSize * Ping.payloadSize
        guard whole > 0 else { return .none }
        let out = self.pending.readSlice(length: whole)!
        self.echoed += whole / Ping.payloadSize
        self.pending.discardReadBytes()
        return .write(out)
    }

    /// The remote closed its write side.
    public mutating func receiveEOF() -> Action {
        .close(partial: self.pending.readableBytes)
    }
}

/// The dialing side of ping: sends 32 random bytes, waits for the same 32 bytes, measures the round trip.
/// The caller supplies the clock readings, so the machine stays free of I/O and time.
public struct PingInitiator: Sendable {
    private var outstanding: (payload: [UInt8], sentAt: ContinuousClock.Instant)?
    private var received: [UInt8] = []
    /// Round trips measured so far.
    public private(set) var roundTrips: [Duration] = []

    /// Creates an initiator.
    public init() {}

    /// Whether a ping awaits its echo.
    public var isOutstanding: Bool { outstanding != nil }

    /// Starts a ping with `payload` (32 bytes; use `randomPayload()`), sent at `now`; returns the bytes to write.
    public mutating func sendPing(payload: [UInt8], now: ContinuousClock.Instant) throws(PingError) -> ByteBuffer {
        precondition(payload.count == Ping.payloadSize, "a ping payload is 32 bytes")
        guard outstanding == nil else { throw .pingOutstanding }
        self.outstanding = (payload, now)
        self.received.removeAll(keepingCapacity: true)
        return ByteBuffer(bytes: payload)
    }

    /// Bytes from the remote, received at `now`: the round trip time once the whole echo is in.
    public mutating func receive(_ bytes: ByteBuffer, now: ContinuousClock.Instant) throws(PingError) -> Duration? {
        guard let outstanding else { throw .unexpectedBytes(count: bytes.readableBytes) }
        let room = Ping.payloadSize - received.count
        guard bytes.readableBytes <= room else { throw .unexpectedBytes(count: bytes.readableBytes - room) }
        received.append(contentsOf: bytes.readableBytesView)
        guard received.count == Ping.payloadSize else { return nil }
        guard received == outstanding.payload else { throw .payloadMismatch }
        self.outstanding = nil
        let rtt = now - outstanding.sentAt
        self.roundTrips.append(rtt)
        return rtt
    }

    /// The remote closed its write side; an error when a ping was still outstanding.
    public mutating func receiveEOF() throws(PingError) {
        if outstanding != nil { throw .closedBeforeEcho }
    }

    /// 32 random bytes.
    public static func randomPayload() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<Ping.payloadSize).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}

/// Counts inbound ping streams per peer and refuses a third one (ping.md: "The listening peer SHOULD accept
/// at most two streams per peer"). One instance belongs to a connection, or to a host keyed by peer.
public struct PingStreamLimiter<Peer: Hashable & Sendable>: Sendable {
    private var counts: [Peer: Int] = [:]
    /// The per-peer limit.
    public let limit: Int

    /// Creates a limiter with `limit` streams per peer.
    public init(limit: Int = Ping.maximumInboundStreamsPerPeer) {
        self.limit = limit
    }

    /// Registers a new stream from `peer`; throws when the peer is at the limit.
    public mutating func open(from peer: Peer) throws(PingError) {
        let count = counts[peer, default: 0]
        guard count < limit else { throw .tooManyStreams(limit: limit) }
        counts[peer] = count + 1
    }

    /// A stream from `peer` ended.
    public mutating func close(from peer: Peer) {
        guard let count = counts[peer] else { return }
        counts[peer] = count > 1 ? count - 1 : nil
    }

    /// Streams open from `peer`.
    public func count(from peer: Peer) -> Int { counts[peer, default: 0] }
}
