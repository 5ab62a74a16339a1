#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where an S3-compatible service is and how to talk to it.
public struct S3Configuration: Sendable {
    /// How bucket names appear in request URLs.
    public enum Addressing: Sendable, Equatable {
        /// `http://host:port/bucket/key`: what local servers (SeaweedFS, MinIO) expect.
        case path
        /// `http://bucket.host:port/key`: AWS's default.
        case virtualHost
    }

    /// How failed requests are retried: "full jitter" exponential backoff, sleeping a random time in
    /// `0...min(maxBackoff, baseBackoff * 2^attempt)` before each new attempt.
    public struct RetryPolicy: Sendable, Equatable {
        /// Attempts in all, the first included (1 = no retry).
        public var maxAttempts: Int
        public var baseBackoff: Duration
        public var maxBackoff: Duration
        /// False sleeps the full backoff instead of a random part of it.
        public var fullJitter: Bool

        public init(maxAttempts: Int = 4, baseBackoff: Duration = .milliseconds(50),
                    maxBackoff: Duration = .seconds(2), fullJitter: Bool = true) {
            self.maxAttempts = max(1, maxAttempts)
            self.baseBackoff = baseBackoff
            self.maxBackoff = maxBackoff
            self.fullJitter = fullJitter
        }

        /// No retries.
        public static let none = RetryPolicy(maxAttempts: 1)

        /// The sleep before attempt `attempt + 1` (`attempt` counts from 1).
        public func backoff(afterAttempt attempt: Int) -> Duration {
            let exponent = min(attempt - 1, 30)
            let base = baseBackoff * (1 << exponent)
            let cap = base > maxBackoff ? maxBackoff : base
            guard fullJitter else { return cap }
            let nanoseconds = cap.components.seconds * 1_000_000_000 + cap.components.attoseconds / 1_000_000_000
            guard nanoseconds > 0 else { return .zero }
            return .nanoseconds(Int64.random(in: 0...nanoseconds))
        }
    }

    /// `http` or `https`.
    public var scheme: String
    /// The endpoint's host name or address.
    public var host: String
    /// The endpoint's port (80 / 443 when the URL names none).
    public var port: Int
    /// The default bucket (`S3Client.bucket()` without a name).
    public var bucket: String
    public var region: String
    public var accessKeyID: String
    public var secretAccessKey: String
    /// Temporary credentials' token, sent (and signed) as `x-amz-security-token`.
    public var sessionToken: String?
    public var addressing: Addressing
    public var connectTimeout: Duration
    /// Bound on one attempt of one request, body included.
    public var requestTimeout: Duration
    /// Connection pool size per host.
    public var maxConnectionsPerHost: Int
    public var retry: RetryPolicy
    /// `put(_:contentsOf:)` uses a multipart upload for files larger than this.
    public var multipartThreshold: Int
    /// Size of every part but the last ("Each part must be at least 5 MB in size, except the last part").
    public var multipartPartSize: Int
    /// Largest response body accepted, so that a confused server cannot make us allocate without bound.
    public var maxResponseBytes: Int

    /// - Parameter endpoint: `http[s]://host[:port]` (a trailing `/` is allowed, a path is not).
    public init(endpoint: String, bucket: String, region: String = "us-east-1", accessKeyID: String,
                secretAccessKey: String, sessionToken: String? = nil, addressing: Addressing = .path,
                connectTimeout: Duration = .seconds(2), requestTimeout: Duration = .seconds(30),
                maxConnectionsPerHost: Int = 64, retry: RetryPolicy = RetryPolicy(),
                multipartThreshold: Int = 64 << 20, multipartPartSize: Int = 16 << 20,
                maxResponseBytes: Int = 1 << 30) throws(S3ConfigurationError) {
        let parsed = try Self.parseEndpoint(endpoint)
        scheme = parsed.scheme
        host = parsed.host
        port = parsed.port
        self.bucket = bucket
        self.region = region
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.addressing = addressing
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.maxConnectionsPerHost = max(1, maxConnectionsPerHost)
        self.retry = retry
        self.multipartThreshold = multipartThreshold
        self.multipartPartSize = max(1, multipartPartSize)
        self.maxResponseBytes = maxResponseBytes
    }

    /// A configuration whose credentials and region come from the standard AWS variables:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (optional), `AWS_REGION`
    /// (default `us-east-1`). `environment` replaces the process environment (tests).
    public static func fromEnvironment(endpoint: String, bucket: String, addressing: Addressing = .path,
                                       environment: [String: String]? = nil) throws(S3ConfigurationError) -> S3Configuration {
        func value(_ name: String) -> String? {
            if let environment { return environment[name].flatMap { $0.isEmpty ? nil : $0 } }
            guard let raw = getenv(name) else { return nil }
            let text = String(cString: raw)
            return text.isEmpty ? nil : text
        }
        guard let key = value("AWS_ACCESS_KEY_ID") else { throw .missingVariable("AWS_ACCESS_KEY_ID") }
        guard let secret = value("AWS_SECRET_ACCESS_KEY") else { throw .missingVariable("AWS_SECRET_ACCESS_KEY") }
        return try S3Configuration(endpoint: endpoint, bucket: bucket, region: value("AWS_REGION") ?? "us-east-1",
                                   accessKeyID: key, secretAccessKey: secret,
                                   sessionToken: value("AWS_SESSION_TOKEN"), addressing: addressing)
    }

    /// The `Host` header for `bucket` (the port is left out when it is the scheme's default, as HTTP clients
    /// send it).
    func hostHeader(bucket: String) -> String {
        let name = addressing == .virtualHost ? "\(bucket).\(host)" : host
        let defaultPort = scheme == "https" ? 443 : 80
        return port == defaultPort ? name : "\(name):\(port)"
    }

    /// The URI-encoded path of `key` in `bucket` (`key` nil: the bucket itself).
    func encodedPath(bucket: String, key: String?) -> String {
        let keyPart = key.map { SigV4Signer.uriEncode($0, keepSlash: true) } ?? ""
        switch addressing {
        case .path: return "/" + SigV4Signer.uriEncode(bucket, keepSlash: false) + (key == nil ? "" : "/" + keyPart)
        case .virtualHost: return "/" + keyPart
        }
    }

    static func parseEndpoint(_ endpoint: String) throws(S3ConfigurationError) -> (scheme: String, host: String, port: Int) {
        var rest = Substring(endpoint)
        let scheme: String
        if rest.hasPrefix("http://") {
            scheme = "http"
            rest = rest.dropFirst(7)
        } else if rest.hasPrefix("https://") {
            scheme = "https"
            rest = rest.dropFirst(8)
        } else {
            throw .invalidEndpoint(endpoint, reason: "must start with http:// or https://")
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/") else { throw .invalidEndpoint(endpoint, reason: "must not have a path") }
        var host = rest
        var port = scheme == "https" ? 443 : 80
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else {
                throw .invalidEndpoint(endpoint, reason: "bad port")
            }
            port = p
            host = rest[..<colon]
        }
        guard !host.isEmpty else { throw .invalidEndpoint(endpoint, reason: "no host") }
        return (scheme, String(host), port)
    }
}

/// Why an `S3Configuration` could not be made.
public enum S3ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidEndpoint(String, reason: String)
    case missingVariable(String)

    public var description: String {
        switch self {
        case .invalidEndpoint(let endpoint, let reason): return "invalid S3 endpoint \"\(endpoint)\": \(reason)"
        case .missingVariable(let name): return "environment variable \(name) is not set"
        }
    }
}
