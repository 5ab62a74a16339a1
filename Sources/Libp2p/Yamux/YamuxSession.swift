import NIOCore

/// Which end of the connection this session is ("there is a distinction between client and
/// server side of the connection"). Streams we open use odd ids as client and even ids as server
/// ("The client side should use odd ID's, and the server even").
public enum YamuxRole: Sendable, Equatable {
    case client
    case server
}

/// Limits and windows of a yamux session. Defaults follow go-yamux (`DefaultConfig`) where the
/// spec leaves a choice.
public struct YamuxSettings: Sendable, Equatable {
    /// "When Yamux is initially starts each stream with a 256KiB window size."
    public static let initialStreamWindow: UInt32 = 256 * 1024

    /// The receive window we grant each stream. Values above 256 KiB are announced in the
    /// SYN/ACK frame ("can immediately send a window update as part of the SYN/ACK indicating a
    /// larger window"). go-libp2p lets windows grow to 16 MiB; we grant a fixed window so memory
    /// per stream is bounded by this value. Values below 256 KiB are raised to 256 KiB.
    public var streamReceiveWindow: UInt32 = initialStreamWindow
    /// Streams open at once in each direction. Inbound SYNs past it are reset, as go-yamux does
    /// for `MaxIncomingStreams` (default 1000): "MaxIncomingStreams exceeded, forcing stream reset".
    public var maxConcurrentStreams: Int = 1000
    /// Inbound streams not yet acknowledged. The spec: "SHOULD at most allow an ACK backlog of 256
    /// streams"; go-yamux resets SYNs beyond its `AcceptBacklog` (256): "backlog exceeded, forcing
    /// stream reset".
    public var acceptBacklog: Int = 256
    /// Largest Data payload we write in one frame. go-yamux's `MaxMessageSize` is 64 KiB so that
    /// "a single stream doesn't hog a connection"; 64 KiB also fits one Noise frame's 65519-byte
    /// plaintext after a little coalescing and keeps the per-frame header overhead at 0.02 %.
    public var maxFramePayload: Int = 64 * 1024

    public init() {}
}

/// The lifecycle of one yamux stream, as `YamuxSession.state(of:)` reports it.
public enum YamuxStreamState: Sendable, Equatable {
    /// Opened locally; SYN not yet written (it rides on the first frame).
    case synPending
    /// Opened locally; SYN written, no ACK yet. Data may flow already.
    case synSent
    /// Opened by the peer; not yet acknowledged.
    case synReceived
    /// Both directions open.
    case open
    /// We sent FIN (or queued it behind data); the peer may still send.
    case halfClosedLocal
    /// The peer sent FIN; we may still send.
    case halfClosedRemote
}

/// A yamux `/yamux/1.0.0` session as a sans-IO state machine.
///
/// Feed it events (`receive`, `openStream`, `write`, `closeWrite`, `reset`, `releaseWindow`,
/// `acceptStream`, `sendPing`, `goAway`), then drain `takeOutboundBytes()` and `nextEvent()`.
///
/// Per stream:
/// ```
///            openStream                         peer SYN
///   synPending ──first frame──▶ synSent     synReceived ──accept/first frame (ACK)──▶ open
///                                  │ ACK ▶ open
///   open ──closeWrite (FIN)──▶ halfClosedLocal ──peer FIN──▶ closed (state removed)
///   open ──peer FIN──▶ halfClosedRemote ──closeWrite──▶ closed
///   any ──RST either way──▶ reset (state removed)
/// ```
///
/// Flow control (spec "Flow Control"): each stream starts with a 256 KiB window each way; only
/// Data payload counts. We subtract received Data from the stream's receive window and reject a
/// frame longer than the remaining window as a session protocol error (go-yamux: GoAway protocol
/// error, `ErrRecvWindowExceeded`) before reading its payload. When the application has consumed
/// (`releaseWindow`) at least half the window, a WindowUpdate returns the credit (go-yamux's
/// `GrowTo`: "delta < max/2" waits). Outbound Data never exceeds the peer's window: the rest is
/// queued per stream and sent when WindowUpdates arrive.
///
/// Frames for streams we do not know (closed, reset, never opened) are skipped, and their Data
/// payload discarded as it arrives, as go-yamux does ("Discarding data for stream"); the spec says
/// nothing about them. A Data frame for an unknown stream longer than any window we grant is a
/// protocol error, since no stream could legally carry it.
public struct YamuxSession: StreamMuxerStateMachine {
    private enum Opening {
        case synPending, synSent, synReceived, established
    }

    private enum LocalClose {
        case open, finPending, finSent
    }

    private struct Stream {
        var opening: Opening
        var localClose: LocalClose = .open
        var remoteClosed = false
        /// Bytes the peer still accepts from us.
        var sendWindow: UInt32 = YamuxSettings.initialStreamWindow
        /// Bytes the peer may still send us.
        var receiveWindow: UInt32 = YamuxSettings.initialStreamWindow
        /// Bytes the application consumed that we have not yet granted back.
        var released: UInt32 = 0
        var queue = CircularBuffer<ByteBuffer>(initialCapacity: 2)
        var queuedBytes = 0

        init(opening: Opening) {
            self.opening = opening
        }
    }

    private enum DecodeState {
        case header
        /// Inside a Data payload: `remaining` bytes are still to come for `stream`; `deliver` is
        /// false when they are discarded; `fin` is applied once the payload is complete.
        case payload(stream: UInt32, remaining: UInt32, deliver: Bool, fin: Bool)
    }

    public let role: YamuxRole
    public let settings: YamuxSettings
    private let receiveTarget: UInt32

    private var streams: [UInt32: Stream] = [:]
    private var synPending: [UInt32] = []
    private var nextStreamID: UInt32
    private var inboundStreams = 0
    private var outboundStreams = 0
    private var unacknowledgedInbound = 0

    private var inbound = ByteBuffer()
    private var decodeState = DecodeState.header
    private var outbound = YamuxOutbound()
    private var events = CircularBuffer<StreamMuxerEvent>(initialCapacity: 16)

    private var sentGoAway = false
    private var receivedGoAway = false
    private var failed = false

    public init(role: YamuxRole, settings: YamuxSettings = YamuxSettings()) {
        self.role = role
        self.settings = settings
        self.receiveTarget = max(settings.streamReceiveWindow, YamuxSettings.initialStreamWindow)
        self.nextStreamID = role == .client ? 1 : 2
    }

    // MARK: - Queries

    /// The state of a stream, or nil if it is closed, reset or unknown.
    public func state(of id: MuxedStreamID) -> YamuxStreamState? {
        guard let key = UInt32(exactly: id.rawValue), let stream = self.streams[key] else { return nil }
        switch stream.opening {
        case .synPending: return .synPending
        case .synReceived: return .synReceived
        case .synSent where stream.localClose == .open && !stream.remoteClosed: return .synSent
        case .synSent, .established:
            if stream.localClose != .open { return .halfClosedLocal }
            if stream.remoteClosed { return .halfClosedRemote }
            return .open
        }
    }

    /// Bytes written on a stream but held back by the peer's window.
    public func queuedBytes(on id: MuxedStreamID) -> Int {
        guard let key = UInt32(exactly: id.rawValue) else { return 0 }
        return self.streams[key]?.queuedBytes ?? 0
    }

    /// The peer's remaining receive window for a stream (what we may still send).
    public func sendWindow(on id: MuxedStreamID) -> UInt32 {
        guard let key = UInt32(exactly: id.rawValue) else { return 0 }
        return self.streams[key]?.sendWindow ?? 0
    }

    /// Number of live streams.
    public var streamCount: Int { self.streams.count }

    /// Whether the session has failed (after a protocol error or an error GoAway).
    public var isFailed: Bool { self.failed }

    // MARK: - Outputs

    /// The pending bytes in one buffer (copied together when data was queued as parts of its own; the handler
    /// uses `takeOutbound(into:)`, which does not copy).
    public mutating func takeOutboundBytes() -> ByteBuffer? {
        var parts: [ByteBuffer] = []
        self.takeOutbound(into: &parts)
        guard var first = parts.first else { return nil }
        for part in parts.dropFirst() { first.writeImmutableBuffer(part) }
        return first
    }

    public mutating func takeOutbound(into parts: inout [ByteBuffer]) {
        self.flushPendingSyns()
        self.outbound.take(into: &parts)
    }

    /// Writes a WindowUpdate+SYN for every stream opened locally whose SYN has not ridden on a
    /// data frame yet.
    private mutating func flushPendingSyns() {
        guard !self.synPending.isEmpty else { return }
        let pending = self.synPending
        self.synPending.removeAll(keepingCapacity: true)
        for id in pending where self.streams[id]?.opening == .synPending {
            let flags = Self.openingFlags(&self.streams[id]!, id: id, target: self.receiveTarget,
                                          outbound: &self.outbound)
            if !flags.isEmpty {
                YamuxHeader(type: .windowUpdate, flags: flags, streamID: id, length: 0).write(into: &self.outbound)
            }
        }
    }

    public mutating func nextEvent() -> StreamMuxerEvent? {
        self.events.popFirst()
    }

    // MARK: - Application events

    public mutating func openStream() throws(StreamMuxerError) -> MuxedStreamID {
        guard !self.failed else { throw .sessionClosed }
        guard !self.sentGoAway && !self.receivedGoAway else { throw .goingAway }
        guard self.outboundStreams < self.settings.maxConcurrentStreams else {
            throw .tooManyStreams(limit: self.settings.maxConcurrentStreams)
        }
        let id = self.nextStreamID
        guard id != 0 else { throw .streamIDsExhausted }
        // 0xFFFF_FFFF / 0xFFFF_FFFE + 2 wraps to 1 / 0; both mark exhaustion.
        self.nextStreamID = id &+ 2
        if self.nextStreamID < id { self.nextStreamID = 0 }
        self.streams[id] = Stream(opening: .synPending)
        self.synPending.append(id)
        self.outboundStreams += 1
        return MuxedStreamID(UInt64(id))
    }

    public mutating func acceptStream(_ id: MuxedStreamID) {
        guard !self.failed, let key = UInt32(exactly: id.rawValue),
              self.streams[key]?.opening == .synReceived else { return }
        let flags = Self.openingFlags(&self.streams[key]!, id: key, target: self.receiveTarget,
                                      outbound: &self.outbound)
        self.unacknowledgedInbound -= 1
        if !flags.isEmpty {
            YamuxHeader(type: .windowUpdate, flags: flags, streamID: key, length: 0).write(into: &self.outbound)
        }
    }

    public mutating func write(_ data: ByteBuffer, on id: MuxedStreamID) throws(StreamMuxerError) {
        guard !self.failed else { throw .sessionClosed }
        guard let key = UInt32(exactly: id.rawValue), let stream = self.streams[key] else {
            throw .unknownStream(id)
        }
        guard stream.localClose == .open else { throw .streamClosedForWriting(id) }
        guard data.readableBytes > 0 else { return }
        self.streams[key]!.queue.append(data)
        self.streams[key]!.queuedBytes += data.readableBytes
        _ = Self.flush(&self.streams[key]!, id: key, settings: self.settings, target: self.receiveTarget,
                       outbound: &self.outbound)
        self.noteAcknowledged(key, wasUnacknowledged: stream.opening == .synReceived)
        self.closeIfDone(key)
    }

    public mutating func closeWrite(_ id: MuxedStreamID) throws(StreamMuxerError) {
        guard !self.failed else { throw .sessionClosed }
        guard let key = UInt32(exactly: id.rawValue), let stream = self.streams[key] else {
            throw .unknownStream(id)
        }
        guard stream.localClose == .open else { throw .streamClosedForWriting(id) }
        self.streams[key]!.localClose = .finPending
        _ = Self.flush(&self.streams[key]!, id: key, settings: self.settings, target: self.receiveTarget,
                       outbound: &self.outbound)
        self.noteAcknowledged(key, wasUnacknowledged: stream.opening == .synReceived)
        self.closeIfDone(key)
    }

    public mutating func reset(_ id: MuxedStreamID) {
        guard !self.failed, let key = UInt32(exactly: id.rawValue), let stream = self.streams[key] else { return }
        // A stream whose SYN never left needs no RST: the peer has not heard of it.
        if stream.opening != .synPending {
            YamuxHeader(type: .windowUpdate, flags: .rst, streamID: key, length: 0).write(into: &self.outbound)
        }
        self.removeStream(key)
    }

    public mutating func releaseWindow(_ bytes: Int, on id: MuxedStreamID) {
        guard !self.failed, bytes > 0, let key = UInt32(exactly: id.rawValue),
              let stream = self.streams[key], !stream.remoteClosed else { return }
        // Never grant more than the current window in total, whatever the caller says. Until the
        // SYN/ACK carried our larger window, the peer only assumes 256 KiB.
        let grant: UInt32
        switch stream.opening {
        case .synPending, .synReceived: grant = YamuxSettings.initialStreamWindow
        case .synSent, .established: grant = self.receiveTarget
        }
        let room = grant - stream.receiveWindow - stream.released
        let add = UInt32(min(bytes, Int(room)))
        self.streams[key]!.released += add
        guard self.streams[key]!.released >= self.receiveTarget / 2 else { return }
        Self.sendWindowUpdate(&self.streams[key]!, id: key, target: self.receiveTarget, outbound: &self.outbound)
        self.noteAcknowledged(key, wasUnacknowledged: stream.opening == .synReceived)
    }

    /// Sends a Ping with the SYN flag; the answer arrives as `.pong(opaque)`. go-yamux pings every
    /// 30 s and kills the session when no answer comes within 10 s; a keepalive timer in the
    /// handler can call this.
    public mutating func sendPing(opaque: UInt32) {
        guard !self.failed else { return }
        YamuxHeader(type: .ping, flags: .syn, streamID: 0, length: opaque).write(into: &self.outbound)
    }

    public mutating func goAway() {
        self.goAway(code: .normal)
    }

    /// Sends GoAway with `code`. After it, inbound SYNs are reset and `openStream` fails; existing
    /// streams continue (normal code) so responses in flight can finish.
    public mutating func goAway(code: YamuxGoAwayCode) {
        guard !self.failed, !self.sentGoAway else { return }
        self.sentGoAway = true
        // Streams opened before the GoAway must reach the peer before it, or it would refuse them.
        self.flushPendingSyns()
        YamuxHeader(type: .goAway, flags: [], streamID: 0, length: code.rawValue).write(into: &self.outbound)
        if code != .normal { self.failed = true }
    }

    // MARK: - Receiving

    public mutating func receive(_ bytes: ByteBuffer) {
        guard !self.failed else { return }
        self.inbound.accumulate(bytes)
        while !self.failed {
            switch self.decodeState {
            case .header:
                let header: YamuxHeader
                do {
                    guard let h = try YamuxHeader.read(from: &self.inbound) else {
                        self.finishReceive()
                        return
                    }
                    header = h
                } catch {
                    self.fail(error)
                    return
                }
                self.handle(header)
            case .payload(let id, let remaining, let deliver, let fin):
                let available = self.inbound.readableBytes
                guard available > 0 else {
                    self.finishReceive()
                    return
                }
                let count = Int(min(UInt32(clamping: available), remaining))
                let slice = self.inbound.readSlice(length: count)!
                if deliver, self.streams[id] != nil {
                    self.events.append(.data(MuxedStreamID(UInt64(id)), slice))
                }
                if remaining == UInt32(count) {
                    self.decodeState = .header
                    if fin { self.remoteFin(id) }
                } else {
                    self.decodeState = .payload(stream: id, remaining: remaining - UInt32(count),
                                                deliver: deliver, fin: fin)
                }
            }
        }
    }

    /// Drops the reference to fully consumed input so its storage can be freed or reused.
    private mutating func finishReceive() {
        if self.inbound.readableBytes == 0 {
            self.inbound = ByteBuffer()
        }
    }

    private mutating func handle(_ header: YamuxHeader) {
        switch header.type {
        case .ping:
            if header.flags.contains(.syn) {
                // Answer at once with the same opaque value and the ACK flag.
                YamuxHeader(type: .ping, flags: .ack, streamID: 0, length: header.length)
                    .write(into: &self.outbound)
            } else if header.flags.contains(.ack) {
                self.events.append(.pong(header.length))
            }
        case .goAway:
            self.receivedGoAway = true
            self.events.append(.goAwayReceived(code: header.length))
            if header.length != YamuxGoAwayCode.normal.rawValue {
                self.failed = true
                self.events.append(.sessionError(.remoteGoAway(code: header.length)))
            }
        case .data, .windowUpdate:
            self.handleStreamFrame(header)
        }
    }

    private mutating func handleStreamFrame(_ header: YamuxHeader) {
        let id = header.streamID
        let isData = header.type == .data
        if header.flags.contains(.syn) {
            guard self.incomingStream(id) else { return }  // session failed
        }
        guard self.streams[id] != nil else {
            if isData && header.length > 0 {
                guard header.length <= self.receiveTarget else {
                    self.fail(.frameTooLarge(length: UInt64(header.length), limit: UInt64(self.receiveTarget)))
                    return
                }
                self.decodeState = .payload(stream: id, remaining: header.length, deliver: false, fin: false)
            }
            return
        }
        if header.flags.contains(.ack), self.streams[id]!.opening == .synSent {
            self.streams[id]!.opening = .established
        }
        if header.flags.contains(.rst) {
            let code: UInt32? = header.type == .windowUpdate && header.length != 0 ? header.length : nil
            self.removeStream(id)
            self.events.append(.streamReset(MuxedStreamID(UInt64(id)), errorCode: code))
            if isData && header.length > 0 {
                self.decodeState = .payload(stream: id, remaining: header.length, deliver: false, fin: false)
            }
            return
        }
        let fin = header.flags.contains(.fin)
        if isData {
            let window = self.streams[id]!.receiveWindow
            guard header.length <= window else {
                self.fail(.receiveWindowExceeded(stream: UInt64(id), length: header.length, window: window))
                return
            }
            self.streams[id]!.receiveWindow = window - header.length
            if header.length > 0 {
                var deliver = true
                if self.streams[id]!.remoteClosed {
                    // Data after the peer's own FIN: a stream-level fault. Reset the stream and
                    // discard the payload rather than killing the whole session.
                    YamuxHeader(type: .windowUpdate, flags: .rst, streamID: id, length: 0).write(into: &self.outbound)
                    self.removeStream(id)
                    self.events.append(.streamReset(MuxedStreamID(UInt64(id)), errorCode: nil))
                    deliver = false
                }
                self.decodeState = .payload(stream: id, remaining: header.length, deliver: deliver, fin: fin && deliver)
                return
            }
        } else {
            let (sum, overflow) = self.streams[id]!.sendWindow.addingReportingOverflow(header.length)
            guard !overflow else {
                self.fail(.sendWindowOverflow(stream: UInt64(id)))
                return
            }
            self.streams[id]!.sendWindow = sum
            if header.length > 0 && self.streams[id]!.queuedBytes > 0 {
                let wasUnacknowledged = self.streams[id]!.opening == .synReceived
                let drained = Self.flush(&self.streams[id]!, id: id, settings: self.settings,
                                         target: self.receiveTarget, outbound: &self.outbound)
                if drained { self.events.append(.writable(MuxedStreamID(UInt64(id)))) }
                self.noteAcknowledged(id, wasUnacknowledged: wasUnacknowledged)
                self.closeIfDone(id)
                guard self.streams[id] != nil else { return }
            }
        }
        if fin { self.remoteFin(id) }
    }

    /// Registers a stream the peer opened with SYN. Returns false if the session failed.
    private mutating func incomingStream(_ id: UInt32) -> Bool {
        let peerParity: UInt32 = self.role == .client ? 0 : 1
        guard id != 0, id % 2 == peerParity else {
            self.fail(.invalidStreamID(UInt64(id)))
            return false
        }
        guard self.streams[id] == nil else {
            self.fail(.duplicateStream(UInt64(id)))
            return false
        }
        // libp2p/specs yamux: "the receiver may reset streams past its limit" — go-yamux answers a SYN over
        // MaxIncomingStreams or its accept backlog with RST, and the session carries on.
        let refusal: StreamRefusalReason?
        if self.sentGoAway || self.receivedGoAway {
            refusal = .goingAway
        } else if self.inboundStreams >= self.settings.maxConcurrentStreams {
            refusal = .tooManyStreams(limit: self.settings.maxConcurrentStreams)
        } else if self.unacknowledgedInbound >= self.settings.acceptBacklog {
            refusal = .acceptBacklogFull(limit: self.settings.acceptBacklog)
        } else {
            refusal = nil
        }
        if let refusal {
            YamuxHeader(type: .windowUpdate, flags: .rst, streamID: id, length: 0).write(into: &self.outbound)
            self.events.append(.streamRefused(MuxedStreamID(UInt64(id)), reason: refusal))
            return true
        }
        self.streams[id] = Stream(opening: .synReceived)
        self.inboundStreams += 1
        self.unacknowledgedInbound += 1
        self.events.append(.streamOpened(MuxedStreamID(UInt64(id))))
        return true
    }

    private mutating func remoteFin(_ id: UInt32) {
        guard self.streams[id] != nil, !self.streams[id]!.remoteClosed else { return }
        self.streams[id]!.remoteClosed = true
        self.events.append(.remoteClosed(MuxedStreamID(UInt64(id))))
        self.closeIfDone(id)
    }

    /// Keeps the ACK-backlog count right after a frame that may have carried our ACK.
    private mutating func noteAcknowledged(_ id: UInt32, wasUnacknowledged: Bool) {
        if wasUnacknowledged, let stream = self.streams[id], stream.opening != .synReceived {
            self.unacknowledgedInbound -= 1
        }
    }

    private mutating func closeIfDone(_ id: UInt32) {
        guard let stream = self.streams[id], stream.remoteClosed, stream.localClose == .finSent else { return }
        self.removeStream(id)
        self.events.append(.streamClosed(MuxedStreamID(UInt64(id))))
    }

    private mutating func removeStream(_ id: UInt32) {
        guard let stream = self.streams.removeValue(forKey: id) else { return }
        if stream.opening == .synReceived { self.unacknowledgedInbound -= 1 }
        if (id % 2 == 1) == (self.role == .client) {
            self.outboundStreams -= 1
        } else {
            self.inboundStreams -= 1
        }
    }

    /// Session-fatal error: queue GoAway(protocol error) and stop.
    private mutating func fail(_ error: StreamMuxerError) {
        if !self.sentGoAway {
            self.sentGoAway = true
            YamuxHeader(type: .goAway, flags: [], streamID: 0, length: YamuxGoAwayCode.protocolError.rawValue)
                .write(into: &self.outbound)
        }
        self.failed = true
        self.inbound = ByteBuffer()
        self.events.append(.sessionError(error))
    }

    // MARK: - Frame writers (static so they can borrow one stream and the outbound buffer at once)

    /// Returns the SYN or ACK flag the next frame of this stream must carry. When our window is
    /// larger than 256 KiB, writes a WindowUpdate carrying the flag and the extra window instead
    /// and returns no flags.
    private static func openingFlags(_ stream: inout Stream, id: UInt32, target: UInt32,
                                     outbound: inout YamuxOutbound) -> YamuxFlags {
        let flags: YamuxFlags
        switch stream.opening {
        case .synPending:
            flags = .syn
            stream.opening = .synSent
        case .synReceived:
            flags = .ack
            stream.opening = .established
        case .synSent, .established:
            return []
        }
        let extra = target - YamuxSettings.initialStreamWindow
        guard extra > 0 else { return flags }
        YamuxHeader(type: .windowUpdate, flags: flags, streamID: id, length: extra).write(into: &outbound)
        stream.receiveWindow += extra
        return []
    }

    private static func sendWindowUpdate(_ stream: inout Stream, id: UInt32, target: UInt32,
                                         outbound: inout YamuxOutbound) {
        let flags = Self.openingFlags(&stream, id: id, target: target, outbound: &outbound)
        let delta = stream.released
        stream.released = 0
        stream.receiveWindow += delta
        YamuxHeader(type: .windowUpdate, flags: flags, streamID: id, length: delta).write(into: &outbound)
    }

    /// Sends queued data as far as the window allows, then a pending FIN. Returns true if the
    /// queue was non-empty and is now drained.
    private static func flush(_ stream: inout Stream, id: UInt32, settings: YamuxSettings, target: UInt32,
                              outbound: inout YamuxOutbound) -> Bool {
        let hadQueue = stream.queuedBytes > 0
        while stream.sendWindow > 0, var chunk = stream.queue.first {
            let count = min(chunk.readableBytes, Int(stream.sendWindow), settings.maxFramePayload)
            let flags = Self.openingFlags(&stream, id: id, target: target, outbound: &outbound)
            YamuxHeader(type: .data, flags: flags, streamID: id, length: UInt32(count)).write(into: &outbound)
            if count == chunk.readableBytes {
                outbound.append(payload: chunk)
                stream.queue.removeFirst()
            } else {
                outbound.append(payload: chunk.readSlice(length: count)!)
                stream.queue[stream.queue.startIndex] = chunk
            }
            stream.sendWindow -= UInt32(count)
            stream.queuedBytes -= count
        }
        if stream.queuedBytes == 0 && stream.localClose == .finPending {
            let flags = Self.openingFlags(&stream, id: id, target: target, outbound: &outbound)
            YamuxHeader(type: .windowUpdate, flags: flags.union(.fin), streamID: id, length: 0).write(into: &outbound)
            stream.localClose = .finSent
        }
        return hadQueue && stream.queuedBytes == 0
    }
}

/// What a yamux session has to send: frame headers and small payloads written into one buffer, large payloads kept
/// as parts of their own (slices of what the stream's writer handed in), so that stream data reaches the Noise
/// handler in its own storage and is sealed from there, not copied behind the headers first.
struct YamuxOutbound {
    /// Payloads at least this long are handed on as parts of their own.
    static let separatePayloadLength = 4096

    private var current = ByteBufferAllocator().buffer(capacity: 1024)
    private var parts: [ByteBuffer] = []

    var isEmpty: Bool { current.readableBytes == 0 && parts.isEmpty }

    /// The buffer headers are written into.
    var headers: ByteBuffer {
        _read { yield current }
        _modify { yield &current }
    }

    mutating func append(payload: ByteBuffer) {
        guard payload.readableBytes >= Self.separatePayloadLength else {
            current.writeImmutableBuffer(payload)
            return
        }
        if current.readableBytes > 0 {
            parts.append(current)
            current = ByteBufferAllocator().buffer(capacity: 256)
        }
        parts.append(payload)
    }

    mutating func take(into out: inout [ByteBuffer]) {
        out.append(contentsOf: parts)
        parts.removeAll(keepingCapacity: true)
        if current.readableBytes > 0 {
            out.append(current)
            current = ByteBufferAllocator().buffer(capacity: 1024)
        }
    }
}

extension YamuxHeader {
    func write(into outbound: inout YamuxOutbound) {
        self.write(into: &outbound.headers)
    }
}
