import NIOCore

// The vocabulary shared by the yamux and mplex session machines, so one NIO handler can drive
// either. Both machines are sans-IO: the caller feeds events (`receive`, `openStream`, `write`, …),
// then drains `takeOutboundBytes()` (bytes for the connection) and `nextEvent()` (what happened to
// streams) until both are empty.

/// Identifies a stream inside one muxed session.
///
/// yamux: the yamux stream id. mplex: `id << 1 | (opened by the remote ? 1 : 0)`, because mplex
/// ids are only unique together with the initiator bit.
public struct MuxedStreamID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "stream \(self.rawValue)" }
}

/// Something that happened in the session that the caller must act on.
public enum StreamMuxerEvent: Equatable, Sendable {
    /// The peer opened a stream. Call `acceptStream(_:)` when the application is ready for it
    /// (yamux sends its ACK then; any write also acknowledges it).
    case streamOpened(MuxedStreamID)
    /// Payload for a stream, a slice of the received bytes (no copy). yamux: after processing it,
    /// call `releaseWindow(_:on:)` so the peer may send more.
    case data(MuxedStreamID, ByteBuffer)
    /// The peer half-closed the stream (yamux FIN, mplex Close): no more data will arrive.
    case remoteClosed(MuxedStreamID)
    /// The peer reset the stream; its state is gone. `errorCode` is set when yamux carried one in
    /// a WindowUpdate+RST (go-yamux ≥ 5).
    case streamReset(MuxedStreamID, errorCode: UInt32?)
    /// Both directions are closed; the stream's state is gone.
    case streamClosed(MuxedStreamID)
    /// Data queued for a stream (beyond the peer's window) has all been sent.
    case writable(MuxedStreamID)
    /// An answer to `sendPing(opaque:)` (yamux).
    case pong(UInt32)
    /// The peer sent GoAway (yamux) with this code; no new streams may be opened.
    case goAwayReceived(code: UInt32)
    /// A stream the peer opened was reset at once, without reaching the application; the reset is
    /// already queued in the outbound bytes. Reported so the refusal can be logged and counted.
    case streamRefused(MuxedStreamID, reason: StreamRefusalReason)
    /// The session failed; any GoAway has been queued in the outbound bytes. Flush, then close the
    /// connection.
    case sessionError(StreamMuxerError)
}

/// Why a muxer reset a stream the peer opened instead of accepting it.
public enum StreamRefusalReason: Equatable, Sendable, CustomStringConvertible {
    /// The session is going away (GoAway sent or received): no new streams.
    case goingAway
    /// The peer already has this many streams open.
    case tooManyStreams(limit: Int)
    /// This many streams the peer opened are still waiting for the application to accept them.
    case acceptBacklogFull(limit: Int)

    public var description: String {
        switch self {
        case .goingAway: return "session is going away"
        case .tooManyStreams(let limit): return "peer already has \(limit) open streams"
        case .acceptBacklogFull(let limit): return "\(limit) streams already wait to be accepted"
        }
    }
}

/// Errors of the stream muxers, both from misbehaving peers (session errors) and from misuse by
/// the local application.
public enum StreamMuxerError: Error, Equatable, Sendable {
    // Peer errors (session-fatal).
    /// yamux header version other than 0.
    case invalidVersion(UInt8)
    /// yamux header type above GoAway (3), or an unknown mplex flag.
    case invalidFrameType(UInt8)
    /// A Data frame longer than the stream's remaining receive window.
    case receiveWindowExceeded(stream: UInt64, length: UInt32, window: UInt32)
    /// A WindowUpdate that overflows the 32-bit send window.
    case sendWindowOverflow(stream: UInt64)
    /// A SYN/NewStream for a stream that is already open.
    case duplicateStream(UInt64)
    /// A SYN with a stream id the peer may not use (0, or our parity).
    case invalidStreamID(UInt64)
    /// A frame longer than the muxer allows (mplex 1 MiB; yamux: data for an unknown stream
    /// longer than the largest window).
    case frameTooLarge(length: UInt64, limit: UInt64)
    /// An mplex header or length varint that is overlong or non-minimal.
    case malformedVarint
    /// The peer sent GoAway with an error code (protocol error 1, internal error 2, other).
    case remoteGoAway(code: UInt32)

    // Local misuse (thrown from API calls, session continues).
    /// The stream does not exist (never opened, closed or reset).
    case unknownStream(MuxedStreamID)
    /// The stream was already closed for writing.
    case streamClosedForWriting(MuxedStreamID)
    /// Opening would exceed `maxConcurrentStreams`.
    case tooManyStreams(limit: Int)
    /// The peer (or we) sent GoAway; no new streams.
    case goingAway
    /// The session has failed or been closed.
    case sessionClosed
    /// Stream ids are exhausted (yamux 32-bit ids).
    case streamIDsExhausted
}

/// A sans-IO stream muxer session (yamux or mplex).
public protocol StreamMuxerStateMachine {
    /// Bytes read from the (decrypted) connection.
    mutating func receive(_ bytes: ByteBuffer)
    /// Opens an outbound stream; its opening frame is sent with the first write, or at the latest
    /// by the next `takeOutboundBytes()`.
    mutating func openStream() throws(StreamMuxerError) -> MuxedStreamID
    /// Acknowledges a stream the peer opened (yamux ACK; no-op for mplex).
    mutating func acceptStream(_ id: MuxedStreamID)
    /// Queues data on a stream; bytes beyond the peer's window are held until it grows.
    mutating func write(_ data: ByteBuffer, on id: MuxedStreamID) throws(StreamMuxerError)
    /// Half-closes the stream for writing (after queued data).
    mutating func closeWrite(_ id: MuxedStreamID) throws(StreamMuxerError)
    /// Resets the stream in both directions, dropping queued data.
    mutating func reset(_ id: MuxedStreamID)
    /// Tells the session the application consumed `bytes` of a stream's data (flow control).
    mutating func releaseWindow(_ bytes: Int, on id: MuxedStreamID)
    /// Ends the session politely (yamux GoAway normal).
    mutating func goAway()
    /// Bytes written on a stream but held back by flow control (always 0 for mplex).
    func queuedBytes(on id: MuxedStreamID) -> Int
    /// Bytes to write to the connection, or nil if none are pending.
    mutating func takeOutboundBytes() -> ByteBuffer?
    /// Appends the bytes to write to the connection to `parts`, in order, possibly as several buffers so that
    /// stream data is handed on in its own storage rather than copied behind the frame headers.
    mutating func takeOutbound(into parts: inout [ByteBuffer])
    /// The next event, or nil when none is pending.
    mutating func nextEvent() -> StreamMuxerEvent?
}

extension StreamMuxerStateMachine {
    public mutating func takeOutbound(into parts: inout [ByteBuffer]) {
        if let bytes = takeOutboundBytes() { parts.append(bytes) }
    }
}
