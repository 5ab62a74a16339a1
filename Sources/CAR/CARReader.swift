import Multiformats

/// Limits and modes for reading CAR files; the defaults are go-car's.
public struct CARReadOptions: Hashable, Sendable {
    /// go-car `DefaultMaxAllowedHeaderSize` (32 MiB): a longer header is `headerTooLarge`.
    public var maxHeaderLength: UInt64 = CARHeader.defaultMaxHeaderLength
    /// go-car `DefaultMaxAllowedSectionSize` (8 MiB): a longer section (CID + block) is `sectionTooLarge`.
    public var maxSectionLength: UInt64 = 8 << 20
    /// go-car `ZeroLengthSectionAsEOF`: "allow the CARv1 decoder to treat a zero-length section as the end
    /// of the input CAR file". Off by default, where a zero-length section is `zeroLengthSection`.
    public var zeroLengthSectionAsEOF = false
    /// Bytes read from the source at a time; the buffer is allocated once and reused.
    public var bufferSize = 1 << 20

    public init() {}

    public init(maxHeaderLength: UInt64 = CARHeader.defaultMaxHeaderLength, maxSectionLength: UInt64 = 8 << 20,
                zeroLengthSectionAsEOF: Bool = false, bufferSize: Int = 1 << 20) {
        self.maxHeaderLength = maxHeaderLength
        self.maxSectionLength = maxSectionLength
        self.zeroLengthSectionAsEOF = zeroLengthSectionAsEOF
        self.bufferSize = bufferSize
    }
}

/// One section of a CARv1 payload: `uvarint(len(CID) + len(block)) ‖ CID ‖ block`.
///
/// Offsets are relative to the start of the CARv1 payload (byte 0 of the CARv1 header), as CARv2 index
/// offsets are; `offset` points at the section's length varint.
public struct CARSection: Hashable, Sendable {
    public var cid: CID
    /// Where the section (its varint) starts.
    public var offset: UInt64
    /// The whole section: varint + CID + block.
    public var length: UInt64
    /// Where the block bytes start.
    public var blockOffset: UInt64
    /// How many block bytes there are.
    public var blockLength: UInt64

    public init(cid: CID, offset: UInt64, length: UInt64, blockOffset: UInt64, blockLength: UInt64) {
        self.cid = cid
        self.offset = offset
        self.length = length
        self.blockOffset = blockOffset
        self.blockLength = blockLength
    }
}

/// A streaming reader of the sections of a CARv1, or of the CARv1 payload inside a CARv2.
///
/// It never holds the whole file: it reads through one reused buffer (`CARReadOptions.bufferSize`, grown
/// only when a single header or block is larger), and skips block bytes it is not asked for.
public final class CARReader<Source: ByteSource> {
    public let source: Source
    public let options: CARReadOptions
    /// Where the parts of the file are.
    public private(set) var layout: CARLayout
    /// The CARv1 header of the payload (for a CARv2, the inner header, not the pragma).
    public private(set) var header: CARHeader
    /// Bytes of the payload's header, varint included: the first section starts here (payload-relative).
    public private(set) var headerLength: UInt64

    private var buffer: UnsafeMutableRawBufferPointer
    /// Absolute source offset of `buffer[0]`.
    private var bufferOrigin: UInt64 = 0
    /// Valid bytes in `buffer`.
    private var bufferFill = 0
    /// Absolute offset of the next section.
    private var cursor: UInt64
    /// Absolute end of what may be read (the payload end once the layout is known).
    private var limit: UInt64
    private var finished = false

    /// Detects CARv1 or CARv2 from the first bytes of `source` and positions the reader on the first section.
    public init(source: Source, options: CARReadOptions = CARReadOptions()) throws(CARError) {
        self.source = source
        self.options = options
        self.buffer = .allocate(byteCount: max(options.bufferSize, 4096), alignment: 16)
        self.limit = source.count
        self.cursor = 0
        // Placeholders until the layout is read; every stored property must be set before `self` is used.
        self.layout = CARLayout(version: 1, v2Header: nil, payload: 0..<source.count, index: nil)
        self.header = CARHeader(roots: [])
        self.headerLength = 0

        let (first, firstLength) = try readHeader(at: 0)
        switch first.version {
        case 1:
            self.header = first
            self.headerLength = UInt64(firstLength)
            self.cursor = UInt64(firstLength)
        case 2:
            // carv2: "the pragma is a fixed 11 byte value"; a `{version: 2}` header with other bytes is not it.
            let pragma = try window(at: 0, length: CARv2.pragma.count)
            guard firstLength == CARv2.pragma.count, pragma.elementsEqual(CARv2.pragma) else { throw .invalidPragma }
            let raw = try window(at: UInt64(CARv2.pragma.count), length: CARv2.headerLength)
            let v2 = try CARv2Header.parse(raw)
            try v2.validate(fileSize: source.count)
            let payload = v2.dataOffset..<v2.dataOffset + v2.dataSize
            self.layout = CARLayout(version: 2, v2Header: v2, payload: payload,
                                    index: v2.hasIndex ? v2.indexOffset..<source.count : nil)
            self.limit = payload.upperBound
            let (inner, innerLength) = try readHeader(at: payload.lowerBound)
            guard inner.version == 1 else { throw .unexpectedPayloadVersion(inner.version) }
            self.header = inner
            self.headerLength = UInt64(innerLength)
            self.cursor = payload.lowerBound + UInt64(innerLength)
        default:
            throw .unsupportedVersion(first.version)
        }
    }

    deinit { buffer.deallocate() }

    /// Reads the next section without reading its block bytes; nil at the end of the payload.
    public func next() throws(CARError) -> CARSection? {
        guard let (section, _) = try nextHead() else { return nil }
        return section
    }

    /// Reads the next section and lends its block bytes to `body` (valid only during the call; no copy).
    public func next(block body: (CARSection, UnsafeRawBufferPointer) -> Void) throws(CARError) -> CARSection? {
        guard let (section, blockStart) = try nextHead() else { return nil }
        let data = try window(at: blockStart, length: Int(section.blockLength))
        body(section, data)
        return section
    }

    /// Reads the next section and copies its block bytes.
    public func nextBlock() throws(CARError) -> (section: CARSection, data: [UInt8])? {
        var copy: [UInt8] = []
        guard let section = try next(block: { _, data in copy = Array(data) }) else { return nil }
        return (section, copy)
    }

    /// Parses the section at `cursor` and moves `cursor` past it; returns the section and the absolute
    /// start of its block.
    private func nextHead() throws(CARError) -> (CARSection, UInt64)? {
        guard !finished, cursor < limit else { finished = true; return nil }
        let payloadStart = layout.payload.lowerBound
        let offset = cursor - payloadStart
        let head = try window(at: cursor, length: Varint.maxLength)
        let length: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) { length = try Varint.decode(head) } catch {
            // Fewer than nine bytes left and no final varint byte: the payload ends inside the varint.
            if error == .truncated { throw .truncatedSectionLength(offset: offset) }
            throw .invalidSectionLengthVarint(offset: offset, error)
        }
        if length.value == 0 {
            if options.zeroLengthSectionAsEOF {
                finished = true
                return nil
            }
            throw .zeroLengthSection(offset: offset)
        }
        guard length.value <= options.maxSectionLength else {
            throw .sectionTooLarge(offset: offset, length: length.value, limit: options.maxSectionLength)
        }
        let bodyStart = cursor + UInt64(length.length)
        let available = limit - bodyStart
        guard length.value <= available else {
            throw .truncatedSection(offset: offset, length: length.value, available: available)
        }
        // A CID is at most `CID.maxByteLength` bytes; looking at one more lets `CID.parse` report a
        // too-long CID rather than a truncated one.
        let cidWindow = try window(at: bodyStart, length: Int(min(length.value, UInt64(CID.maxByteLength + 16))))
        let cid: CID
        let cidLength: Int
        do throws(MultiformatsError) { (cid, cidLength) = try CID.parse(cidWindow) } catch {
            throw .invalidSectionCID(offset: offset, error)
        }
        let blockStart = bodyStart + UInt64(cidLength)
        let section = CARSection(cid: cid, offset: offset, length: UInt64(length.length) + length.value,
                                 blockOffset: blockStart - payloadStart, blockLength: length.value - UInt64(cidLength))
        cursor = bodyStart + length.value
        return (section, blockStart)
    }

    /// Reads a length-prefixed CARv1 header at absolute `offset`.
    private func readHeader(at offset: UInt64) throws(CARError) -> (CARHeader, Int) {
        let head = try window(at: offset, length: Varint.maxLength)
        let length: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) { length = try Varint.decode(head) } catch {
            if error == .truncated { throw .truncatedHeader }
            throw .invalidHeaderLengthVarint(error)
        }
        try CARHeader.checkLength(length.value, maxLength: options.maxHeaderLength)
        let bodyStart = offset + UInt64(length.length)
        guard length.value <= limit - min(limit, bodyStart) else { throw .truncatedHeader }
        let body = try window(at: bodyStart, length: Int(length.value))
        return (try CARHeader.decodeBody(body), length.length + Int(length.value))
    }

    /// Up to `length` bytes at absolute `offset` (fewer only where the readable range ends), from the
    /// buffer, refilling or growing it as needed. Valid until the next call.
    private func window(at offset: UInt64, length: Int) throws(CARError) -> UnsafeRawBufferPointer {
        let wanted = Int(min(UInt64(length), limit - min(limit, offset)))
        if offset >= bufferOrigin, offset + UInt64(wanted) <= bufferOrigin + UInt64(bufferFill) {
            let start = Int(offset - bufferOrigin)
            return UnsafeRawBufferPointer(rebasing: buffer[start..<start + wanted])
        }
        if wanted > buffer.count {
            // Only one header or block bigger than the buffer gets here; both are bounded by the options.
            buffer.deallocate()
            buffer = .allocate(byteCount: wanted, alignment: 16)
            bufferFill = 0
        } else if offset >= bufferOrigin, offset < bufferOrigin + UInt64(bufferFill) {
            // Keep the bytes already read past `offset`.
            let keep = Int(bufferOrigin + UInt64(bufferFill) - offset)
            let from = Int(offset - bufferOrigin)
            buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + from, byteCount: keep)
            bufferFill = keep
        } else {
            bufferFill = 0
        }
        bufferOrigin = offset
        while bufferFill < wanted {
            let end = min(UInt64(buffer.count), limit - offset)
            let room = UnsafeMutableRawBufferPointer(rebasing: buffer[bufferFill..<Int(end)])
            let n = try source.read(at: offset + UInt64(bufferFill), into: room)
            // The layout was checked against `source.count`; a short read means the file shrank.
            guard n > 0 else { return UnsafeRawBufferPointer(rebasing: buffer[0..<bufferFill]) }
            bufferFill += n
        }
        return UnsafeRawBufferPointer(rebasing: buffer[0..<wanted])
    }
}

/// The start of a section read on its own (from a ranged read at an index offset, which points at the
/// section's varint): `uvarint(len(CID) + len(block)) ‖ CID ‖ …`.
public enum SectionHead {
    /// Parses the varint and CID at the start of `raw`. `headerLength` is varint + CID (the block starts
    /// there); `blockLength` is the block's length. `raw` needs only the varint and CID bytes.
    public static func parse(raw: UnsafeRawBufferPointer, maxSectionLength: UInt64 = 8 << 20)
        throws(CARError) -> (cid: CID, headerLength: Int, blockLength: UInt64)
    {
        let (varintLength, sectionLength) = try lengthPrefix(raw, maxSectionLength: maxSectionLength)
        let cidBytes = UnsafeRawBufferPointer(rebasing: raw[varintLength..<varintLength + Int(min(UInt64(raw.count - varintLength), sectionLength))])
        do throws(MultiformatsError) {
            let (cid, cidLength) = try CID.parse(cidBytes)
            return (cid, varintLength + cidLength, sectionLength - UInt64(cidLength))
        } catch { throw .invalidSectionCID(offset: 0, error) }
    }

    /// Like `parse`, without building the CID (no allocation): the CID is `raw[varintLength..<headerLength]`.
    public static func measure(raw: UnsafeRawBufferPointer, maxSectionLength: UInt64 = 8 << 20)
        throws(CARError) -> (varintLength: Int, headerLength: Int, blockLength: UInt64)
    {
        let (varintLength, sectionLength) = try lengthPrefix(raw, maxSectionLength: maxSectionLength)
        let cidBytes = UnsafeRawBufferPointer(rebasing: raw[varintLength..<varintLength + Int(min(UInt64(raw.count - varintLength), sectionLength))])
        do throws(MultiformatsError) {
            let cidLength = try CIDScanner.length(cidBytes)
            return (varintLength, varintLength + cidLength, sectionLength - UInt64(cidLength))
        } catch { throw .invalidSectionCID(offset: 0, error) }
    }

    private static func lengthPrefix(_ raw: UnsafeRawBufferPointer, maxSectionLength: UInt64)
        throws(CARError) -> (Int, UInt64)
    {
        let length: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) { length = try Varint.decode(raw) } catch {
            if error == .truncated { throw .truncatedSectionLength(offset: 0) }
            throw .invalidSectionLengthVarint(offset: 0, error)
        }
        if length.value == 0 { throw .zeroLengthSection(offset: 0) }
        guard length.value <= maxSectionLength else {
            throw .sectionTooLarge(offset: 0, length: length.value, limit: maxSectionLength)
        }
        return (length.length, length.value)
    }
}

/// Finds a binary CID's length without building it.
enum CIDScanner {
    static func length(_ raw: UnsafeRawBufferPointer) throws(MultiformatsError) -> Int {
        guard raw.count >= 2 else { throw .truncated(what: "CID") }
        if raw[0] == 0x12 && raw[1] == 0x20 {
            guard raw.count >= 34 else { throw .truncated(what: "CIDv0") }
            return 34
        }
        var position = 0
        var digestLength: UInt64 = 0
        // Four varints: version, codec, multihash code, digest length.
        for field in 0..<4 {
            let v: (value: UInt64, length: Int)
            do throws(Varint.DecodeError) {
                v = try Varint.decode(UnsafeRawBufferPointer(rebasing: raw[position...]))
            } catch { throw .varint(error) }
            position += v.length
            if field == 0 && v.value != 1 { throw .unsupportedCIDVersion(v.value) }
            digestLength = v.value
        }
        guard digestLength <= UInt64(raw.count - position) else { throw .truncated(what: "multihash digest") }
        let total = position + Int(digestLength)
        guard total <= CID.maxByteLength else { throw .cidTooLong(total) }
        return total
    }
}
