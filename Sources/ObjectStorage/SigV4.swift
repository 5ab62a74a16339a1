import Crypto
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// AWS Signature Version 4 for S3 requests signed in the `Authorization` header
/// ("Authenticating Requests: Using the Authorization Header (AWS Signature Version 4)", Amazon S3 API
/// reference). Pure computation: no I/O, no clock of its own (the caller passes the time), so the published
/// example requests can be checked byte for byte.
///
/// The four steps, as the S3 documentation names them:
/// 1. CanonicalRequest = HTTPMethod \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n
///    SignedHeaders \n HashedPayload
/// 2. StringToSign = "AWS4-HMAC-SHA256" \n timeStampISO8601Format \n Scope \n Hex(SHA256Hash(CanonicalRequest))
/// 3. SigningKey = HMAC-SHA256(HMAC-SHA256(HMAC-SHA256(HMAC-SHA256("AWS4" + SecretAccessKey, date), region),
///    service), "aws4_request")
/// 4. Signature = Hex(HMAC-SHA256(SigningKey, StringToSign))
public struct SigV4Signer: Sendable {
    /// The access key ID sent in the `Credential` part of the header.
    public let accessKeyID: String
    /// The AWS region in the credential scope (S3 servers other than AWS accept any, usually `us-east-1`).
    public let region: String
    /// The service in the credential scope: `s3`.
    public let service: String
    private let secretAccessKey: String
    /// Signing keys by `YYYYMMDD`: "the signing key ... is valid for seven days" and depends only on the
    /// date, region and service, so one derivation (four HMACs) per day is enough.
    private let keyCache: NIOLockedValueBox<(day: String, key: SymmetricKey)?>

    /// Hex SHA-256 of the empty string: the payload hash of requests without a body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// "If you don't want to compute the hash, use the literal string UNSIGNED-PAYLOAD as the
    /// x-amz-content-sha256 header value".
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    public init(accessKeyID: String, secretAccessKey: String, region: String, service: String = "s3") {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.region = region
        self.service = service
        self.keyCache = NIOLockedValueBox(nil)
    }

    /// A request to sign. `path` is the canonical (already URI-encoded) path, `query` the raw (not yet
    /// encoded) parameters, `headers` every header to sign (names in any case; `host` and `x-amz-date` and
    /// `x-amz-content-sha256` included by the caller).
    public struct Request: Sendable {
        public var method: String
        public var encodedPath: String
        public var query: [(name: String, value: String)]
        public var headers: [(name: String, value: String)]
        public var payloadHash: String

        public init(method: String, encodedPath: String, query: [(name: String, value: String)],
                    headers: [(name: String, value: String)], payloadHash: String) {
            self.method = method
            self.encodedPath = encodedPath
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// The pieces of a signature, kept apart so tests can compare each with the published example.
    public struct Signature: Sendable {
        public let canonicalRequest: String
        public let stringToSign: String
        public let signature: String
        public let signedHeaders: String
        /// The value of the `Authorization` header.
        public let authorization: String
    }

    /// Signs `request` at `amzDate` (`YYYYMMDD'T'HHMMSS'Z'`, the value of its `x-amz-date` header).
    public func sign(_ request: Request, amzDate: String) -> Signature {
        let day = String(amzDate.prefix(8))
        let canonical = Self.canonicalRequest(request)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        // "StringToSign = Algorithm + \n + RequestDateTime + \n + CredentialScope + \n + HashedCanonicalRequest"
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Self.hexSHA256(Array(canonical.request.utf8)))"
        let key = signingKey(day: day)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key)
        let signature = Self.hex(mac)
        let authorization = "AWS4-HMAC-SHA256 Credential=\(accessKeyID)/\(scope),SignedHeaders=\(canonical.signedHeaders),Signature=\(signature)"
        return Signature(canonicalRequest: canonical.request, stringToSign: stringToSign, signature: signature,
                         signedHeaders: canonical.signedHeaders, authorization: authorization)
    }

    /// "DateKey = HMAC-SHA256("AWS4"+"<SecretAccessKey>", "<YYYYMMDD>"); DateRegionKey = HMAC-SHA256(DateKey,
    /// "<aws-region>"); DateRegionServiceKey = HMAC-SHA256(DateRegionKey, "<aws-service>"); SigningKey =
    /// HMAC-SHA256(DateRegionServiceKey, "aws4_request")". Cached for the day.
    func signingKey(day: String) -> SymmetricKey {
        if let cached = keyCache.withLockedValue({ $0 }), cached.day == day { return cached.key }
        var key = SymmetricKey(data: Array(("AWS4" + secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key))
        }
        keyCache.withLockedValue { $0 = (day, key) }
        return key
    }

    /// The canonical request and the `SignedHeaders` list.
    static func canonicalRequest(_ request: Request) -> (request: String, signedHeaders: String) {
        // "CanonicalQueryString ... sort the parameter names by character code point in ascending order.
        // Parameters with duplicate names should be sorted by value." Names and values are URI-encoded
        // first; a parameter without value gets "=" and an empty value ("lifecycle=").
        let queryString = canonicalQueryString(request.query)
        // "CanonicalHeaders ... Lowercase(<HeaderName1>)+":"+Trim(<value>)+"\n" ... sorted by header name".
        // Trim also folds inner runs of spaces into one ("Trim(<value>) ... removes leading and trailing
        // spaces ... and converts sequential spaces to a single space").
        let headers = request.headers.map { (name: $0.name.lowercased(), value: trimValue($0.value)) }
            .sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        var canonicalHeaders = ""
        for header in headers { canonicalHeaders += "\(header.name):\(header.value)\n" }
        // "SignedHeaders is an alphabetically sorted, semicolon-separated list of lowercase request header names."
        let signedHeaders = headers.map(\.name).joined(separator: ";")
        let canonical = [request.method, request.encodedPath, queryString, canonicalHeaders, signedHeaders,
                         request.payloadHash].joined(separator: "\n")
        return (canonical, signedHeaders)
    }

    /// The query parameters URI-encoded and sorted by name, then value, joined as `name=value&...`.
    public static func canonicalQueryString(_ query: [(name: String, value: String)]) -> String {
        query.map { (uriEncode($0.name, keepSlash: false), uriEncode($0.value, keepSlash: false)) }
            .sorted { a, b in
                a.0 == b.0 ? a.1.utf8.lexicographicallyPrecedes(b.1.utf8) : a.0.utf8.lexicographicallyPrecedes(b.0.utf8)
            }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// S3's URI encoding: "URI encode every byte. UriEncode() must enforce the following rules: URI encode
    /// every byte except the unreserved characters: 'A'-'Z', 'a'-'z', '0'-'9', '-', '.', '_', and '~'. The
    /// space character is a reserved character and must be encoded as "%20" (and not as "+"). Each URI
    /// encoded byte is formed by a '%' and the two-digit hexadecimal value of the byte. Letters in the
    /// hexadecimal value must be uppercase ... Encode the forward slash character, '/', everywhere except in
    /// the object key name." For object key names, `keepSlash` keeps '/'. S3 does not normalise paths, so a
    /// key is encoded once and never double-encoded.
    public static func uriEncode(_ text: String, keepSlash: Bool) -> String {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func trimValue(_ value: String) -> String {
        var out = ""
        var pendingSpace = false
        for ch in value {
            if ch == " " || ch == "\t" {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(ch)
            }
        }
        return out
    }

    /// Lowercase hex SHA-256 of `bytes`.
    public static func hexSHA256(_ bytes: [UInt8]) -> String {
        hex(SHA256.hash(data: bytes))
    }

    /// Lowercase hex SHA-256 of raw bytes (no copy through an array).
    public static func hexSHA256(_ bytes: UnsafeRawBufferPointer) -> String {
        hex(SHA256.hash(data: bytes))
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `YYYYMMDD'T'HHMMSS'Z'` for a Unix time in seconds: "The date in ISO 8601 basic format" that
    /// `x-amz-date` carries (UTC).
    public static func amzDate(unixSeconds: Int) -> String {
        var time = time_t(unixSeconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let s = String(value)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return pad(parts.tm_year + 1900, 4) + pad(parts.tm_mon + 1, 2) + pad(parts.tm_mday, 2) + "T"
            + pad(parts.tm_hour, 2) + pad(parts.tm_min, 2) + pad(parts.tm_sec, 2) + "Z"
    }
}
