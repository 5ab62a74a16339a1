import Multiformats
import NIOCore
import ProtobufWire

/// A Bitswap message (`boxo:bitswap/message/pb/message.proto`):
///
/// ```
/// Message { Wantlist wantlist=1; repeated bytes blocks=2; repeated Block payload=3;
///           repeated BlockPresence blockPresences=4; int32 pendingBytes=5 }
/// Wantlist { repeated Entry entries=1; bool full=2 }
/// Entry { bytes block=1; int32 priority=2; bool cancel=3; WantType wantType=4; bool sendDontHave=5 }
/// Block { bytes prefix=1; bytes data=2 }
/// BlockPresence { bytes cid=1; BlockPresenceType type=2 }
/// ```
///
/// Block bytes are `ByteBuffer` slices: decoding shares the inbound buffer, encoding copies each
/// block once into the outbound buffer.
public struct BitswapMessage: Sendable {
    /// One wantlist entry.
    public struct Entry: Sendable, Equatable {
        /// The CID exactly as sent (a v0 stays v0), so answers can echo it byte for byte.
        public var cid: CID
        public var priority: Int32
        public var cancel: Bool
        /// proto3 default: a missing `wantType` is `Block`.
        public var wantType: WantType
        public var sendDontHave: Bool

        public init(cid: CID, priority: Int32 = 1, cancel: Bool = false, wantType: WantType = .block,
                    sendDontHave: Bool = false) {
            self.cid = cid
            self.priority = priority
            self.cancel = cancel
            self.wantType = wantType
            self.sendDontHave = sendDontHave
        }
    }

    /// Why the decoder set a wantlist entry aside instead of returning it. The message as a whole
    /// is still valid; the engine counts these as refusals.
    public enum RejectedEntry: Sendable, Equatable {
        /// `wantType` outside {Block=0, Have=1}. proto3 enums are open, so the value is legal on the
        /// wire, but guessing what a future want type means could send bytes nobody asked for:
        /// the entry is ignored (not the whole message, which may carry valid wants and cancels).
        case unknownWantType(Int32)
        /// The entry's CID is longer than `CID.maxByteLength` (168, boxo's `MaximumAllowedCid`);
        /// boxo ignores these wants too.
        case cidTooLong(Int)
        /// The wantlist had more non-cancel entries than the decoder's cap; these, the lowest
        /// priorities (latest first among equals), were dropped.
        case overCap(count: Int)
    }

    public struct Wantlist: Sendable, Equatable {
        public var entries: [Entry]
        /// `full = true`: this list replaces the peer's whole wantlist.
        public var full: Bool

        public init(entries: [Entry] = [], full: Bool = false) {
            self.entries = entries
            self.full = full
        }
    }

    /// A 1.1.0+ block: the CID prefix (version, codec, multihash code, digest length) and the data.
    public struct Block: Sendable {
        public var prefix: [UInt8]
        public var data: ByteBuffer

        public init(prefix: [UInt8], data: ByteBuffer) {
            self.prefix = prefix
            self.data = data
        }
    }

    public enum PresenceType: Sendable, Equatable {
        /// `Have = 0` (the proto3 default, so it is omitted on the wire).
        case have
        /// `DontHave = 1`.
        case dontHave
    }

    public struct BlockPresence: Sendable, Equatable {
        public var cid: CID
        public var type: PresenceType

        public init(cid: CID, type: PresenceType) {
            self.cid = cid
            self.type = type
        }
    }

    public var wantlist: Wantlist?
    /// 1.0.0 `blocks`: raw block data (the CID is implied: sha2-256 CIDv0).
    public var blocks: [ByteBuffer]
    public var payload: [Block]
    public var blockPresences: [BlockPresence]
    public var pendingBytes: Int32
    /// Entries the decoder set aside (never encoded).
    public var rejectedEntries: [RejectedEntry]

    public init(wantlist: Wantlist? = nil, blocks: [ByteBuffer] = [], payload: [Block] = [],
                blockPresences: [BlockPresence] = [], pendingBytes: Int32 = 0) {
        self.wantlist = wantlist
        self.blocks = blocks
        self.payload = payload
        self.blockPresences = blockPresences
        self.pendingBytes = pendingBytes
        self.rejectedEntries = []
    }
}

// MARK: - Decoding

extension BitswapMessage {
    /// Decodes one message body (without its length prefix).
    ///
    /// - Parameter maxWantlistEntries: the most non-cancel entries kept; past it the lowest
    ///   priorities are dropped (FIFO among equals keeps the earlier ones) and reported in
    ///   `rejectedEntries` as `.overCap`. Cancels are always kept: they only shrink state.
    public init(decoding body: ByteBuffer, maxWantlistEntries: Int = .max) throws(BitswapDecodeError) {
        self.init()
        var reader = BitswapProtoReader(body)
        while let (field, wireType) = try reader.readTag(in: "Message") {
            switch field {
            case 1:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Message.wantlist")
                let slice = try reader.readLengthDelimited(field: "Message.wantlist")
                // protobuf merges repeated occurrences of a singular message field.
                var list = wantlist ?? Wantlist()
                try Self.decodeWantlist(slice, into: &list, rejected: &rejectedEntries)
                wantlist = list
            case 2:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Message.blocks")
                blocks.append(try reader.readLengthDelimited(field: "Message.blocks"))
            case 3:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Message.payload")
                payload.append(try Self.decodeBlock(try reader.readLengthDelimited(field: "Message.payload")))
            case 4:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Message.blockPresences")
                blockPresences.append(
                    try Self.decodePresence(try reader.readLengthDelimited(field: "Message.blockPresences")))
            case 5:
                try BitswapProtoReader.expect(wireType, ProtoWire.varint, field: "Message.pendingBytes")
                pendingBytes = Int32(truncatingIfNeeded: try reader.readVarint(field: "Message.pendingBytes"))
            default:
                try reader.skip(field: field, wireType: wireType, in: "Message")
            }
        }
        if var list = wantlist {
            Self.cap(&list, maxWantlistEntries, rejected: &rejectedEntries)
            wantlist = list
        }
    }

    /// Keeps at most `limit` non-cancel entries, dropping the lowest priorities (the latest among
    /// equals) and recording `.overCap` in `rejected`.
    static func cap(_ list: inout Wantlist, _ limit: Int, rejected: inout [RejectedEntry]) {
        let wants = list.entries.count(where: { !$0.cancel })
        guard wants > limit else { return }
        // Rank non-cancel entries: highest priority first, earlier first among equals.
        let ranked = list.entries.indices.filter { !list.entries[$0].cancel }.sorted {
            let a = list.entries[$0].priority, b = list.entries[$1].priority
            return a != b ? a > b : $0 < $1
        }
        var drop = [Bool](repeating: false, count: list.entries.count)
        for index in ranked[limit...] { drop[index] = true }
        var kept: [Entry] = []
        kept.reserveCapacity(list.entries.count - (wants - limit))
        for (index, entry) in list.entries.enumerated() where !drop[index] { kept.append(entry) }
        list.entries = kept
        rejected.append(.overCap(count: wants - limit))
    }

    private static func decodeWantlist(_ body: ByteBuffer, into list: inout Wantlist,
                                       rejected: inout [RejectedEntry]) throws(BitswapDecodeError) {
        var reader = BitswapProtoReader(body)
        while let (field, wireType) = try reader.readTag(in: "Wantlist") {
            switch field {
            case 1:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Wantlist.entries")
                let slice = try reader.readLengthDelimited(field: "Wantlist.entries")
                switch try decodeEntry(slice) {
                case .entry(let entry): list.entries.append(entry)
                case .rejected(let why): rejected.append(why)
                }
            case 2:
                try BitswapProtoReader.expect(wireType, ProtoWire.varint, field: "Wantlist.full")
                list.full = try reader.readVarint(field: "Wantlist.full") != 0
            default:
                try reader.skip(field: field, wireType: wireType, in: "Wantlist")
            }
        }
    }

    private enum EntryOutcome { case entry(Entry), rejected(RejectedEntry) }

    private static func decodeEntry(_ body: ByteBuffer) throws(BitswapDecodeError) -> EntryOutcome {
        var reader = BitswapProtoReader(body)
        var cidBytes: ByteBuffer?
        var priority: Int32 = 0
        var cancel = false
        var wantTypeRaw: Int32 = 0
        var sendDontHave = false
        while let (field, wireType) = try reader.readTag(in: "Entry") {
            switch field {
            case 1:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Entry.block")
                cidBytes = try reader.readLengthDelimited(field: "Entry.block")
            case 2:
                try BitswapProtoReader.expect(wireType, ProtoWire.varint, field: "Entry.priority")
                // int32: the low 32 bits of the (sign-extended) varint.
                priority = Int32(truncatingIfNeeded: try reader.readVarint(field: "Entry.priority"))
            case 3:
                try BitswapProtoReader.expect(wireType, ProtoWire.varint, field: "Entry.cancel")
                cancel = try reader.readVarint(field: "Entry.cancel") != 0
            case 4:
                try BitswapProtoReader.expect(wireType, ProtoWire.varint, field: "Entry.wantType")
                wantTypeRaw = Int32(truncatingIfNeeded: try reader.readVarint(field: "Entry.wantType"))
            case 5:
                try BitswapProtoReader.expect(wireType, ProtoWire.varint, field: "Entry.sendDontHave")
                sendDontHave = try reader.readVarint(field: "Entry.sendDontHave") != 0
            default:
                try reader.skip(field: field, wireType: wireType, in: "Entry")
            }
        }
        guard let cidBytes else { throw .missingCID(field: "Wantlist.Entry") }
        if cidBytes.readableBytes > CID.maxByteLength { return .rejected(.cidTooLong(cidBytes.readableBytes)) }
        let cid = try parseCID(cidBytes, field: "Wantlist.Entry.block")
        let wantType: WantType
        switch wantTypeRaw {
        case 0: wantType = .block
        case 1: wantType = .have
        default:
            // A cancel needs no want type: honour it whatever the type says.
            if cancel { wantType = .block } else { return .rejected(.unknownWantType(wantTypeRaw)) }
        }
        return .entry(Entry(cid: cid, priority: priority, cancel: cancel, wantType: wantType,
                            sendDontHave: sendDontHave))
    }

    private static func parseCID(_ bytes: ByteBuffer, field: String) throws(BitswapDecodeError) -> CID {
        let parsed: Result<(CID, Int), MultiformatsError> = bytes.withUnsafeReadableBytes { raw in
            do throws(MultiformatsError) { return .success(try CID.parse(raw)) } catch { return .failure(error) }
        }
        switch parsed {
        case .success(let (cid, used)):
            guard used == bytes.readableBytes else {
                throw .invalidCID(field: field, reason: "\(bytes.readableBytes - used) trailing bytes after the CID")
            }
            return cid
        case .failure(let error):
            throw .invalidCID(field: field, reason: error.description)
        }
    }

    private static func decodeBlock(_ body: ByteBuffer) throws(BitswapDecodeError) -> Block {
        var reader = BitswapProtoReader(body)
        var prefix: [UInt8] = []
        var data = ByteBuffer()
        while let (field, wireType) = try reader.readTag(in: "Block") {
            switch field {
            case 1:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Block.prefix")
                let slice = try reader.readLengthDelimited(field: "Block.prefix")
                prefix = Array(slice.readableBytesView)
            case 2:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "Block.data")
                data = try reader.readLengthDelimited(field: "Block.data")
            default:
                try reader.skip(field: field, wireType: wireType, in: "Block")
            }
        }
        return Block(prefix: prefix, data: data)
    }

    private static func decodePresence(_ body: ByteBuffer) throws(BitswapDecodeError) -> BlockPresence {
        var reader = BitswapProtoReader(body)
        var cid: CID?
        var type: PresenceType = .have
        while let (field, wireType) = try reader.readTag(in: "BlockPresence") {
            switch field {
            case 1:
                try BitswapProtoReader.expect(wireType, ProtoWire.lengthDelimited, field: "BlockPresence.cid")
                cid = try parseCID(try reader.readLengthDelimited(field: "BlockPresence.cid"),
                                   field: "BlockPresence.cid")
            case 2:
                try BitswapProtoReader.expect(wireType, ProtoWire.varint, field: "BlockPresence.type")
                let raw = Int32(truncatingIfNeeded: try reader.readVarint(field: "BlockPresence.type"))
                switch raw {
                case 0: type = .have
                case 1: type = .dontHave
                default: throw .unknownPresenceType(raw)
                }
            default:
                try reader.skip(field: field, wireType: wireType, in: "BlockPresence")
            }
        }
        guard let cid else { throw .missingCID(field: "BlockPresence") }
        return BlockPresence(cid: cid, type: type)
    }
}

// MARK: - Encoding

extension BitswapMessage {
    static func entrySize(_ e: Entry) -> Int {
        var n = Proto.delimitedSize(e.cid.bytes.count)
        if e.priority != 0 { n += 1 + ProtoWire.varintLength(Proto.int32Wire(e.priority)) }
        if e.cancel { n += 2 }
        if e.wantType == .have { n += 2 }
        if e.sendDontHave { n += 2 }
        return n
    }

    static func wantlistSize(_ w: Wantlist) -> Int {
        var n = w.full ? 2 : 0
        for e in w.entries { n += Proto.delimitedSize(entrySize(e)) }
        return n
    }

    static func blockSize(_ b: Block) -> Int {
        Proto.delimitedSize(b.prefix.count) + Proto.delimitedSize(b.data.readableBytes)
    }

    static func presenceSize(_ p: BlockPresence) -> Int {
        Proto.delimitedSize(p.cid.bytes.count) + (p.type == .dontHave ? 2 : 0)
    }

    /// The size of the encoded body (without the length prefix).
    public var encodedSize: Int {
        var n = 0
        if let wantlist { n += Proto.delimitedSize(Self.wantlistSize(wantlist)) }
        for b in blocks { n += Proto.delimitedSize(b.readableBytes) }
        for b in payload { n += Proto.delimitedSize(Self.blockSize(b)) }
        for p in blockPresences { n += Proto.delimitedSize(Self.presenceSize(p)) }
        if pendingBytes != 0 { n += 1 + ProtoWire.varintLength(Proto.int32Wire(pendingBytes)) }
        return n
    }

    /// Writes `uvarint(length) ‖ body` (the stream framing) into `buffer`, reserving the exact
    /// size first so block bytes are copied once.
    public func encodeFrame(into buffer: inout ByteBuffer) {
        let size = encodedSize
        buffer.reserveCapacity(minimumWritableBytes: ProtoWire.varintLength(UInt64(size)) + size)
        Proto.writeVarint(UInt64(size), into: &buffer)
        encodeBody(into: &buffer)
    }

    /// The frame (`uvarint(length) ‖ body`) as a list of buffers, for writing to a stream without copying the
    /// blocks: the protobuf framing goes into small buffers and every block of at least `inlineBelow` bytes is
    /// its own part, the block's own buffer (a slice of the storage read, or the block cache's copy). Smaller
    /// blocks are copied inline (an extra part costs more than copying a few KiB).
    public func encodeFrameParts(inlineBelow: Int = BitswapFrame.defaultInlineLimit) -> BitswapFrame {
        let size = encodedSize
        var writer = FrameWriter(inlineBelow: inlineBelow)
        Proto.writeVarint(UInt64(size), into: &writer.current)
        encodeBody(&writer)
        return writer.finish(byteCount: ProtoWire.varintLength(UInt64(size)) + size)
    }

    /// Writes the protobuf body only. proto3 zero values are omitted, as Go's encoder does.
    public func encodeBody(into buffer: inout ByteBuffer) {
        var writer = FrameWriter(contiguousIn: buffer)
        buffer = ByteBuffer()
        encodeBody(&writer)
        buffer = writer.current
    }

    private func encodeBody(_ w: inout FrameWriter) {
        if let wantlist {
            Proto.writeVarint(Proto.tag(1, ProtoWire.lengthDelimited), into: &w.current)
            Proto.writeVarint(UInt64(Self.wantlistSize(wantlist)), into: &w.current)
            for e in wantlist.entries {
                Proto.writeVarint(Proto.tag(1, ProtoWire.lengthDelimited), into: &w.current)
                Proto.writeVarint(UInt64(Self.entrySize(e)), into: &w.current)
                Proto.writeVarint(Proto.tag(1, ProtoWire.lengthDelimited), into: &w.current)
                Proto.writeVarint(UInt64(e.cid.bytes.count), into: &w.current)
                w.current.writeBytes(e.cid.bytes)
                if e.priority != 0 {
                    Proto.writeVarint(Proto.tag(2, ProtoWire.varint), into: &w.current)
                    Proto.writeVarint(Proto.int32Wire(e.priority), into: &w.current)
                }
                if e.cancel { w.current.writeBytes([0x18, 0x01]) }
                if e.wantType == .have { w.current.writeBytes([0x20, 0x01]) }
                if e.sendDontHave { w.current.writeBytes([0x28, 0x01]) }
            }
            if wantlist.full { w.current.writeBytes([0x10, 0x01]) }
        }
        for b in blocks {
            Proto.writeVarint(Proto.tag(2, ProtoWire.lengthDelimited), into: &w.current)
            Proto.writeVarint(UInt64(b.readableBytes), into: &w.current)
            w.writeBlock(b)
        }
        for b in payload {
            Proto.writeVarint(Proto.tag(3, ProtoWire.lengthDelimited), into: &w.current)
            Proto.writeVarint(UInt64(Self.blockSize(b)), into: &w.current)
            Proto.writeVarint(Proto.tag(1, ProtoWire.lengthDelimited), into: &w.current)
            Proto.writeVarint(UInt64(b.prefix.count), into: &w.current)
            w.current.writeBytes(b.prefix)
            Proto.writeVarint(Proto.tag(2, ProtoWire.lengthDelimited), into: &w.current)
            Proto.writeVarint(UInt64(b.data.readableBytes), into: &w.current)
            w.writeBlock(b.data)
        }
        for p in blockPresences {
            Proto.writeVarint(Proto.tag(4, ProtoWire.lengthDelimited), into: &w.current)
            Proto.writeVarint(UInt64(Self.presenceSize(p)), into: &w.current)
            Proto.writeVarint(Proto.tag(1, ProtoWire.lengthDelimited), into: &w.current)
            Proto.writeVarint(UInt64(p.cid.bytes.count), into: &w.current)
            w.current.writeBytes(p.cid.bytes)
            if p.type == .dontHave { w.current.writeBytes([0x10, 0x01]) }
        }
        if pendingBytes != 0 {
            Proto.writeVarint(Proto.tag(5, ProtoWire.varint), into: &w.current)
            Proto.writeVarint(Proto.int32Wire(pendingBytes), into: &w.current)
        }
    }
}

/// One encoded Bitswap frame (`uvarint(length) ‖ message`) as the buffers to write, in order: see
/// `BitswapMessage.encodeFrameParts(inlineBelow:)`.
public struct BitswapFrame: Sendable {
    /// Blocks below this many bytes are copied into the framing buffers rather than written as parts of their own.
    public static let defaultInlineLimit = 16 << 10

    /// The buffers, in order; their readable bytes together are the frame.
    public var parts: [ByteBuffer]
    /// The frame's length in bytes.
    public var byteCount: Int

    public init(parts: [ByteBuffer], byteCount: Int) {
        self.parts = parts
        self.byteCount = byteCount
    }

    /// The frame in one buffer (a copy; for tests and tools).
    public func contiguous() -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: byteCount)
        for part in parts { out.writeImmutableBuffer(part) }
        return out
    }
}

/// Collects a frame's bytes: framing into `current`, blocks either copied into it or cut out as parts of their own.
struct FrameWriter {
    var current: ByteBuffer
    var parts: [ByteBuffer] = []
    let inlineBelow: Int

    /// Writes everything into `buffer` (blocks copied).
    init(contiguousIn buffer: ByteBuffer) {
        self.current = buffer
        self.inlineBelow = .max
    }

    init(inlineBelow: Int) {
        self.current = ByteBufferAllocator().buffer(capacity: 256)
        self.inlineBelow = inlineBelow
    }

    mutating func writeBlock(_ data: ByteBuffer) {
        if data.readableBytes < inlineBelow {
            current.writeImmutableBuffer(data)
            return
        }
        if current.readableBytes > 0 { parts.append(current) }
        parts.append(data)
        current = ByteBufferAllocator().buffer(capacity: 64)
    }

    mutating func finish(byteCount: Int) -> BitswapFrame {
        if current.readableBytes > 0 { parts.append(current) }
        return BitswapFrame(parts: parts, byteCount: byteCount)
    }
}
