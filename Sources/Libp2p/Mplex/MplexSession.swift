import Multiformats
import NIOCore

// libp2p/specs mplex/README.md (`/mplex/6.7.0`, deprecated but still spoken by old js peers):
//
//     | header uvarint (id << 3 | flag) | length uvarint | data (length bytes) |
//
// "Every message in mplex consists of a header, a length prefixed data segment." The flags:
// NewStream 0, MessageReceiver 1, MessageInitiator 2, CloseReceiver 3, CloseInitiator 4,
// ResetReceiver 5, ResetInitiator 6. "The maximum message size is 1MiB" (go-mplex MaxMessageSize
// = 1 << 20). There is no flow control and no session-level close message.

/// The mplex header flag (low three bits of the header varint).
public enum MplexFlag: UInt8, Sendable {
    case newStream = 0
    case messageReceiver = 1
    case messageInitiator = 2
    case closeReceiver = 3
    case closeInitiator = 4
    case resetReceiver = 5
    case resetInitiator = 6
}

/// Limits of an mplex session.
public struct MplexSettings: Sendable, Equatable {
    /// Largest message payload accepted and written (go-mplex: 1 MiB).
    public var maxMessageSize: Int = 1 << 20
    /// Streams the peer may have open at once; further NewStreams are reset. js-libp2p-mplex
    /// defaults `maxInboundStreams` to 1024 (E-IPFS ran with the same figure).
    public var maxConcurrentStreams: Int = 1024

    public init() {}
}

/// An mplex session as a sans-IO state machine, with the same events and calls as `YamuxSession`.
///
/// Stream ids: mplex numbers the streams each side opens independently, and a message names the
/// stream by `(id, whether the sender initiated it)`. `MuxedStreamID.rawValue` is therefore
/// `id << 1 | 1` for streams the peer opened and `id << 1` for ours.
///
/// mplex has no flow control: `write` never queues, `releaseWindow` does nothing and the peer can
/// only be slowed by not reading the connection. Data is handed out as it arrives, so a message is
/// never buffered whole; a length over `maxMessageSize` fails the session before its payload is
/// read. Messages for unknown streams are discarded (go-mplex does the same); data after the
/// peer's close resets the stream.
public struct MplexSession: StreamMuxerStateMachine {
    private struct Stream {
        var localClosed = false
        var remoteClosed = false
    }

    private enum DecodeState {
        case header
        /// Inside a payload; `deliverTo` is nil when the bytes are discarded.
        case payload(deliverTo: MuxedStreamID?, remaining: Int)
    }

    public let settings: MplexSettings
    private var streams: [MuxedStreamID: Stream] = [:]
    private var nextStreamID: UInt64 = 0
    private var inboundStreams = 0
    private var inbound = ByteBuffer()
    private var decodeState = DecodeState.header
    private var outbound: ByteBuffer
    private var events = CircularBuffer<StreamMuxerEvent>(initialCapacity: 16)
    private var goingAway = false
    private var failed = false

    public init(settings: MplexSettings = MplexSettings()) {
        self.settings = settings
        self.outbound = ByteBufferAllocator().buffer(capacity: 1024)
    }

    /// Number of live streams.
    public var streamCount: Int { self.streams.count }

    /// mplex has no flow control, so nothing is ever held back.
    public func queuedBytes(on id: MuxedStreamID) -> Int { 0 }

    /// Whether the stream was opened by the peer.
    public static func isRemotelyOpened(_ id: MuxedStreamID) -> Bool { id.rawValue & 1 == 1 }

    // MARK: - Outputs

    public mutating func takeOutboundBytes() -> ByteBuffer? {
        guard self.outbound.readableBytes > 0 else { return nil }
        let out = self.outbound
        self.outbound = ByteBufferAllocator().buffer(capacity: 1024)
        return out
    }

    public mutating func nextEvent() -> StreamMuxerEvent? {
        self.events.popFirst()
    }

    // MARK: - Application events

    public mutating func openStream() throws(StreamMuxerError) -> MuxedStreamID {
        guard !self.failed else { throw .sessionClosed }
        guard !self.goingAway else { throw .goingAway }
        // Our ids must fit the header varint after `<< 3` (63 bits).
        guard self.nextStreamID < (1 << 59) else { throw .streamIDsExhausted }
        let raw = self.nextStreamID
        self.nextStreamID += 1
        let id = MuxedStreamID(raw << 1)
        self.streams[id] = Stream()
        // go-mplex names a stream by its decimal id.
        var name = ByteBuffer()
        name.writeString(String(raw))
        self.writeFrame(streamID: raw, flag: .newStream, payload: &name)
        return id
    }

    public mutating func acceptStream(_ id: MuxedStreamID) {}

    public mutating func write(_ data: ByteBuffer, on id: MuxedStreamID) throws(StreamMuxerError) {
        guard !self.failed else { throw .sessionClosed }
        guard let stream = self.streams[id] else { throw .unknownStream(id) }
        guard !stream.localClosed else { throw .streamClosedForWriting(id) }
        let flag: MplexFlag = Self.isRemotelyOpened(id) ? .messageReceiver : .messageInitiator
        var data = data
        while data.readableBytes > 0 {
            var part = data.readSlice(length: min(data.readableBytes, self.settings.maxMessageSize))!
            self.writeFrame(streamID: id.rawValue >> 1, flag: flag, payload: &part)
        }
    }

    public mutating func closeWrite(_ id: MuxedStreamID) throws(StreamMuxerError) {
        guard !self.failed else { throw .sessionClosed }
        guard let stream = self.streams[id] else { throw .unknownStream(id) }
        guard !stream.localClosed else { throw .streamClosedForWriting(id) }
        let flag: MplexFlag = Self.isRemotelyOpened(id) ? .closeReceiver : .closeInitiator
        var empty = ByteBuffer()
        self.writeFrame(streamID: id.rawValue >> 1, flag: flag, payload: &empty)
        self.streams[id]!.localClosed = true
        self.closeIfDone(id)
    }

    public mutating func reset(_ id: MuxedStreamID) {
        guard !self.failed, self.streams[id] != nil else { return }
        let flag: MplexFlag = Self.isRemotelyOpened(id) ? .resetReceiver : .resetInitiator
        var empty = ByteBuffer()
        self.writeFrame(streamID: id.rawValue >> 1, flag: flag, payload: &empty)
        self.removeStream(id)
    }

    /// mplex has no flow control; nothing to do.
    public mutating func releaseWindow(_ bytes: Int, on id: MuxedStreamID) {}

    /// mplex has no GoAway message: this only stops new streams in both directions.
    public mutating func goAway() {
        self.goingAway = true
    }

    // MARK: - Receiving

    public mutating func receive(_ bytes: ByteBuffer) {
        guard !self.failed else { return }
        self.inbound.accumulate(bytes)
        while !self.failed {
            switch self.decodeState {
            case .header:
                let parsed: (header: UInt64, length: UInt64, size: Int)?
                do {
                    parsed = try Self.parseHeader(self.inbound)
                } catch {
                    self.fail(error)
                    return
                }
                guard let (header, length, size) = parsed else {
                    self.finishReceive()
                    return
                }
                guard length <= UInt64(self.settings.maxMessageSize) else {
                    self.fail(.frameTooLarge(length: length, limit: UInt64(self.settings.maxMessageSize)))
                    return
                }
                self.inbound.moveReaderIndex(forwardBy: size)
                self.handle(header: header, length: Int(length))
            case .payload(let target, let remaining):
                let available = self.inbound.readableBytes
                if remaining > 0 && available == 0 {
                    self.finishReceive()
                    return
                }
                let count = min(available, remaining)
                if count > 0 {
                    let slice = self.inbound.readSlice(length: count)!
                    if let target, self.streams[target] != nil {
                        self.events.append(.data(target, slice))
                    }
                }
                self.decodeState = remaining == count ? .header : .payload(deliverTo: target, remaining: remaining - count)
            }
        }
    }

    /// Decodes header and length varints without consuming them; nil if incomplete.
    private static func parseHeader(_ buffer: ByteBuffer) throws(StreamMuxerError)
        -> (header: UInt64, length: UInt64, size: Int)? {
        let result: Result<(UInt64, UInt64, Int)?, StreamMuxerError> = buffer.withUnsafeReadableBytes { raw in
            let header: (value: UInt64, length: Int)
            do throws(Varint.DecodeError) {
                header = try Varint.decode(raw)
            } catch .truncated {
                return .success(nil)
            } catch {
                return .failure(.malformedVarint)
            }
            let rest = UnsafeRawBufferPointer(rebasing: raw[header.length...])
            do throws(Varint.DecodeError) {
                let length = try Varint.decode(rest)
                return .success((header.value, length.value, header.length + length.length))
            } catch .truncated {
                return .success(nil)
            } catch {
                return .failure(.malformedVarint)
            }
        }
        return try result.get()
    }

    private mutating func handle(header: UInt64, length: Int) {
        let rawFlag = UInt8(header & 0x7)
        guard let flag = MplexFlag(rawValue: rawFlag) else {
            self.fail(.invalidFrameType(rawFlag))
            return
        }
        let streamNumber = header >> 3
        // Messages from the initiator name streams the peer opened; "Receiver" messages name ours.
        let remoteOpened: Bool
        switch flag {
        case .newStream, .messageInitiator, .closeInitiator, .resetInitiator: remoteOpened = true
        case .messageReceiver, .closeReceiver, .resetReceiver: remoteOpened = false
        }
        let id = MuxedStreamID(streamNumber << 1 | (remoteOpened ? 1 : 0))
        var deliverTo: MuxedStreamID? = nil
        switch flag {
        case .newStream:
            guard self.streams[id] == nil else {
                self.fail(.duplicateStream(streamNumber))
                return
            }
            if self.goingAway || self.inboundStreams >= self.settings.maxConcurrentStreams {
                var empty = ByteBuffer()
                self.writeFrame(streamID: streamNumber, flag: .resetReceiver, payload: &empty)
                let reason: StreamRefusalReason = self.goingAway
                    ? .goingAway : .tooManyStreams(limit: self.settings.maxConcurrentStreams)
                self.events.append(.streamRefused(id, reason: reason))
            } else {
                self.streams[id] = Stream()
                self.inboundStreams += 1
                self.events.append(.streamOpened(id))
            }
            // The payload is the stream name, which we do not use.
        case .messageReceiver, .messageInitiator:
            if let stream = self.streams[id] {
                if stream.remoteClosed {
                    // Data after the peer's close: reset the stream, drop the bytes.
                    self.reset(id)
                    self.events.append(.streamReset(id, errorCode: nil))
                } else {
                    deliverTo = id
                }
            }
        case .closeReceiver, .closeInitiator:
            if let stream = self.streams[id], !stream.remoteClosed {
                self.streams[id]!.remoteClosed = true
                self.events.append(.remoteClosed(id))
                self.closeIfDone(id)
            }
        case .resetReceiver, .resetInitiator:
            if self.streams[id] != nil {
                self.removeStream(id)
                self.events.append(.streamReset(id, errorCode: nil))
            }
        }
        self.decodeState = .payload(deliverTo: deliverTo, remaining: length)
    }

    private mutating func finishReceive() {
        if self.inbound.readableBytes == 0 {
            self.inbound = ByteBuffer()
        }
    }

    private mutating func closeIfDone(_ id: MuxedStreamID) {
        guard let stream = self.streams[id], stream.localClosed, stream.remoteClosed else { return }
        self.removeStream(id)
        self.events.append(.streamClosed(id))
    }

    private mutating func removeStream(_ id: MuxedStreamID) {
        guard self.streams.removeValue(forKey: id) != nil else { return }
        if Self.isRemotelyOpened(id) { self.inboundStreams -= 1 }
    }

    private mutating func fail(_ error: StreamMuxerError) {
        self.failed = true
        self.inbound = ByteBuffer()
        self.events.append(.sessionError(error))
    }

    private mutating func writeFrame(streamID: UInt64, flag: MplexFlag, payload: inout ByteBuffer) {
        Multistream.writeUVarint(streamID << 3 | UInt64(flag.rawValue), into: &self.outbound)
        Multistream.writeUVarint(UInt64(payload.readableBytes), into: &self.outbound)
        self.outbound.writeBuffer(&payload)
    }
}
