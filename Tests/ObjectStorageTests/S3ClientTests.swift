import EdgeswapTestSupport
import Foundation
import Testing
@testable import ObjectStorage

/// The failures an S3 bucket must tell apart, against a real SeaweedFS with SigV4 enforced.
@Suite struct S3FailureTests {
    @Test func credentialsAndBucketErrors() async throws {
        let server = try await SeaweedFS(name: "errors")
        defer { server.remove() }
        let good = S3Client(configuration: try S3Configuration(
            endpoint: server.endpoint, bucket: uniqueBucketName("errors"), accessKeyID: server.accessKeyID,
            secretAccessKey: server.secretAccessKey))
        let wrongSecret = S3Client(configuration: try S3Configuration(
            endpoint: server.endpoint, bucket: good.configuration.bucket, accessKeyID: server.accessKeyID,
            secretAccessKey: server.secretAccessKey + "x"))
        let unknownKey = S3Client(configuration: try S3Configuration(
            endpoint: server.endpoint, bucket: good.configuration.bucket, accessKeyID: "AKIDNOSUCHKEY",
            secretAccessKey: server.secretAccessKey))
        try await withClients([good, wrongSecret, unknownKey]) {
            try await good.bucket().createBucketIfMissing()
            try await good.bucket().createBucketIfMissing()  // twice: already ours is fine
            try await good.bucket().put("k", bytes: [1, 2, 3])

            let before = wrongSecret.statistics
            do {
                _ = try await wrongSecret.bucket().get("k")
                Issue.record("a wrong secret was accepted")
            } catch {
                guard case BucketError.accessDenied(let code, _) = error else { throw error }
                #expect(code == "SignatureDoesNotMatch")
            }
            // 4xx answers are never retried.
            #expect(wrongSecret.statistics.attempts == before.attempts + 1)
            #expect(wrongSecret.statistics.retries == before.retries)
            do {
                _ = try await unknownKey.bucket().list(prefix: "", after: nil, limit: 10)
                Issue.record("an unknown access key was accepted")
            } catch {
                guard case BucketError.accessDenied(let code, _) = error else { throw error }
                #expect(code == "InvalidAccessKeyId")
            }
            // HEAD has no body: the 403 still is an access error, not "no such key".
            await #expect {
                _ = try await wrongSecret.bucket().head("k")
            } throws: { error in
                if case BucketError.accessDenied = error { return true }
                return false
            }
            let missing = good.bucket("t-no-such-bucket-\(UInt32.random(in: 0...UInt32.max))")
            await #expect(throws: BucketError.noSuchBucket(missing.name)) { try await missing.get("k") }
            await #expect(throws: BucketError.noSuchBucket(missing.name)) {
                try await missing.list(prefix: "", after: nil, limit: 10)
            }
            // (No check of PUT into a missing bucket: SeaweedFS creates the bucket on the fly.)
            // The good client still works after all that.
            #expect(try await good.bucket().get("k") == [1, 2, 3])
        }
    }

    /// Nothing listens on the endpoint: a transport error after the configured attempts, not a hang and
    /// not a 404.
    @Test func unreachableEndpoint() async throws {
        try InteropEnvironment.requirePrivateNetworkNamespace()
        let port = try LoopbackPorts.allocate()
        let client = S3Client(configuration: try S3Configuration(
            endpoint: "http://127.0.0.1:\(port)", bucket: "b", accessKeyID: "k", secretAccessKey: "s",
            connectTimeout: .seconds(1), requestTimeout: .seconds(2),
            retry: .init(maxAttempts: 3, baseBackoff: .milliseconds(10), maxBackoff: .milliseconds(50))))
        try await withClients([client]) {
            for operation in ["get", "head", "list", "put"] {
                do {
                    switch operation {
                    case "get": _ = try await client.bucket().get("k", range: 0...9)
                    case "head": _ = try await client.bucket().head("k")
                    case "list": _ = try await client.bucket().list(prefix: "", after: nil, limit: 1)
                    default: try await client.bucket().put("k", bytes: [1])
                    }
                    Issue.record("\(operation) succeeded with nothing listening")
                } catch {
                    guard case BucketError.transport(let why) = error else {
                        Issue.record("\(operation): expected a transport error, got \(error)")
                        continue
                    }
                    #expect(why.contains("after 3 attempts"), "\(why)")
                }
            }
        }
        // A name that does not resolve (".invalid" is reserved: RFC 6761 6.4) is a transport error too.
        let unresolvable = S3Client(configuration: try S3Configuration(
            endpoint: "http://edgeswap-test.invalid:\(port)", bucket: "b", accessKeyID: "k", secretAccessKey: "s",
            connectTimeout: .seconds(1), requestTimeout: .seconds(2),
            retry: .init(maxAttempts: 2, baseBackoff: .milliseconds(10), maxBackoff: .milliseconds(50))))
        try await withClients([unresolvable]) {
            await #expect {
                _ = try await unresolvable.bucket().get("k")
            } throws: { error in
                guard case BucketError.transport(let why) = error else { return false }
                return why.contains("after 2 attempts")
            }
        }
    }

    /// The server goes away and comes back on the same port: requests fail with `.transport` meanwhile and
    /// work again afterwards on the same client (its pool drops the dead connections).
    @Test func serverStoppedThenRestarted() async throws {
        let server = try await SeaweedFS(name: "restart")
        defer { server.remove() }
        let client = S3Client(configuration: try S3Configuration(
            endpoint: server.endpoint, bucket: uniqueBucketName("restart"), accessKeyID: server.accessKeyID,
            secretAccessKey: server.secretAccessKey, connectTimeout: .seconds(1), requestTimeout: .seconds(5),
            retry: .init(maxAttempts: 2, baseBackoff: .milliseconds(10), maxBackoff: .milliseconds(20))))
        try await withClients([client]) {
            let bucket = client.bucket()
            try await bucket.createBucketIfMissing()
            try await bucket.put("k", bytes: pattern(300))
            #expect(try await bucket.get("k", range: 10...19) == Array(pattern(300)[10...19]))

            server.stop()
            #expect(!server.isRunning)
            do {
                _ = try await bucket.get("k")
                Issue.record("get succeeded with the server stopped")
            } catch {
                guard case BucketError.transport = error else { throw error }
            }

            try await server.start()
            // The S3 port answers before SeaweedFS's filer is back: for a moment it says 500 InternalError (seen
            // on a loaded CI machine). The client must come back by itself once the service does.
            let deadline = ContinuousClock.now + .seconds(30)
            var restored: [UInt8]?
            while restored == nil {
                do {
                    restored = try await bucket.get("k")
                } catch BucketError.service(let status, _, _) where status >= 500 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(restored == pattern(300))
            #expect(try await bucket.list(prefix: "", after: nil, limit: 10) == ["k"])
        }
    }

    /// A request issued while the server is down succeeds once it is back within the retry budget: the
    /// retries (with backoff) ride through a short outage.
    @Test func retriesRideThroughAnOutage() async throws {
        let server = try await SeaweedFS(name: "outage")
        defer { server.remove() }
        let client = S3Client(configuration: try S3Configuration(
            endpoint: server.endpoint, bucket: uniqueBucketName("outage"), accessKeyID: server.accessKeyID,
            secretAccessKey: server.secretAccessKey, connectTimeout: .seconds(1), requestTimeout: .seconds(5),
            retry: .init(maxAttempts: 60, baseBackoff: .milliseconds(100), maxBackoff: .milliseconds(300))))
        try await withClients([client]) {
            let bucket = client.bucket()
            try await bucket.createBucketIfMissing()
            try await bucket.put("k", bytes: pattern(64))
            server.stop()
            let before = client.statistics
            // The get runs while this task waits and restarts the server.
            async let fetched = bucket.get("k", range: 8...15)
            try await Task.sleep(for: .milliseconds(700))
            try await server.start()
            let bytes = try await fetched
            #expect(bytes == Array(pattern(64)[8...15]))
            #expect(client.statistics.retries > before.retries)
        }
    }
}

/// Runs `body`, then shuts the clients down whether it threw or not (an HTTPClient must be shut down
/// before it is released).
func withClients(_ clients: [S3Client], _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        for client in clients { try? await client.shutdown() }
        throw error
    }
    for client in clients { try await client.shutdown() }
}

/// SigV4 against the examples of AWS's "Authenticating Requests: Using the Authorization Header (AWS
/// Signature Version 4)" page (Amazon S3 API reference): credentials AKIAIOSFODNN7EXAMPLE /
/// wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, 20130524T000000Z, us-east-1, bucket examplebucket.
@Suite struct SigV4Tests {
    let signer = SigV4Signer(accessKeyID: "AKIAIOSFODNN7EXAMPLE",
                             secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region: "us-east-1")
    let date = "20130524T000000Z"
    let host = ("Host", "examplebucket.s3.amazonaws.com")

    /// "Example: GET Object": the first 10 bytes of test.txt.
    @Test func getObjectWithRange() {
        let signature = signer.sign(.init(
            method: "GET", encodedPath: "/test.txt", query: [],
            headers: [host, ("Range", "bytes=0-9"), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash),
                      ("x-amz-date", date)],
            payloadHash: SigV4Signer.emptyPayloadHash), amzDate: date)
        #expect(signature.canonicalRequest == """
            GET
            /test.txt

            host:examplebucket.s3.amazonaws.com
            range:bytes=0-9
            x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            x-amz-date:20130524T000000Z

            host;range;x-amz-content-sha256;x-amz-date
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
            """)
        #expect(signature.stringToSign == """
            AWS4-HMAC-SHA256
            20130524T000000Z
            20130524/us-east-1/s3/aws4_request
            7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
            """)
        #expect(signature.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(signature.authorization == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    /// "Example: PUT Object": key `test$file.text` ('$' is encoded in the path), a signed payload hash.
    @Test func putObject() {
        let payload = Array("Welcome to Amazon S3.".utf8)
        let payloadHash = SigV4Signer.hexSHA256(payload)
        #expect(payloadHash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let path = "/" + SigV4Signer.uriEncode("test$file.text", keepSlash: true)
        #expect(path == "/test%24file.text")
        let signature = signer.sign(.init(
            method: "PUT", encodedPath: path, query: [],
            headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), host, ("x-amz-date", date),
                      ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("x-amz-content-sha256", payloadHash)],
            payloadHash: payloadHash), amzDate: date)
        #expect(signature.signedHeaders == "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class")
        #expect(signature.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    /// "Example: GET Bucket Lifecycle": a query parameter without a value signs as "lifecycle=".
    @Test func getBucketLifecycle() {
        let signature = signer.sign(.init(
            method: "GET", encodedPath: "/", query: [("lifecycle", "")],
            headers: [host, ("x-amz-date", date), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash)],
            payloadHash: SigV4Signer.emptyPayloadHash), amzDate: date)
        #expect(signature.canonicalRequest.split(separator: "\n", omittingEmptySubsequences: false)[2] == "lifecycle=")
        #expect(signature.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    /// "Example: Get Bucket (List Objects)": query parameters are sorted by name.
    @Test func listObjects() {
        let signature = signer.sign(.init(
            method: "GET", encodedPath: "/", query: [("prefix", "J"), ("max-keys", "2")],
            headers: [host, ("x-amz-date", date), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash)],
            payloadHash: SigV4Signer.emptyPayloadHash), amzDate: date)
        #expect(signature.canonicalRequest.split(separator: "\n", omittingEmptySubsequences: false)[2] == "max-keys=2&prefix=J")
        #expect(signature.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    /// A different secret gives a different signature (the vectors above cannot pass by accident).
    @Test func secretMatters() {
        let other = SigV4Signer(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "another", region: "us-east-1")
        let request = SigV4Signer.Request(method: "GET", encodedPath: "/test.txt", query: [],
                                          headers: [host, ("x-amz-date", date)], payloadHash: SigV4Signer.emptyPayloadHash)
        #expect(other.sign(request, amzDate: date).signature != signer.sign(request, amzDate: date).signature)
        // The cached signing key changes with the day.
        #expect(signer.sign(request, amzDate: "20130525T000000Z").signature != signer.sign(request, amzDate: date).signature)
    }

    @Test func uriEncoding() {
        #expect(SigV4Signer.uriEncode("a b/c+d=e&f~g_h.i-j", keepSlash: true) == "a%20b/c%2Bd%3De%26f~g_h.i-j")
        #expect(SigV4Signer.uriEncode("a/b", keepSlash: false) == "a%2Fb")
        #expect(SigV4Signer.uriEncode("ключ", keepSlash: true) == "%D0%BA%D0%BB%D1%8E%D1%87")
        #expect(SigV4Signer.uriEncode("%41*'()!", keepSlash: true) == "%2541%2A%27%28%29%21")
        #expect(SigV4Signer.canonicalQueryString([("b", "2"), ("a", "x y"), ("a", "1"), ("uploads", "")])
                == "a=1&a=x%20y&b=2&uploads=")
        #expect(SigV4Signer.trimValue("  a   b \t c  ") == "a b c")
    }

    @Test func amzDate() {
        #expect(SigV4Signer.amzDate(unixSeconds: 1_369_353_600) == "20130524T000000Z")
        #expect(SigV4Signer.amzDate(unixSeconds: 951_827_696) == "20000229T123456Z")
    }
}

@Suite struct S3XMLTests {
    @Test func listBucketResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
            <KeyCount>3</KeyCount><MaxKeys>3</MaxKeys><IsTruncated>true</IsTruncated>
            <Contents><Key>a&amp;b&lt;c&gt;&quot;d&apos;</Key><Size>1</Size><Owner><ID>x</ID></Owner></Contents>
            <Contents><Key>&#1082;&#x43B;</Key><ETag>&quot;e&quot;</ETag></Contents>
            <Contents><Key>tab\there</Key></Contents><!-- a comment <Key>no</Key> -->
            <NextContinuationToken>tok/+=</NextContinuationToken><StartAfter/></ListBucketResult>
            """
        let page = try ListObjectsV2Page.parse(Array(xml.utf8))
        #expect(page.keys == ["a&b<c>\"d'", "кл", "tab\there"])
        #expect(page.isTruncated)
        #expect(page.nextContinuationToken == "tok/+=")
        let last = try ListObjectsV2Page.parse(Array("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>".utf8))
        #expect(last == ListObjectsV2Page(keys: [], isTruncated: false, nextContinuationToken: nil))
    }

    @Test func errorBody() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Resource>/b/k</Resource><Key>k</Key></Error>"
        #expect(S3ErrorBody.parse(Array(xml.utf8)) == S3ErrorBody(code: "NoSuchKey", message: "The specified key does not exist."))
        #expect(S3ErrorBody.parse(Array("<ListBucketResult/>".utf8)) == nil)
        #expect(S3ErrorBody.parse([]) == nil)
    }

    @Test func malformedInputGivesSpecificErrors() {
        let cases: [(String, S3XMLError)] = [
            ("<ListBucketResult><Key>a</ListBucketResult>", .unbalanced("closing </ListBucketResult> inside <Key>")),
            ("<ListBucketResult>", .unbalanced("<ListBucketResult> is never closed")),
            ("</a>", .unbalanced("closing </a> with nothing open")),
            ("<a><b>x &bogus; y</b></a>", .badEntity("bogus")),
            ("<a><b>x &amp y</b></a>", .badEntity("&amp y")),
            ("<a><b>&#xD800;</b></a>", .badEntity("#xD800")),
            ("<a", .unterminated("tag")),
            ("<?xml ", .unterminated("processing instruction")),
            ("<a><![CDATA[x]]></a>", .unsupported("CDATA section")),
            ("<>", .malformed("empty tag name")),
            (String(repeating: "<a>", count: 40), .tooDeep),
            ("<", .unexpectedEnd),
        ]
        for (input, expected) in cases {
            #expect(throws: expected, "\(input)") { try ListObjectsV2Page.parse(Array(input.utf8)) }
        }
        #expect(throws: S3XMLError.missing("ListBucketResult")) { try ListObjectsV2Page.parse(Array("<Other/>".utf8)) }
        #expect(throws: S3XMLError.missing("InitiateMultipartUploadResult/UploadId")) {
            try s3XMLValue(Array("<InitiateMultipartUploadResult/>".utf8), root: "InitiateMultipartUploadResult", name: "UploadId")
        }
    }
}

@Suite struct S3ConfigurationTests {
    @Test func fromEnvironment() throws {
        let configuration = try S3Configuration.fromEnvironment(
            endpoint: "http://127.0.0.1:8333/", bucket: "carpark",
            environment: ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "T"])
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 8333)
        #expect(configuration.scheme == "http")
        #expect(configuration.region == "us-east-1")
        #expect(configuration.accessKeyID == "AK")
        #expect(configuration.secretAccessKey == "SK")
        #expect(configuration.sessionToken == "T")
        #expect(configuration.hostHeader(bucket: "carpark") == "127.0.0.1:8333")
        #expect(configuration.encodedPath(bucket: "carpark", key: "a b/c") == "/carpark/a%20b/c")
        let aws = try S3Configuration.fromEnvironment(
            endpoint: "https://s3.us-west-2.amazonaws.com", bucket: "satnav", addressing: .virtualHost,
            environment: ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_REGION": "us-west-2"])
        #expect(aws.region == "us-west-2")
        #expect(aws.port == 443)
        #expect(aws.sessionToken == nil)
        #expect(aws.hostHeader(bucket: "satnav") == "satnav.s3.us-west-2.amazonaws.com")
        #expect(aws.encodedPath(bucket: "satnav", key: "k") == "/k")
        #expect(throws: S3ConfigurationError.missingVariable("AWS_SECRET_ACCESS_KEY")) {
            try S3Configuration.fromEnvironment(endpoint: "http://h", bucket: "b", environment: ["AWS_ACCESS_KEY_ID": "AK"])
        }
        #expect(throws: S3ConfigurationError.self) {
            try S3Configuration(endpoint: "ftp://h", bucket: "b", accessKeyID: "a", secretAccessKey: "s")
        }
        #expect(throws: S3ConfigurationError.self) {
            try S3Configuration(endpoint: "http://h:99999", bucket: "b", accessKeyID: "a", secretAccessKey: "s")
        }
    }

    @Test func backoffIsBoundedAndJittered() {
        let policy = S3Configuration.RetryPolicy(maxAttempts: 5, baseBackoff: .milliseconds(100), maxBackoff: .milliseconds(250))
        for attempt in 1...10 {
            let sleep = policy.backoff(afterAttempt: attempt)
            #expect(sleep >= .zero && sleep <= .milliseconds(250))
        }
        let fixed = S3Configuration.RetryPolicy(maxAttempts: 5, baseBackoff: .milliseconds(100),
                                                maxBackoff: .seconds(1), fullJitter: false)
        #expect(fixed.backoff(afterAttempt: 1) == .milliseconds(100))
        #expect(fixed.backoff(afterAttempt: 3) == .milliseconds(400))
        #expect(fixed.backoff(afterAttempt: 5) == .seconds(1))
    }
}
