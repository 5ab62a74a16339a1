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

    /// What one attempt came to: an answer, a failure worth another attempt (5xx, the service unreachable, a
    /// body cut off before anything of it was handed on), or a failure that is final.
    enum Attempt<Value> {
        case done(Value)
        case retry(BucketError)
        case fail(BucketError)
    }

    /// What a streamed request came to: a 206 body handed on chunk by chunk, or any other answer (an error, a
    /// server that ignored the range), whole, for the caller to interpret.
    enum Streamed {
        case streamed
        case answered(Response)
    }

    /// Sends `request`, retrying what may pass, and returns the first answer below 500 (4xx included:
    /// the caller knows what a 404 means for it). Throws `.transport` when the service cannot be reached and
    /// `.service` when it kept answering 5xx.
    func perform(_ request: Request) async throws(BucketError) -> Response {
        try await perform(request) { response in await self.collect(response, method: request.method) }
    }

    /// Sends a ranged GET and hands a 206 body to `chunk` as it arrives, each piece as NIO read it (no copy, no
    /// gathering); any other answer is returned whole. A failure before the first chunk is retried like any
    /// other; once a chunk has been handed on, the request is not repeated (the caller has consumed those
    /// bytes) and the failure is thrown.
    func stream(_ request: Request, expectedLength: UInt64,
                to chunk: (ByteBuffer) async -> Void) async throws(BucketError) -> Streamed
    {
        try await perform(request) { response async -> Attempt<Streamed> in
            guard response.status.code == 206 else {
                switch await self.collect(response, method: request.method) {
                case .done(let whole): return .done(.answered(whole))
                case .retry(let error): return .retry(error)
                case .fail(let error): return .fail(error)
                }
            }
            let announced = response.headers.first(name: "content-length").flatMap { UInt64($0) }
            // RFC 9110 14.4: a 206's Content-Length is that of the range sent; more than was asked is not
            // the range asked for.
            if let announced, announced > expectedLength {
                return .fail(.service(status: 206, code: "RangeTooLong",
                                      message: "\(announced) bytes answered for a \(expectedLength)-byte range"))
            }
            var delivered: UInt64 = 0
            do {
                for try await piece in response.body {
                    delivered += UInt64(piece.readableBytes)
                    guard delivered <= expectedLength else {
                        return .fail(.service(status: 206, code: "RangeTooLong",
                                              message: "body over the \(expectedLength)-byte range asked for"))
                    }
                    await chunk(piece)
                }
            } catch {
                let failure = BucketError.transport("\(self.endpoint): body cut after \(delivered) bytes: \(Self.describe(error))")
                return delivered == 0 ? .retry(failure) : .fail(failure)
            }
            if let announced, announced != delivered {
                let failure = BucketError.transport("\(self.endpoint): body ended after \(delivered) of \(announced) bytes")
                return delivered == 0 ? .retry(failure) : .fail(failure)
            }
            return .done(.streamed)
        }
    }

    /// The retry loop: one signed attempt after another until `handle` makes something of an answer or says
    /// the failure is final, with full-jitter backoff between attempts.
    private func perform<Value>(_ request: Request,
                                handle: (HTTPClientResponse) async -> Attempt<Value>) async throws(BucketError) -> Value
    {
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
                let response = try await send(request, payloadHash: payloadHash)
                switch await handle(response) {
                case .done(let value): return value
                case .retry(let error): failure = error
                case .fail(let error): throw error
                }
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

    private var endpoint: String { "\(configuration.scheme)://\(configuration.host):\(configuration.port)" }

    /// Signs and sends one attempt; the answer's body is left to the caller. Throws `.transport` when no
    /// answer came.
    private func send(_ request: Request, payloadHash: String) async throws(BucketError) -> HTTPClientResponse {
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
        do {
            return try await httpClient.execute(http, timeout: Self.timeAmount(configuration.requestTimeout))
        } catch {
            throw .transport("\(request.method.rawValue) \(endpoint)\(path): \(Self.describe(error))")
        }
    }

    /// Reads a whole answer: 5xx are worth another attempt (their S3 error body parsed for the message), a body
    /// cut off too; a body over `maxResponseBytes` is final.
    private func collect(_ response: HTTPClientResponse, method: HTTPMethod) async -> Attempt<Response> {
        let status = Int(response.status.code)
        let received: ByteBuffer
        do throws(BucketError) {
            // HEAD answers carry the object's Content-Length but no body.
            received = method == .HEAD ? ByteBuffer() : try await gather(response)
        } catch {
            if case .transport = error { return .retry(error) }
            return .fail(error)
        }
        let whole = Response(status: status, headers: response.headers, buffer: received)
        guard status >= 500 else { return .done(whole) }
        let parsed = S3ErrorBody.parse(whole.body)
        return .retry(.service(status: status, code: parsed?.code ?? "HTTP\(status)", message: parsed?.message ?? ""))
    }

    private func gather(_ response: HTTPClientResponse) async throws(BucketError) -> ByteBuffer {
        let status = Int(response.status.code)
        let expected = response.headers.first(name: "content-length").flatMap { Int($0) }
        if let expected, expected > configuration.maxResponseBytes {
            throw .service(status: status, code: "ResponseTooLarge",
                           message: "\(expected) bytes is over the \(configuration.maxResponseBytes)-byte limit")
        }
        // One allocation of the announced size; appends copy straight out of NIO's buffers. A body that
        // arrives in one chunk is kept as it is (no copy at all).
        var body: ByteBuffer?
        do {
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
        } catch let error as BucketError {
            throw error
        } catch {
            throw .transport("\(endpoint): body cut off: \(Self.describe(error))")
        }
        let received = body ?? ByteBuffer()
        if let expected, expected != received.readableBytes {
            throw .transport("\(endpoint): body ended after \(received.readableBytes) of \(expected) bytes")
        }
        return received
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
