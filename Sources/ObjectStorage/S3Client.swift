import AsyncHTTPClient
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One connection pool to an S3-compatible service, shared by any number of `S3Bucket`s (carpark, satnav,
/// dudewhere and blockmap may be different buckets on one endpoint).
///
/// Requests are signed with SigV4 in the `Authorization` header; each attempt gets a fresh `x-amz-date`.
/// Failures that may pass (5xx, 503 SlowDown, connection errors, timeouts) are retried with exponential
/// backoff and full jitter up to `configuration.retry.maxAttempts`; 4xx answers never are.
/// Call `shutdown()` before dropping the last reference.
public final class S3Client: Sendable {
    public let configuration: S3Configuration
    let httpClient: HTTPClient
    let signer: SigV4Signer
    private let counters = NIOLockedValueBox(Counters())

    /// Running totals of this client, for metrics and tests.
    public struct Counters: Sendable, Equatable {
        /// HTTP attempts made (a retried request counts once per attempt).
        public var attempts = 0
        /// Attempts that were retries.
        public var retries = 0
    }

    /// The totals so far.
    public var statistics: Counters { counters.withLockedValue { $0 } }

    public init(configuration: S3Configuration) {
        self.configuration = configuration
        var pool = HTTPClient.Configuration.ConnectionPool(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnectionsPerHost)
        // Our own retry loop backs off and reports; the pool's silent retry of failed connects would instead
        // hold a request until its deadline when the endpoint is down.
        pool.retryConnectionEstablishment = false
        var http = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: Self.timeAmount(configuration.connectTimeout),
                           read: Self.timeAmount(configuration.requestTimeout)),
            connectionPool: pool,
            decompression: .disabled)
        http.httpVersion = .http1Only
        httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        signer = SigV4Signer(accessKeyID: configuration.accessKeyID, secretAccessKey: configuration.secretAccessKey,
                             region: configuration.region)
    }

    /// A bucket on this client (the configuration's bucket when `name` is nil).
    private static let allocator = ByteBufferAllocator()

    public func bucket(_ name: String? = nil) -> S3Bucket {
        S3Bucket(client: self, name: name ?? configuration.bucket)
    }

    /// Closes the connection pool. Requests after this fail with `.transport`.
    public func shutdown() async throws {
        try await httpClient.shutdown()
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    // MARK: Requests

    /// A request before signing.
    struct Request {
        var method: HTTPMethod
        var bucket: String
        var key: String?
        var query: [(name: String, value: String)] = []
        var headers: [(name: String, value: String)] = []
        var body: [UInt8]?
    }

    /// An answer with its whole body.
    struct Response {
        var status: Int
        var headers: HTTPHeaders
        /// The body as received: block reads hand slices of it on without copying.
        var buffer: ByteBuffer
        /// The body as an array (a copy), for the small XML answers.
        var body: [UInt8] { Array(buffer.readableBytesView) }
    }

    /// Sends `request`, retrying what may pass, and returns the first answer below 500 (4xx included:
    /// the caller knows what a 404 means for it). Throws `.transport` when the service cannot be reached and
    /// `.service` when it kept answering 5xx.
    func perform(_ request: Request) async throws(BucketError) -> Response {
        let payloadHash = request.body.map { body in body.withUnsafeBytes { SigV4Signer.hexSHA256($0) } }
            ?? SigV4Signer.emptyPayloadHash
        let policy = configuration.retry
        var attempt = 0
        while true {
            attempt += 1
            let isRetry = attempt > 1
            counters.withLockedValue {
                $0.attempts += 1
                if isRetry { $0.retries += 1 }
            }
            let failure: BucketError
            do throws(BucketError) {
                let response = try await attemptOnce(request, payloadHash: payloadHash)
                guard response.status >= 500 else { return response }
                let parsed = S3ErrorBody.parse(response.body)
                failure = .service(status: response.status, code: parsed?.code ?? "HTTP\(response.status)",
                                   message: parsed?.message ?? "")
            } catch {
                guard case .transport = error else { throw error }
                failure = error
            }
            guard attempt < policy.maxAttempts, !Task.isCancelled else {
                if case .transport(let why) = failure, attempt > 1 {
                    throw .transport("\(why) (after \(attempt) attempts)")
                }
                throw failure
            }
            do {
                try await Task.sleep(for: policy.backoff(afterAttempt: attempt))
            } catch {
                throw failure
            }
        }
    }

    private func attemptOnce(_ request: Request, payloadHash: String) async throws(BucketError) -> Response {
        let amzDate = SigV4Signer.amzDate(unixSeconds: Int(time(nil)))
        let host = configuration.hostHeader(bucket: request.bucket)
        let path = configuration.encodedPath(bucket: request.bucket, key: request.key)
        var signed: [(name: String, value: String)] = [
            ("host", host), ("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash),
        ]
        if let token = configuration.sessionToken { signed.append(("x-amz-security-token", token)) }
        signed.append(contentsOf: request.headers)
        let signature = signer.sign(
            SigV4Signer.Request(method: request.method.rawValue, encodedPath: path, query: request.query,
                                headers: signed, payloadHash: payloadHash),
            amzDate: amzDate)
        // The query is sent exactly as it was signed (sorted, encoded), so the server's canonical form of
        // it cannot differ from ours.
        let query = SigV4Signer.canonicalQueryString(request.query)
        let hostName = configuration.addressing == .virtualHost ? "\(request.bucket).\(configuration.host)" : configuration.host
        var http = HTTPClientRequest(url: "\(configuration.scheme)://\(hostName):\(configuration.port)\(path)\(query.isEmpty ? "" : "?" + query)")
        http.method = request.method
        for header in signed { http.headers.add(name: header.name, value: header.value) }
        http.headers.add(name: "authorization", value: signature.authorization)
        if let body = request.body {
            http.body = .bytes(body)
        } else if request.method == .PUT || request.method == .POST {
            http.headers.add(name: "content-length", value: "0")
        }
        let endpoint = "\(configuration.scheme)://\(configuration.host):\(configuration.port)"
        do {
            let response = try await httpClient.execute(http, timeout: Self.timeAmount(configuration.requestTimeout))
            let status = Int(response.status.code)
            // HEAD answers carry the object's Content-Length but no body.
            if request.method == .HEAD { return Response(status: status, headers: response.headers, buffer: ByteBuffer()) }
            let expected = response.headers.first(name: "content-length").flatMap { Int($0) }
            if let expected, expected > configuration.maxResponseBytes {
                throw BucketError.service(status: status, code: "ResponseTooLarge",
                                          message: "\(expected) bytes is over the \(configuration.maxResponseBytes)-byte limit")
            }
            // One allocation of the announced size; appends copy straight out of NIO's buffers. A body that
            // arrives in one chunk is kept as it is (no copy at all).
            var body: ByteBuffer?
            for try await var chunk in response.body {
                guard (body?.readableBytes ?? 0) + chunk.readableBytes <= configuration.maxResponseBytes else {
                    throw BucketError.service(status: status, code: "ResponseTooLarge",
                                              message: "body over the \(configuration.maxResponseBytes)-byte limit")
                }
                if body == nil, chunk.readableBytes == expected {
                    body = chunk
                } else {
                    if body == nil { body = Self.allocator.buffer(capacity: expected ?? chunk.readableBytes) }
                    body!.writeBuffer(&chunk)
                }
            }
            let received = body ?? ByteBuffer()
            if let expected, expected != received.readableBytes {
                throw BucketError.transport("\(endpoint): body ended after \(received.readableBytes) of \(expected) bytes")
            }
            return Response(status: status, headers: response.headers, buffer: received)
        } catch let error as BucketError {
            throw error
        } catch {
            throw .transport("\(request.method.rawValue) \(endpoint)\(path): \(Self.describe(error))")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connect timed out"
            case .deadlineExceeded: return "request timed out"
            case .readTimeout: return "read timed out"
            case .remoteConnectionClosed: return "connection closed by the server"
            case .alreadyShutdown: return "client already shut down"
            default: return String(describing: error)
            }
        }
        return String(describing: error)
    }

    /// The error for a 4xx answer (`key` nil for bucket-level requests).
    func failure(_ response: Response, bucket: String, key: String?) -> BucketError {
        let parsed = S3ErrorBody.parse(response.body)
        let code = parsed?.code ?? ""
        let message = parsed?.message ?? ""
        switch (response.status, code) {
        case (404, "NoSuchBucket"): return .noSuchBucket(bucket)
        case (404, "NoSuchKey"), (404, ""): return key.map { .noSuchKey($0) } ?? .noSuchBucket(bucket)
        case (401, _), (403, _):
            return .accessDenied(code: code.isEmpty ? "HTTP\(response.status)" : code, message: message)
        default:
            return .service(status: response.status, code: code.isEmpty ? "HTTP\(response.status)" : code, message: message)
        }
    }
}
