import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `Bucket` on an S3-compatible service: GET (whole or `Range: bytes=a-b`), HEAD, ListObjectsV2, PUT and
/// multipart upload, through a shared `S3Client`.
///
/// Errors: a missing key is `.noSuchKey`; a missing bucket `.noSuchBucket`; rejected credentials or
/// signatures `.accessDenied` (403 InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied); an unreachable
/// endpoint `.transport` (after the retries); other answers `.service`. HEAD has no body to tell the two 404s
/// apart, so `head` of a key in a missing bucket is nil.
///
/// Known SeaweedFS 4.48 differences from AWS (the test server): a PUT into a missing bucket creates the
/// bucket; listings order a directory's entries by name, so keys under `a/` come before a sibling `a-b`
/// (AWS: strict UTF-8 binary order). Neither matters for `StoreLayout` keys.
public struct S3Bucket: Bucket {
    public let client: S3Client
    public let name: String

    public init(client: S3Client, name: String) {
        self.client = client
        self.name = name
    }

    // MARK: Bucket

    public func get(_ key: String) async throws(BucketError) -> [UInt8] {
        try Self.validateKey(key)
        let response = try await client.perform(.init(method: .GET, bucket: name, key: key))
        guard response.status == 200 else { throw client.failure(response, bucket: name, key: key) }
        return response.body
    }

    public func get(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> [UInt8] {
        Array(try await getBuffer(key, range: range).readableBytesView)
    }

    public func getBuffer(_ key: String, range: ClosedRange<UInt64>) async throws(BucketError) -> ByteBuffer {
        try Self.validateKey(key)
        let response = try await client.perform(rangedGet(key, range))
        if response.status == 206 { return response.buffer }
        return try await wholeOrFailure(response, key: key, range: range)
    }

    /// The 206 body streamed as NIO reads it off the connection (`HTTPClientResponse.body`): each chunk is
    /// handed on before the next is read, so the first sections of a long coalesced read are verified and
    /// served while the rest is still on the wire.
    public func read(_ key: String, range: ClosedRange<UInt64>,
                     chunks body: (ByteBuffer) async -> Void) async throws(BucketError)
    {
        try Self.validateKey(key)
        let length = range.upperBound - range.lowerBound + 1
        switch try await client.stream(rangedGet(key, range), expectedLength: length, to: body) {
        case .streamed: return
        case .answered(let response):
            let whole = try await wholeOrFailure(response, key: key, range: range)
            await body(whole)
        }
    }

    /// RFC 9110 14.1.2: "bytes=first-last", both inclusive; a last past the end is cut at the end.
    private func rangedGet(_ key: String, _ range: ClosedRange<UInt64>) -> S3Client.Request {
        .init(method: .GET, bucket: name, key: key, headers: [("range", "bytes=\(range.lowerBound)-\(range.upperBound)")])
    }

    /// What a ranged GET answered other than 206: the range cut out of a whole object, or the error.
    private func wholeOrFailure(_ response: S3Client.Response, key: String,
                                range: ClosedRange<UInt64>) async throws(BucketError) -> ByteBuffer
    {
        switch response.status {
        case 200:
            // A server that ignores Range sends the whole object: cut the range out of it.
            let size = UInt64(response.buffer.readableBytes)
            guard range.lowerBound < size else { throw .invalidRange(key: key, range: range, size: size) }
            let end = min(range.upperBound, size - 1)
            return response.buffer.getSlice(at: response.buffer.readerIndex + Int(range.lowerBound),
                                            length: Int(end - range.lowerBound + 1))!
        case 416:
            // RFC 9110 15.5.17: a 416 "SHOULD" carry "Content-Range: bytes */<complete-length>"; else ask HEAD.
            if let size = Self.completeLength(response.headers.first(name: "content-range")) {
                throw .invalidRange(key: key, range: range, size: size)
            }
            guard let size = try await head(key) else { throw .noSuchKey(key) }
            throw .invalidRange(key: key, range: range, size: size)
        default:
            throw client.failure(response, bucket: name, key: key)
        }
    }

    public func head(_ key: String) async throws(BucketError) -> UInt64? {
        try Self.validateKey(key)
        let response = try await client.perform(.init(method: .HEAD, bucket: name, key: key))
        switch response.status {
        case 200:
            guard let length = response.headers.first(name: "content-length").flatMap({ UInt64($0) }) else {
                throw .service(status: 200, code: "NoContentLength", message: "HEAD \(key) answered without Content-Length")
            }
            return length
        case 404:
            return nil
        default:
            throw client.failure(response, bucket: name, key: key)
        }
    }

    public func put(_ key: String, bytes: [UInt8]) async throws(BucketError) {
        try Self.validateKey(key)
        let response = try await client.perform(.init(method: .PUT, bucket: name, key: key, body: bytes))
        guard response.status == 200 else { throw client.failure(response, bucket: name, key: nil) }
    }

    public func put(_ key: String, contentsOf path: String) async throws(BucketError) {
        try Self.validateKey(key)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemBucket.ioError("open", path, errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystemBucket.ioError("fstat", path, errno) }
        let size = Int(st.st_size)
        let configuration = client.configuration
        if size <= configuration.multipartThreshold {
            try await put(key, bytes: try Self.read(fd, offset: 0, count: size, path: path))
            return
        }
        try await multipartUpload(key: key, fd: fd, size: size, path: path)
    }

    public func list(prefix: String, after: String?, limit: Int) async throws(BucketError) -> [String] {
        guard limit > 0 else { return [] }
        var keys: [String] = []
        var token: String?
        while keys.count < limit {
            // "MaxKeys ... returns up to 1,000 key names"; more come page by page.
            var query: [(name: String, value: String)] = [
                ("list-type", "2"), ("prefix", prefix), ("max-keys", String(min(1000, limit - keys.count))),
            ]
            if let token {
                query.append(("continuation-token", token))
            } else if let after {
                query.append(("start-after", after))
            }
            let response = try await client.perform(.init(method: .GET, bucket: name, key: nil, query: query))
            guard response.status == 200 else { throw client.failure(response, bucket: name, key: nil) }
            let page: ListObjectsV2Page
            do throws(S3XMLError) {
                page = try ListObjectsV2Page.parse(response.body)
            } catch {
                throw .service(status: 200, code: "MalformedListing", message: error.description)
            }
            keys.append(contentsOf: page.keys.prefix(limit - keys.count))
            guard page.isTruncated else { break }
            guard let next = page.nextContinuationToken, !next.isEmpty else {
                throw .service(status: 200, code: "MalformedListing", message: "truncated page without NextContinuationToken")
            }
            token = next
        }
        return keys
    }

    // MARK: Bucket administration

    /// Creates the bucket (S3 CreateBucket, `PUT /<bucket>`) unless it exists and is ours.
    public func createBucketIfMissing() async throws(BucketError) {
        let response = try await client.perform(.init(method: .PUT, bucket: name, key: nil))
        if response.status == 200 { return }
        let failure = client.failure(response, bucket: name, key: nil)
        // "BucketAlreadyOwnedByYou: The bucket you tried to create already exists, and you own it."
        // SeaweedFS answers BucketAlreadyExists for a bucket of the same account.
        if case .service(409, let code, _) = failure, code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
            return
        }
        throw failure
    }

    /// Deletes one object (S3 DeleteObject; deleting a missing key succeeds, as in S3).
    public func delete(_ key: String) async throws(BucketError) {
        try Self.validateKey(key)
        let response = try await client.perform(.init(method: .DELETE, bucket: name, key: key))
        guard response.status == 204 || response.status == 200 else {
            throw client.failure(response, bucket: name, key: key)
        }
    }

    // MARK: Multipart upload

    /// CreateMultipartUpload, one UploadPart per `multipartPartSize` bytes read from the file (one part in
    /// memory at a time), CompleteMultipartUpload; AbortMultipartUpload if anything fails.
    private func multipartUpload(key: String, fd: Int32, size: Int, path: String) async throws(BucketError) {
        let created = try await client.perform(.init(method: .POST, bucket: name, key: key, query: [("uploads", "")]))
        guard created.status == 200 else { throw client.failure(created, bucket: name, key: nil) }
        let uploadID: String
        do throws(S3XMLError) {
            uploadID = try s3XMLValue(created.body, root: "InitiateMultipartUploadResult", name: "UploadId")
        } catch {
            throw .service(status: 200, code: "MalformedUploadAnswer", message: error.description)
        }
        do throws(BucketError) {
            let partSize = client.configuration.multipartPartSize
            var etags: [String] = []
            var offset = 0
            var partNumber = 1
            while offset < size {
                let count = min(partSize, size - offset)
                let part = try Self.read(fd, offset: offset, count: count, path: path)
                let response = try await client.perform(
                    .init(method: .PUT, bucket: name, key: key,
                          query: [("partNumber", String(partNumber)), ("uploadId", uploadID)], body: part))
                guard response.status == 200 else { throw client.failure(response, bucket: name, key: nil) }
                guard let etag = response.headers.first(name: "etag") else {
                    throw .service(status: 200, code: "NoETag", message: "UploadPart \(partNumber) answered without ETag")
                }
                etags.append(etag)
                offset += count
                partNumber += 1
            }
            var xml = "<CompleteMultipartUpload>"
            for (index, etag) in etags.enumerated() {
                xml += "<Part><PartNumber>\(index + 1)</PartNumber><ETag>\(xmlEscape(etag))</ETag></Part>"
            }
            xml += "</CompleteMultipartUpload>"
            let completed = try await client.perform(
                .init(method: .POST, bucket: name, key: key, query: [("uploadId", uploadID)], body: Array(xml.utf8)))
            guard completed.status == 200 else { throw client.failure(completed, bucket: name, key: nil) }
            // "a request could fail after the initial 200 OK response has been sent ... the error is embedded
            // in the 200 OK response body".
            if let error = S3ErrorBody.parse(completed.body) {
                throw .service(status: 200, code: error.code ?? "InternalError", message: error.message ?? "")
            }
        } catch {
            _ = try? await client.perform(.init(method: .DELETE, bucket: name, key: key, query: [("uploadId", uploadID)]))
            throw error
        }
    }

    // MARK: Helpers

    /// S3 keys are 1 to 1024 bytes of UTF-8; anything else is refused before it reaches the wire.
    static func validateKey(_ key: String) throws(BucketError) {
        guard !key.isEmpty else { throw .invalidKey(key, reason: "empty key") }
        guard key.utf8.count <= FileSystemBucket.maxKeyLength else {
            throw .invalidKey(key, reason: "longer than \(FileSystemBucket.maxKeyLength) bytes")
        }
    }

    /// The complete length of "bytes */1234" or "bytes 0-9/1234".
    static func completeLength(_ contentRange: String?) -> UInt64? {
        guard let contentRange, let slash = contentRange.lastIndex(of: "/") else { return nil }
        return UInt64(contentRange[contentRange.index(after: slash)...])
    }

    static func read(_ fd: Int32, offset: Int, count: Int, path: String) throws(BucketError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { buf in
                pread(fd, buf.baseAddress! + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                throw FileSystemBucket.ioError("pread", path, e)
            }
            if n == 0 { throw .io(operation: "pread", path: path, errno: 0, message: "file ended early") }
            done += n
        }
        return out
    }
}
