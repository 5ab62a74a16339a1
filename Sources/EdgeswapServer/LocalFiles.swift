#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto

/// Small POSIX file helpers for the CLI-side work (fixtures, ingest): streamed hashing and atomic writes.
/// They read in 1 MiB pieces into one reused buffer and hand swift-crypto raw pointers.
public enum LocalFiles {
    public struct Failure: Error, Equatable, Sendable, CustomStringConvertible {
        public let operation: String
        public let path: String
        public let errno: Int32

        public var description: String {
            "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        }
    }

    /// The size of a regular file, or nil if there is none at `path`.
    public static func size(of path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(st.st_size)
    }

    /// Whether `path` is a directory.
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Reads the file at `path` front to back, handing each piece to `body`; returns the byte count.
    public static func stream(
        _ path: String, bufferSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> UInt64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: bufferSize)
        var total: UInt64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(operation: "read", path: path, errno: errno)
            }
            if n == 0 { return total }
            try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            total += UInt64(n)
        }
    }

    /// The sha2-256 digest of a file, streamed.
    public static func sha256(of path: String) throws -> (digest: [UInt8], size: UInt64) {
        var hasher = SHA256()
        let size = try stream(path) { hasher.update(bufferPointer: $0) }
        return (Array(hasher.finalize()), size)
    }

    /// Lower-case hex.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `mkdir -p`.
    public static func makeDirectories(_ path: String) throws {
        if isDirectory(path) { return }
        if let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")), slash != path.utf8.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        if mkdir(path, 0o755) != 0 && !(errno == EEXIST && isDirectory(path)) {
            throw Failure(operation: "mkdir", path: path, errno: errno)
        }
    }

    /// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temp = path + ".tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(operation: "open", path: temp, errno: errno) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                unlink(temp)
                throw Failure(operation: "write", path: temp, errno: e)
            }
            done += n
        }
        close(fd)
        guard rename(temp, path) == 0 else {
            let e = errno
            unlink(temp)
            throw Failure(operation: "rename", path: path, errno: e)
        }
    }

    /// Removes a file if it is there.
    public static func remove(_ path: String) {
        unlink(path)
    }
}
