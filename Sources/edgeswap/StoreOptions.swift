import ArgumentParser
import Foundation
import ObjectStorage

/// Where the store is: a directory (`--store`), or S3-compatible buckets (`--s3-endpoint` + `--bucket`, with
/// per-key-space overrides). Shared by `ingest` and `serve`, so both read and write the same four key spaces.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Store directory: carpark, satnav, dudewhere and blockmap keys all live here (the embedded default).",
        discussion: "Give either --store or --s3-endpoint with --bucket."))
    var store: String?

    @Option(name: .customLong("s3-endpoint"), help: ArgumentHelp(
        "S3-compatible endpoint, http[s]://HOST[:PORT] (AWS: https://s3.REGION.amazonaws.com).",
        discussion: "Credentials: --s3-access-key-id and --s3-secret-access-key, else $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY (and optional $AWS_SESSION_TOKEN); region: --s3-region, else $AWS_REGION, else us-east-1. Requests are signed with SigV4."))
    var s3Endpoint: String?

    @Option(name: .long, help: "Bucket holding all four key spaces (each can be moved with the options below).")
    var bucket: String?

    @Option(name: .customLong("carpark-bucket"), help: "Bucket of the CAR files (<car>/<car>.car). Default: --bucket.")
    var carparkBucket: String?

    @Option(name: .customLong("satnav-bucket"), help: "Bucket of the CAR indexes (<car>/<car>.car.idx). Default: --bucket.")
    var satnavBucket: String?

    @Option(name: .customLong("dudewhere-bucket"), help: "Bucket of the root → CAR keys (<root>/<car>). Default: --bucket.")
    var dudewhereBucket: String?

    @Option(name: .customLong("blockmap-bucket"), help: "Bucket of the block → CAR keys (z<multihash>/<car>). Default: --bucket.")
    var blockmapBucket: String?

    @Option(name: .customLong("s3-region"), help: "SigV4 region. Default: $AWS_REGION, else us-east-1.")
    var s3Region: String?

    @Option(name: .customLong("s3-access-key-id"), help: ArgumentHelp(
        "Access key id, instead of $AWS_ACCESS_KEY_ID.",
        discussion: "Command lines are visible to other users of the machine: prefer the environment variables for the secret."))
    var s3AccessKeyID: String?

    @Option(name: .customLong("s3-secret-access-key"), help: "Secret access key, instead of $AWS_SECRET_ACCESS_KEY (see above).")
    var s3SecretAccessKey: String?

    @Flag(name: .customLong("s3-virtual-host"),
          help: "Address buckets as BUCKET.HOST (virtual-hosted style) instead of HOST/BUCKET (path style, the default).")
    var s3VirtualHost = false

    @Option(name: .customLong("s3-max-connections"), help: "HTTP connections kept to the S3 endpoint.")
    var s3MaxConnections: Int = 64

    @Option(name: .customLong("s3-timeout"), help: "Seconds one S3 request may take before it is retried or fails.")
    var s3Timeout: Double = 10

    @Option(name: .customLong("s3-retries"), help: "Attempts per S3 request (5xx, SlowDown, timeouts and connection errors are retried with jittered backoff).")
    var s3Attempts: Int = 4

    /// Checks that exactly one kind of store is named, completely.
    func validateStore() throws {
        switch (store, s3Endpoint) {
        case (nil, nil):
            throw ValidationError("no store: give --store DIR, or --s3-endpoint URL with --bucket NAME")
        case (.some, .some):
            throw ValidationError("--store and --s3-endpoint exclude each other")
        case (.some(let dir), nil):
            guard !dir.isEmpty else { throw ValidationError("--store needs a directory") }
            if [carparkBucket, satnavBucket, dudewhereBucket, blockmapBucket, bucket, s3AccessKeyID].contains(where: { $0 != nil }) {
                throw ValidationError("bucket and credential options need --s3-endpoint")
            }
        case (nil, .some):
            let names = [carparkBucket, satnavBucket, dudewhereBucket, blockmapBucket].map { $0 ?? bucket }
            guard names.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--s3-endpoint needs --bucket (or all of --carpark-bucket, --satnav-bucket, --dudewhere-bucket, --blockmap-bucket)")
            }
            guard (s3AccessKeyID == nil) == (s3SecretAccessKey == nil) else {
                throw ValidationError("--s3-access-key-id and --s3-secret-access-key go together")
            }
            guard s3MaxConnections > 0, s3Timeout > 0, s3Attempts > 0 else {
                throw ValidationError("--s3-max-connections, --s3-timeout and --s3-retries must be positive")
            }
        }
    }

    /// An opened store. `client` is the S3 client to shut down, nil for a directory.
    struct Opened {
        let buckets: StoreBuckets
        let client: S3Client?
        /// Each distinct bucket by name, for readiness checks: `store DIR` or `s3 NAME`.
        let named: [(String, any Bucket)]
    }

    /// Opens the store. `create`: a directory is made if missing (ingest); an S3 bucket is created if missing.
    func open(create: Bool) async throws -> Opened {
        if let store {
            let bucket: FileSystemBucket
            do throws(BucketError) {
                bucket = try FileSystemBucket(root: store)
            } catch {
                throw ValidationError("--store \(store): \(error)")
            }
            return Opened(buckets: StoreBuckets(single: bucket), client: nil, named: [("store \(store)", bucket)])
        }
        guard let endpoint = s3Endpoint else { throw ValidationError("no store") }
        let names = (carpark: carparkBucket ?? bucket!, satnav: satnavBucket ?? bucket!,
                     dudewhere: dudewhereBucket ?? bucket!, blockmap: blockmapBucket ?? bucket!)
        var configuration: S3Configuration
        do {
            let addressing: S3Configuration.Addressing = s3VirtualHost ? .virtualHost : .path
            if let s3AccessKeyID, let s3SecretAccessKey {
                let region = ProcessInfo.processInfo.environment["AWS_REGION"].flatMap { $0.isEmpty ? nil : $0 }
                configuration = try S3Configuration(
                    endpoint: endpoint, bucket: names.carpark, region: region ?? "us-east-1",
                    accessKeyID: s3AccessKeyID, secretAccessKey: s3SecretAccessKey, addressing: addressing)
            } else {
                configuration = try S3Configuration.fromEnvironment(
                    endpoint: endpoint, bucket: names.carpark, addressing: addressing)
            }
        } catch {
            throw ValidationError("--s3-endpoint \(endpoint): \(error)")
        }
        if let s3Region { configuration.region = s3Region }
        configuration.maxConnectionsPerHost = s3MaxConnections
        configuration.requestTimeout = .milliseconds(Int64(s3Timeout * 1000))
        configuration.retry.maxAttempts = s3Attempts
        let client = S3Client(configuration: configuration)
        var byName: [String: S3Bucket] = [:]
        for name in [names.carpark, names.satnav, names.dudewhere, names.blockmap] where byName[name] == nil {
            let bucket = client.bucket(name)
            if create {
                do throws(BucketError) {
                    try await bucket.createBucketIfMissing()
                } catch {
                    try? await client.shutdown()
                    throw ValidationError("bucket \(name) at \(endpoint): \(error)")
                }
            }
            byName[name] = bucket
        }
        let buckets = StoreBuckets(carpark: byName[names.carpark]!, satnav: byName[names.satnav]!,
                                   dudewhere: byName[names.dudewhere]!, blockmap: byName[names.blockmap]!)
        return Opened(buckets: buckets, client: client,
                      named: byName.keys.sorted().map { ("s3 \($0)", byName[$0]! as any Bucket) })
    }
}
