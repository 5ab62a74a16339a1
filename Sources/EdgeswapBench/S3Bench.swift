import Foundation
import ObjectStorage

/// S3 client benchmarks against a server the caller runs (the bench starts none; the test harness's
/// `SeaweedFS` is not available to an executable):
///
///     EDGESWAP_S3_ENDPOINT=http://127.0.0.1:8333 EDGESWAP_S3_BUCKET=bench \
///     AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... edgeswap-bench s3
///
/// Writes one 64 MiB object, then reads random ranges of 1 KiB and 256 KiB with 16 concurrent requests for a
/// few seconds each, every reply checked, and prints requests/s and MB/s. Without EDGESWAP_S3_ENDPOINT it
/// prints why it did nothing.
func runS3Benchmarks() {
    let environment = ProcessInfo.processInfo.environment
    guard let endpoint = environment["EDGESWAP_S3_ENDPOINT"], !endpoint.isEmpty else {
        print("s3: skipped: set EDGESWAP_S3_ENDPOINT (and EDGESWAP_S3_BUCKET, AWS_ACCESS_KEY_ID, "
              + "AWS_SECRET_ACCESS_KEY) to a loopback S3 server to run it")
        return
    }
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            try await benchS3(endpoint: endpoint, bucket: environment["EDGESWAP_S3_BUCKET"] ?? "edgeswap-bench")
        } catch {
            print("s3: failed: \(error)")
        }
        done.signal()
    }
    done.wait()
}

private func benchS3(endpoint: String, bucket name: String) async throws {
    let configuration = try S3Configuration.fromEnvironment(endpoint: endpoint, bucket: name)
    let client = S3Client(configuration: configuration)
    do {
        let bucket = client.bucket()
        try await bucket.createBucketIfMissing()
        let size = 64 << 20
        var body = [UInt8](repeating: 0, count: size)
        for index in stride(from: 0, to: size, by: 8) { body[index] = UInt8(truncatingIfNeeded: index >> 3) }
        let key = "bench/object-\(UInt32.random(in: 0...UInt32.max))"
        try await bucket.put(key, bytes: body)
        for length in [1024, 256 << 10] {
            try await measure(bucket: bucket, key: key, body: body, length: length)
        }
        try await bucket.delete(key)
    } catch {
        try? await client.shutdown()
        throw error
    }
    try await client.shutdown()
}

private func measure(bucket: S3Bucket, key: String, body: [UInt8], length: Int) async throws {
    let concurrency = 16
    let window = Duration.seconds(3)
    let clock = ContinuousClock()
    let start = clock.now
    let counts = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<concurrency {
            group.addTask {
                var requests = 0
                while clock.now - start < window {
                    let offset = Int.random(in: 0...(body.count - length))
                    let bytes = try await bucket.get(key, range: UInt64(offset)...UInt64(offset + length - 1))
                    guard bytes.count == length, bytes.first == body[offset], bytes.last == body[offset + length - 1] else {
                        throw BucketError.service(status: 0, code: "BenchMismatch", message: "range \(offset) came back wrong")
                    }
                    requests += 1
                }
                return requests
            }
        }
        var total = 0
        for try await count in group { total += count }
        return total
    }
    let elapsed = clock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print(String(format: "s3 ranged GET %d B, %d concurrent: %d requests in %.2f s: %.0f req/s, %.1f MB/s",
                 length, concurrency, counts, seconds, Double(counts) / seconds,
                 Double(counts * length) / seconds / 1e6))
}
