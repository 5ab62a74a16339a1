import Foundation
import Redis

/// Redis client benchmarks against the server named by `EDGESWAP_REDIS_URL` (e.g.
/// `redis://127.0.0.1:6379/15`); keys are prefixed `edgeswap-bench:` and deleted afterwards.
///
/// - unpipelined: one caller, one command at a time (a round trip per command);
/// - concurrent: 64 callers on a pool of 4 connections (their commands pipeline on each connection);
/// - pipelined: batches of 1,000 commands in one write;
/// - 64 KiB GET: a value the size of a small CAR index, pipelined in batches of 64.
func runRedisBenchmarks() {
    guard let url = ProcessInfo.processInfo.environment["EDGESWAP_REDIS_URL"], !url.isEmpty else {
        print("redis: EDGESWAP_REDIS_URL is not set; skipping (e.g. EDGESWAP_REDIS_URL=redis://127.0.0.1:6379/15)")
        return
    }
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            try await benchRedis(url: url)
        } catch {
            print("redis: failed: \(error)")
        }
        done.signal()
    }
    done.wait()
}

private func benchRedis(url: String) async throws {
    var configuration = try RedisConfiguration(url: url)
    configuration.poolSize = 4
    configuration.commandTimeout = .seconds(30)
    let client = RedisClient(configuration: configuration)
    defer { Task { await client.shutdown() } }
    print("redis: \(configuration)")
    let clock = ContinuousClock()

    func report(_ label: String, operations: Int, _ elapsed: Duration, bytes: Int = 0) {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var line = "redis: \(label): \(Int(Double(operations) / seconds)) ops/s"
        if bytes > 0 { line += String(format: ", %.0f MB/s", Double(bytes) / seconds / 1e6) }
        print(line)
    }

    let keys = (0..<1_000).map { RedisArgument("edgeswap-bench:k\($0)") }
    let value = RedisArgument(bytes: [UInt8](repeating: 0x61, count: 100))

    // Unpipelined, one caller.
    let single = 5_000
    var elapsed = try await clock.measure {
        for index in 0..<single { _ = try await client.send(["SET", keys[index % keys.count], value]) }
    }
    report("SET unpipelined (1 caller, 100 B)", operations: single, elapsed)
    elapsed = try await clock.measure {
        for index in 0..<single { _ = try await client.send(["GET", keys[index % keys.count]]) }
    }
    report("GET unpipelined (1 caller, 100 B)", operations: single, elapsed)

    // Many callers sharing the pool.
    let callers = 64, perCaller = 500
    elapsed = try await clock.measure {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    for index in 0..<perCaller {
                        _ = try await client.send(["GET", keys[(caller * perCaller + index) % keys.count]])
                    }
                }
            }
            try await group.waitForAll()
        }
    }
    report("GET concurrent (\(callers) callers, pool 4)", operations: callers * perCaller, elapsed)

    // Pipelined batches.
    let batches = 100, batch = 1_000
    let sets: [[RedisArgument]] = keys.map { ["SET", $0, value] }
    let gets: [[RedisArgument]] = keys.map { ["GET", $0] }
    elapsed = try await clock.measure {
        for _ in 0..<batches { _ = try await client.pipeline(Array(sets.prefix(batch))) }
    }
    report("SET pipelined (batches of \(batch))", operations: batches * batch, elapsed)
    elapsed = try await clock.measure {
        for _ in 0..<batches { _ = try await client.pipeline(Array(gets.prefix(batch))) }
    }
    report("GET pipelined (batches of \(batch))", operations: batches * batch, elapsed)

    // Index-sized values.
    let large = RedisArgument(bytes: [UInt8](repeating: 0x62, count: 64 << 10))
    _ = try await client.send(["SET", "edgeswap-bench:large", large])
    let largeGets = Array(repeating: ["GET", "edgeswap-bench:large"] as [RedisArgument], count: 64)
    let rounds = 50
    elapsed = try await clock.measure {
        for _ in 0..<rounds {
            let replies = try await client.pipeline(largeGets)
            precondition(replies.allSatisfy { $0.bytes?.count == 64 << 10 }, "64 KiB GET came back wrong")
        }
    }
    report("GET 64 KiB pipelined (batches of 64)", operations: rounds * 64, elapsed, bytes: rounds * 64 * (64 << 10))

    _ = try await client.send(["DEL"] + keys + ["edgeswap-bench:large"])
    await client.shutdown()
}
