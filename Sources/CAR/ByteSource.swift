#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Random-access bytes that CAR readers pull from: a file (`FileByteSource`) or memory (`MemoryByteSource`).
///
/// Reads are positional so a CARv2 reader can visit the header, the inner CARv1 range and the index
/// without a shared cursor; the readers do their own buffering on top (one reused buffer per reader).
public protocol ByteSource {
    /// Total length in bytes.
    var count: UInt64 { get }
    /// Copies up to `buffer.count` bytes starting at `offset` into `buffer`; returns how many were copied
    /// (fewer only at the end of the source, 0 at or past the end).
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(CARError) -> Int
}

extension ByteSource {
    /// Reads exactly `length` bytes at `offset` (fewer only if the source ends first).
    public func bytes(at offset: UInt64, length: Int) throws(CARError) -> [UInt8] {
        guard offset < count else { return [] }
        let n = Int(min(UInt64(length), count - offset))
        var failure: CARError? = nil
        let out = [UInt8](unsafeUninitializedCapacity: n) { buffer, initialized in
            var done = 0
            while done < n {
                do throws(CARError) {
                    let got = try read(at: offset + UInt64(done),
                                       into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[done..<n]))
                    if got == 0 { break }
                    done += got
                } catch {
                    failure = error
                    break
                }
            }
            initialized = done
        }
        if let failure { throw failure }
        return out
    }
}

/// A `ByteSource` over an array; for tests and small inputs.
public struct MemoryByteSource: ByteSource, Sendable {
    public let storage: [UInt8]

    public init(_ bytes: [UInt8]) { self.storage = bytes }

    public var count: UInt64 { UInt64(storage.count) }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(CARError) -> Int {
        guard offset < UInt64(storage.count) else { return 0 }
        let start = Int(offset)
        let n = min(buffer.count, storage.count - start)
        storage.withUnsafeBytes { src in
            buffer.baseAddress!.copyMemory(from: src.baseAddress! + start, byteCount: n)
        }
        return n
    }
}

/// A `ByteSource` over an open file, read with `pread(2)`. The descriptor is closed on deinit.
///
/// `pread` does not move a shared file position, so concurrent readers of one `FileByteSource` are safe.
public final class FileByteSource: ByteSource, Sendable {
    public let fileDescriptor: Int32
    public let count: UInt64
    /// The path it was opened from (for messages).
    public let path: String

    /// Opens `path` read-only and records its size.
    public init(path: String) throws(CARError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open \(path)", errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw .io(operation: "stat \(path)", errno: e)
        }
        self.fileDescriptor = fd
        self.count = UInt64(st.st_size)
        self.path = path
    }

    deinit { close(fileDescriptor) }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(CARError) -> Int {
        guard buffer.count > 0, offset < count else { return 0 }
        while true {
            let n = pread(fileDescriptor, buffer.baseAddress, buffer.count, off_t(offset))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw .io(operation: "read \(path)", errno: errno)
        }
    }
}
