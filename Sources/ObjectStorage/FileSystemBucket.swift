import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `Bucket` on a local directory: key `a/b/c` is the file `<root>/a/b/c`.
///
/// - Writes go to a temporary file under `<root>/.edgeswap-tmp/` (same filesystem), are flushed with
///   `fsync` when they have a body, and are renamed into place, so a reader sees the old object or the new
///   one and a crash never leaves half an object under a key.
/// - Ranged reads `pread` just the range; nothing reads a whole file to serve part of it.
/// - Keys are checked before they touch the filesystem: no absolute keys, no `.`/`..` or empty segments, no
///   NUL, at most 1024 bytes (S3's limit) and 255 per segment (`NAME_MAX`).
/// - A filesystem cannot hold both `a` and `a/b`; S3 can. Such a put fails with `.conflict`. The store
///   layout (`StoreLayout`) never makes such pairs.
///
/// The calls block their thread on file I/O for the length of one syscall loop; that is acceptable for the CLI
/// and tests it serves (an S3 bucket is what the server uses at scale).
public struct FileSystemBucket: Bucket {
    /// The directory that holds the objects.
    public let root: String
    /// Name of the directory under `root` that holds in-flight writes; never a key, never listed.
    public static let temporaryDirectoryName = ".edgeswap-tmp"
    /// Longest key S3 accepts, in UTF-8 bytes.
    public static let maxKeyLength = 1024

    /// Largest piece `read(_:range:chunks:)` hands on at once (one `pread` each).
    public let readChunkSize: Int

    /// Uses (and creates if needed) `root` as the bucket directory. `readChunkSize` (at least 1) is the size of
    /// the pieces a streamed read hands on.
    public init(root: String, readChunkSize: Int = 256 << 10) throws(BucketError) {
        var trimmed = root
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard !trimmed.isEmpty else { throw .invalidKey(root, reason: "empty bucket root") }
        self.root = trimmed
        self.readChunkSize = max(1, readChunkSize)
        try Self.makeDirectories(trimmed)
        try Self.makeDirectories(trimmed + "/" + Self.temporaryDirectoryName)
    }

    // MARK: Bucket

    public func get(_ key: String) async throws(BucketError) -> [UInt8] {
        let path = try path(for: key)
        let fd = try openForReading(path, key: key)
        defer { close(fd) }
        let size = try fileSize(fd, path: path)
        return try readFully(fd, offset: 0, count: Int(size), path: path)
    }

    public func get(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> [UInt8] {
        let path = try path(for: key)
        let fd = try openForReading(path, key: key)
        defer { close(fd) }
        let size = try fileSize(fd, path: path)
        guard range.lowerBound < size else { throw .invalidRange(key: key, range: range, size: size) }
        let end = min(range.upperBound, size - 1)
        return try readFully(fd, offset: range.lowerBound, count: Int(end - range.lowerBound + 1), path: path)
    }

    /// `pread` straight into the buffer: the serving path slices blocks out of it with no further copy.
    public func getBuffer(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> ByteBuffer {
        let path = try path(for: key)
        let fd = try openForReading(path, key: key)
        defer { close(fd) }
        let size = try fileSize(fd, path: path)
        guard range.lowerBound < size else { throw .invalidRange(key: key, range: range, size: size) }
        let count = Int(min(range.upperBound, size - 1) - range.lowerBound + 1)
        return try Self.preadBuffer(fd, count: count, offset: range.lowerBound, path: path)
    }

    /// The range in pieces of at most `readChunkSize` bytes, each `pread` into its own buffer and handed on
    /// before the next is read.
    public func read(_ key: String, range: ClosedRange<UInt64>,
                     chunks: (ByteBuffer) async -> Void) async throws(BucketError)
    {
        let path = try path(for: key)
        let fd = try openForReading(path, key: key)
        defer { close(fd) }
        let size = try fileSize(fd, path: path)
        guard range.lowerBound < size else { throw .invalidRange(key: key, range: range, size: size) }
        let end = min(range.upperBound, size - 1) + 1
        var offset = range.lowerBound
        while offset < end {
            let count = Int(min(UInt64(readChunkSize), end - offset))
            await chunks(try Self.preadBuffer(fd, count: count, offset: offset, path: path))
            offset += UInt64(count)
        }
    }

    private static func preadBuffer(_ fd: Int32, count: Int, offset: UInt64, path: String) throws(BucketError)
        -> ByteBuffer
    {
        var buffer = allocator.buffer(capacity: count)
        var failure: BucketError?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            preadFully(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<count]), offset: offset, path: path,
                       failure: &failure)
        }
        if let failure { throw failure }
        return buffer
    }

    private static let allocator = ByteBufferAllocator()

    /// read(2) (the name `read` is this type's streamed read).
    private static func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.read(fd, buffer, count)
        #else
        Darwin.read(fd, buffer, count)
        #endif
    }

    public func head(_ key: String) async throws(BucketError) -> UInt64? {
        let path = try path(for: key)
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            if e == ENOENT || e == ENOTDIR { return nil }
            throw Self.ioError("stat", path, e)
        }
        // A directory is a prefix of other keys, not an object (S3 HEAD on it is 404).
        guard (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(st.st_size)
    }

    public func put(_ key: String, bytes: [UInt8]) async throws(BucketError) {
        let path = try path(for: key)
        let (fd, temp) = try createTemporary()
        do throws(BucketError) {
            try bytes.withUnsafeBytes { raw in
                Result { () throws(BucketError) in try writeFully(fd, raw, path: temp) }
            }.get()
            if !bytes.isEmpty { try sync(fd, path: temp) }
            close(fd)
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        try moveIntoPlace(temp: temp, path: path, key: key)
    }

    public func put(_ key: String, contentsOf source: String) async throws(BucketError) {
        let path = try path(for: key)
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else {
            let e = errno
            throw Self.ioError("open", source, e)
        }
        defer { close(input) }
        let (fd, temp) = try createTemporary()
        do throws(BucketError) {
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var total = 0
            while true {
                let n = buffer.withUnsafeMutableBytes { Self.systemRead(input, $0.baseAddress, $0.count) }
                if n < 0 {
                    let e = errno
                    if e == EINTR { continue }
                    throw Self.ioError("read", source, e)
                }
                if n == 0 { break }
                try buffer.withUnsafeBytes { raw in
                    Result { () throws(BucketError) in
                        try writeFully(fd, UnsafeRawBufferPointer(rebasing: raw[0..<n]), path: temp)
                    }
                }.get()
                total += n
            }
            if total > 0 { try sync(fd, path: temp) }
            close(fd)
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        try moveIntoPlace(temp: temp, path: path, key: key)
    }

    public func list(prefix: String, after: String?, limit: Int) async throws(BucketError) -> [String] {
        guard limit > 0 else { return [] }
        try Self.validatePrefix(prefix)
        // Only the directory named by the prefix up to its last `/` can hold matching keys.
        let slash = prefix.utf8.lastIndex(of: UInt8(ascii: "/"))
        let directoryPart = slash.map { String(prefix[...$0]) } ?? ""
        let namePart = slash.map { String(prefix[prefix.index(after: $0)...]) } ?? prefix
        var keys: [String] = []
        try collect(directory: directoryPart, namePrefix: namePart, into: &keys)
        keys.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var result: [String] = []
        for key in keys {
            if let after, !after.utf8.lexicographicallyPrecedes(key.utf8) { continue }
            result.append(key)
            if result.count == limit { break }
        }
        return result
    }

    // MARK: Keys and paths

    /// The file path of `key`, after checking the key.
    public func path(for key: String) throws(BucketError) -> String {
        try Self.validateKey(key)
        return root + "/" + key
    }

    /// Checks that `key` can name an object in a filesystem bucket.
    public static func validateKey(_ key: String) throws(BucketError) {
        guard !key.isEmpty else { throw .invalidKey(key, reason: "empty key") }
        guard key.utf8.count <= maxKeyLength else { throw .invalidKey(key, reason: "longer than \(maxKeyLength) bytes") }
        guard !key.utf8.contains(0) else { throw .invalidKey(key, reason: "contains NUL") }
        guard key.utf8.first != UInt8(ascii: "/") else { throw .invalidKey(key, reason: "absolute key") }
        let segments = key.split(separator: "/", omittingEmptySubsequences: false)
        for (index, segment) in segments.enumerated() {
            guard !segment.isEmpty else { throw .invalidKey(key, reason: "empty path segment") }
            guard segment != "." && segment != ".." else { throw .invalidKey(key, reason: "'\(segment)' segment") }
            guard segment.utf8.count <= 255 else { throw .invalidKey(key, reason: "segment longer than 255 bytes") }
            if index == 0 && segment == temporaryDirectoryName {
                throw .invalidKey(key, reason: "\(temporaryDirectoryName) is reserved")
            }
        }
    }

    static func validatePrefix(_ prefix: String) throws(BucketError) {
        guard !prefix.utf8.contains(0) else { throw .invalidKey(prefix, reason: "prefix contains NUL") }
        guard prefix.utf8.first != UInt8(ascii: "/") else { throw .invalidKey(prefix, reason: "absolute prefix") }
        // Complete segments (all but the last, which may be a partial name) must be real names.
        let segments = prefix.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        for segment in segments where segment.isEmpty || segment == "." || segment == ".." {
            throw .invalidKey(prefix, reason: "prefix has an empty, '.' or '..' segment")
        }
    }

    // MARK: Listing

    /// Adds every key under `<root>/<directory>` whose first segment starts with `namePrefix`.
    private func collect(directory: String, namePrefix: String, into keys: inout [String]) throws(BucketError) {
        let dirPath = directory.isEmpty ? root : root + "/" + String(directory.dropLast())
        guard let dir = opendir(dirPath) else {
            let e = errno
            // A missing directory under the root is a prefix nothing was stored under: an empty listing. A
            // missing root is a store that went away (unmounted, moved): an error, so readiness sees it.
            if (e == ENOENT || e == ENOTDIR) && !directory.isEmpty {
                var st = stat()
                if stat(root, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return }
                throw Self.ioError("opendir", root, ENOENT)
            }
            throw Self.ioError("opendir", dirPath, e)
        }
        var entries: [(name: String, isDirectory: Bool)] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            if directory.isEmpty && name == Self.temporaryDirectoryName { continue }
            guard name.hasPrefix(namePrefix) else { continue }
            var isDirectory = Int32(entry.pointee.d_type) == Int32(DT_DIR)
            if Int32(entry.pointee.d_type) == Int32(DT_UNKNOWN) {
                var st = stat()
                if stat(dirPath + "/" + name, &st) == 0 { isDirectory = (st.st_mode & S_IFMT) == S_IFDIR }
            }
            entries.append((name, isDirectory))
        }
        closedir(dir)
        for entry in entries {
            if entry.isDirectory {
                try collect(directory: directory + entry.name + "/", namePrefix: "", into: &keys)
            } else {
                keys.append(directory + entry.name)
            }
        }
    }

    // MARK: File helpers

    private func openForReading(_ path: String, key: String) throws(BucketError) -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT || e == ENOTDIR { throw .noSuchKey(key) }
            throw Self.ioError("open", path, e)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw Self.ioError("fstat", path, e)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw .noSuchKey(key)
        }
        return fd
    }

    private func fileSize(_ fd: Int32, path: String) throws(BucketError) -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            throw Self.ioError("fstat", path, e)
        }
        return UInt64(st.st_size)
    }

    private func readFully(_ fd: Int32, offset: UInt64, count: Int, path: String) throws(BucketError) -> [UInt8] {
        // Uninitialized storage: pread fills it, so zero-filling first (a memset of every block read on the
        // serving hot path) is wasted work. Only the bytes actually read count as initialized.
        var failure: BucketError?
        let out = [UInt8](unsafeUninitializedCapacity: count) { buffer, initializedCount in
            initializedCount = Self.preadFully(fd, into: UnsafeMutableRawBufferPointer(buffer), offset: offset,
                                               path: path, failure: &failure)
        }
        if let failure { throw failure }
        return out
    }

    /// Fills `destination` from `offset` of `fd` (retrying short reads and EINTR); returns the bytes read,
    /// which are fewer only when `failure` is set.
    private static func preadFully(_ fd: Int32, into destination: UnsafeMutableRawBufferPointer, offset: UInt64,
                                   path: String, failure: inout BucketError?) -> Int {
        var done = 0
        while done < destination.count {
            let n = pread(fd, destination.baseAddress! + done, destination.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                failure = ioError("pread", path, e)
                break
            }
            // The file shrank under us: an object is replaced by rename, so this is a foreign writer.
            if n == 0 {
                failure = .io(operation: "pread", path: path, errno: 0, message: "file ended early")
                break
            }
            done += n
        }
        return done
    }

    private func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(BucketError) {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                throw Self.ioError("write", path, e)
            }
            done += n
        }
    }

    private func sync(_ fd: Int32, path: String) throws(BucketError) {
        guard fsync(fd) == 0 else {
            let e = errno
            throw Self.ioError("fsync", path, e)
        }
    }

    private func createTemporary() throws(BucketError) -> (Int32, String) {
        let directory = root + "/" + Self.temporaryDirectoryName
        for _ in 0..<8 {
            let name = "put-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
            let path = directory + "/" + name
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 { return (fd, path) }
            let e = errno
            if e == EEXIST { continue }
            if e == ENOENT {
                // Someone removed the temporary directory; make it again.
                try Self.makeDirectories(directory)
                continue
            }
            throw Self.ioError("open", path, e)
        }
        throw .io(operation: "open", path: directory, errno: EEXIST, message: "no free temporary name")
    }

    private func moveIntoPlace(temp: String, path: String, key: String) throws(BucketError) {
        if let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) {
            do throws(BucketError) {
                try Self.makeDirectories(String(path[..<slash]))
            } catch {
                unlink(temp)
                if case .io(_, _, ENOTDIR, _) = error {
                    throw .conflict(key: key, reason: "a prefix of the key is an object")
                }
                if case .io(_, _, EEXIST, _) = error {
                    throw .conflict(key: key, reason: "a prefix of the key is an object")
                }
                throw error
            }
        }
        guard rename(temp, path) == 0 else {
            let e = errno
            unlink(temp)
            if e == EISDIR || e == ENOTEMPTY || e == EEXIST {
                throw .conflict(key: key, reason: "the key is a prefix of other keys")
            }
            throw Self.ioError("rename", path, e)
        }
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws(BucketError) {
        var st = stat()
        if stat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw .io(operation: "mkdir", path: path, errno: EEXIST, message: "exists and is not a directory")
            }
            return
        }
        if let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")), slash != path.utf8.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        if mkdir(path, 0o755) != 0 {
            let e = errno
            // Another writer made it between our stat and mkdir.
            if e == EEXIST, stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { return }
            throw ioError("mkdir", path, e)
        }
    }

    static func ioError(_ operation: String, _ path: String, _ code: Int32) -> BucketError {
        .io(operation: operation, path: path, errno: code, message: String(cString: strerror(code)))
    }
}
