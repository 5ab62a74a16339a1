#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Multiformats

/// `write(2)` and `close(2)` under names the methods below do not shadow.
private func posixWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }
private func posixClose(_ fd: Int32) { _ = close(fd) }

/// A file opened for writing through one reused buffer; `close()` flushes.
final class FileSink {
    let fd: Int32
    let path: String
    private var buffer: [UInt8] = []
    private let capacity: Int
    private(set) var written: UInt64 = 0
    private var closed = false

    init(path: String, capacity: Int = 1 << 20) throws(CARError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(operation: "create \(path)", errno: errno) }
        self.fd = fd
        self.path = path
        self.capacity = capacity
        buffer.reserveCapacity(capacity)
    }

    deinit { if !closed { posixClose(fd) } }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CARError) {
        if buffer.count + bytes.count > capacity { try flush() }
        if bytes.count >= capacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
        written += UInt64(bytes.count)
    }

    func write(_ bytes: [UInt8]) throws(CARError) {
        try bytes.withBytes { raw throws(CARError) in try write(raw) }
    }

    func flush() throws(CARError) {
        guard !buffer.isEmpty else { return }
        try buffer.withBytes { raw throws(CARError) in try writeAll(raw) }
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws(CARError) {
        guard !closed else { return }
        closed = true
        defer { posixClose(fd) }
        try flush()
    }

    private func writeAll(_ raw: UnsafeRawBufferPointer) throws(CARError) {
        var done = 0
        while done < raw.count {
            let n = posixWrite(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "write \(path)", errno: errno)
            }
            done += n
        }
    }
}

/// Writes a CARv1 file section by section: `uvarint(hdrLen) ‖ header`, then `uvarint(len) ‖ CID ‖ block`…
///
/// The output is byte-identical to go-car's for the same roots and blocks in the same order.
public final class CARv1Writer {
    private let sink: FileSink
    /// Bytes of the header (varint included): the first section's offset.
    public let headerLength: UInt64

    /// Creates (or truncates) `path` and writes the header for `roots`.
    public init(path: String, roots: [CID]) throws(CARError) {
        sink = try FileSink(path: path)
        let header = Self.header(roots: roots)
        headerLength = UInt64(header.count)
        try sink.write(header)
    }

    /// Bytes written so far: the offset the next section will have.
    public var position: UInt64 { sink.written }

    /// Appends one section; returns where it went (offsets relative to the start of the file, which is the
    /// CARv1 payload start).
    @discardableResult
    public func append(cid: CID, data: UnsafeRawBufferPointer) throws(CARError) -> CARSection {
        let sectionLength = UInt64(cid.bytes.count) + UInt64(data.count)
        var head: [UInt8] = []
        head.reserveCapacity(Varint.maxLength + cid.bytes.count)
        Varint.encode(sectionLength, into: &head)
        let varintLength = head.count
        head.append(contentsOf: cid.bytes)
        let offset = sink.written
        try sink.write(head)
        try sink.write(data)
        return CARSection(cid: cid, offset: offset, length: UInt64(varintLength) + sectionLength,
                          blockOffset: offset + UInt64(head.count), blockLength: UInt64(data.count))
    }

    /// Appends one section from an array.
    @discardableResult
    public func append(cid: CID, data: [UInt8]) throws(CARError) -> CARSection {
        try data.withBytes { raw throws(CARError) in try append(cid: cid, data: raw) }
    }

    /// Flushes and closes the file. Further appends are a programming error.
    public func close() throws(CARError) { try sink.close() }

    /// The header bytes for `roots`: `uvarint(length) ‖ DAG-CBOR {roots, version: 1}`.
    public static func header(roots: [CID]) -> [UInt8] {
        CARHeader(roots: roots, version: 1).encode()
    }

    /// One section: `uvarint(len(CID) + len(data)) ‖ CID ‖ data`.
    public static func section(cid: CID, data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Varint.maxLength + cid.bytes.count + data.count)
        Varint.encode(UInt64(cid.bytes.count + data.count), into: &out)
        out.append(contentsOf: cid.bytes)
        out.append(contentsOf: data)
        return out
    }
}

/// Writes CARv2 files by wrapping a CARv1 payload and appending an index, as go-car's `WrapV1` does:
/// `pragma ‖ header(dataOffset 51, dataSize, indexOffset 51 + dataSize) ‖ CARv1 ‖ uvarint codec ‖ index`.
public enum CARv2Writer {
    /// Wraps the CARv1 in `carv1` (copied in buffer-sized pieces) into a CARv2 at `path`, followed by
    /// `index` if given (its encoding includes the codec varint). Returns the header written.
    @discardableResult
    public static func wrap(carv1: some ByteSource, index: CARIndex?, to path: String,
                            fullyIndexed: Bool = false) throws(CARError) -> CARv2Header {
        let sink = try FileSink(path: path)
        let dataOffset = CARv2.minimumDataOffset
        var header = CARv2Header(dataOffset: dataOffset, dataSize: carv1.count,
                                 indexOffset: index == nil ? 0 : dataOffset + carv1.count)
        header.isFullyIndexed = fullyIndexed
        try sink.write(CARv2.pragma)
        try sink.write(header.encode())
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        var offset: UInt64 = 0
        while offset < carv1.count {
            let n = try carv1.read(at: offset, into: chunk)
            guard n > 0 else { throw .io(operation: "read CARv1 payload (short read)", errno: 0) }
            try sink.write(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
            offset += UInt64(n)
        }
        if let index { try sink.write(index.encode()) }
        try sink.close()
        return header
    }
}
