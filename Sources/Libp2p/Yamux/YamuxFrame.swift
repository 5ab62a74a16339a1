import NIOCore

// libp2p/specs yamux/README.md, "Framing":
//
//     | Version (8 bits) | Type (8 bits) | Flags (16 bits) | StreamID (32 bits) | Length (32 bits) |
//
// "All fields are in network order (big-endian)." The header is 12 bytes; only Data frames carry a
// payload (of `length` bytes).

/// The yamux frame type ("Type" field).
public enum YamuxFrameType: UInt8, Sendable {
    /// "Used to transmit data. May transmit zero length payloads depending on the flags."
    case data = 0
    /// "Used to updated the senders receive window size." Length = window delta.
    case windowUpdate = 1
    /// "Used to measure RTT." Length = opaque value.
    case ping = 2
    /// "Used to close a session." Length = error code.
    case goAway = 3
}

/// The yamux "Flags" field.
public struct YamuxFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    /// "Signals the start of a new stream."
    public static let syn = YamuxFlags(rawValue: 0x1)
    /// "Acknowledges the start of a new stream."
    public static let ack = YamuxFlags(rawValue: 0x2)
    /// "Performs a half-close of a stream."
    public static let fin = YamuxFlags(rawValue: 0x4)
    /// "Reset a stream immediately."
    public static let rst = YamuxFlags(rawValue: 0x8)
}

/// GoAway codes ("Length" of a GoAway frame).
public enum YamuxGoAwayCode: UInt32, Sendable {
    case normal = 0
    case protocolError = 1
    case internalError = 2
}

/// One decoded 12-byte yamux header.
public struct YamuxHeader: Equatable, Sendable {
    public static let size = 12
    /// The only version defined ("The version field is used for future backward compatibility.
    /// At the current time, the field is always set to 0").
    public static let version: UInt8 = 0

    public var type: YamuxFrameType
    public var flags: YamuxFlags
    public var streamID: UInt32
    public var length: UInt32

    public init(type: YamuxFrameType, flags: YamuxFlags, streamID: UInt32, length: UInt32) {
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.length = length
    }

    /// Appends the 12 header bytes.
    @inlinable
    public func write(into buffer: inout ByteBuffer) {
        // One 4-byte and two 4-byte stores: version ‖ type ‖ flags packed into the first word.
        let first = UInt32(Self.version) << 24 | UInt32(self.type.rawValue) << 16 | UInt32(self.flags.rawValue)
        buffer.writeMultipleIntegers(first, self.streamID, self.length)
    }

    /// Reads a header from the start of `buffer` if 12 bytes are present. Does not move the reader
    /// index on a nil result or error.
    public static func read(from buffer: inout ByteBuffer) throws(StreamMuxerError) -> YamuxHeader? {
        guard let (first, streamID, length) = buffer.getMultipleIntegers(
            at: buffer.readerIndex, as: (UInt32, UInt32, UInt32).self)
        else { return nil }
        let version = UInt8(truncatingIfNeeded: first >> 24)
        guard version == Self.version else { throw .invalidVersion(version) }
        let rawType = UInt8(truncatingIfNeeded: first >> 16)
        guard let type = YamuxFrameType(rawValue: rawType) else { throw .invalidFrameType(rawType) }
        buffer.moveReaderIndex(forwardBy: Self.size)
        return YamuxHeader(type: type, flags: YamuxFlags(rawValue: UInt16(truncatingIfNeeded: first)),
                           streamID: streamID, length: length)
    }
}
