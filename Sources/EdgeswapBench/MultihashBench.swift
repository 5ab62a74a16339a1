import Foundation
import Multiformats

/// Multihash verification throughput (`Multihash.verify`, the per-block check) for sha2-256 and blake3
/// on Bitswap-sized blocks, with the same machine's OpenSSL and `b3sum` as reference points.
/// Run from a release build: `swift run -c release edgeswap-bench`.
func runMultihashBenchmarks() {
    print("== Multihash.verify (single thread, MB/s = 10^6 bytes/s)")
    var ours: [String: Double] = [:]
    let sizes = [1 << 20, 256 << 10, 64 << 10]
    for size in sizes {
        let data = benchBytes(size)
        for (name, code) in [("sha2-256", Multicodec.sha2_256), ("blake3", Multicodec.blake3)] {
            let rate = data.withUnsafeBytes { raw -> (cpu: Double, wall: Double) in
                guard let mh = try? Multihash.compute(code: code, of: raw) else { return (0, 0) }
                return measureRate(bytesPerIteration: size) {
                    guard (try? mh.verify(raw)) == true else { fatalError("verify failed") }
                }
            }
            ours["\(name)/\(size)"] = rate.cpu
            print(String(format: "  %-9@ %5d KiB: %8.1f MB/s by CPU time (%8.1f MB/s wall)",
                         name as NSString, size >> 10, rate.cpu, rate.wall))
        }
    }

    print("== Reference points on this machine")
    let opensslSHA256 = opensslSpeedSHA256()
    if let r = opensslSHA256 {
        print(String(format: "  openssl speed sha256, 1 MiB blocks: %8.1f MB/s (CPU time)", r))
        print(String(format: "  ratio sha2-256 verify (1 MiB) / openssl: %.2f", (ours["sha2-256/\(1 << 20)"] ?? 0) / r))
    } else {
        print("  openssl speed: not available")
    }
    if let (single, multi) = b3sumRates() {
        print(String(format: "  b3sum --num-threads 1, 256 MiB file: %8.1f MB/s (CPU time)", single))
        print(String(format: "  b3sum (default threads), 256 MiB file: %8.1f MB/s (wall time)", multi))
        for size in sizes {
            let b = ours["blake3/\(size)"] ?? 0  // CPU-time rate
            print(String(format: "  ratio blake3 verify (%@) / b3sum 1 thread: %.2f", sizeName(size) as NSString, b / single))
        }
        let b = ours["blake3/\(1 << 20)"] ?? 0
        print(String(format: "  ratio blake3 verify (1 MiB) / b3sum default: %.2f", b / multi))
    } else {
        print("  b3sum: not available (apt-get install b3sum)")
    }
}

private func sizeName(_ size: Int) -> String { size >= 1 << 20 ? "\(size >> 20) MiB" : "\(size >> 10) KiB" }

/// Deterministic non-repeating bytes.
private func benchBytes(_ count: Int) -> [UInt8] {
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    return (0..<count).map { _ in
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        return UInt8(truncatingIfNeeded: x)
    }
}

/// Runs `body` for about a second after a short warm-up; returns MB/s by this thread's CPU time and by
/// wall time. CPU time is the fair figure on a shared machine (the CI boxes run several builds at once);
/// `openssl speed` also reports CPU-time rates.
private func measureRate(bytesPerIteration: Int, _ body: () -> Void) -> (cpu: Double, wall: Double) {
    let clock = ContinuousClock()
    let warmUpEnd = clock.now.advanced(by: .milliseconds(200))
    while clock.now < warmUpEnd { body() }
    var iterations = 0
    let start = clock.now
    let cpuStart = threadCPUSeconds()
    var elapsed = Duration.zero
    repeat {
        for _ in 0..<4 { body() }
        iterations += 4
        elapsed = clock.now - start
    } while elapsed < .seconds(1)
    let cpu = threadCPUSeconds() - cpuStart
    let bytes = Double(iterations * bytesPerIteration)
    return (bytes / cpu / 1e6, bytes / seconds(elapsed) / 1e6)
}

private func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

private func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// User + system CPU seconds of all reaped child processes so far.
private func childrenCPUSeconds() -> Double {
    var usage = rusage()
    #if canImport(Glibc)
    getrusage(__rusage_who_t(RUSAGE_CHILDREN.rawValue), &usage)
    #else
    getrusage(RUSAGE_CHILDREN, &usage)
    #endif
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

private func findExecutable(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// Runs a program, discarding stderr; returns stdout, the wall time and the child's CPU time, or nil if
/// it failed.
private func runTimed(_ path: String, _ arguments: [String]) -> (output: String, seconds: Double, cpu: Double)? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    let clock = ContinuousClock()
    let start = clock.now
    let cpuStart = childrenCPUSeconds()
    do { try process.run() } catch { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let elapsed = clock.now - start
    let cpu = childrenCPUSeconds() - cpuStart
    guard process.terminationStatus == 0 else { return nil }
    return (String(decoding: data, as: UTF8.self), seconds(elapsed), cpu)
}

/// `openssl speed -bytes 1048576 -seconds 2 sha256`: the last line is `sha256 <rate>k`, in 1000s of bytes/s.
private func opensslSpeedSHA256() -> Double? {
    guard let openssl = findExecutable("openssl"),
        let (output, _, _) = runTimed(openssl, ["speed", "-bytes", "1048576", "-seconds", "2", "sha256"])
    else { return nil }
    for line in output.split(separator: "\n").reversed() where line.hasPrefix("sha256") {
        if let last = line.split(separator: " ").last, last.hasSuffix("k"), let k = Double(last.dropLast()) {
            return k * 1000 / 1e6
        }
    }
    return nil
}

/// `b3sum` over a 256 MiB temporary file, single-threaded and with its default threading; MB/s each.
/// b3sum uses SIMD (AVX2/AVX-512) over several chunks at once even on one thread; so does ours (AVX2,
/// eight chunks at a time) where the CPU has it.
private func b3sumRates() -> (single: Double, multi: Double)? {
    guard let b3sum = findExecutable("b3sum") else { return nil }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-bench-\(getpid()).bin").path
    guard FileManager.default.createFile(atPath: path, contents: nil),
        let handle = FileHandle(forWritingAtPath: path)
    else { return nil }
    defer { try? FileManager.default.removeItem(atPath: path) }
    let block = Data(benchBytes(1 << 20))
    for _ in 0..<256 { handle.write(block) }
    try? handle.close()
    let total = Double(256 << 20)
    _ = runTimed(b3sum, ["--num-threads", "1", path])  // warm the page cache
    guard let single = runTimed(b3sum, ["--num-threads", "1", path]),
        let multi = runTimed(b3sum, [path])
    else { return nil }
    // Single-threaded: CPU time, comparable with ours; default threading: wall time, its real speed-up.
    return (total / single.cpu / 1e6, total / multi.seconds / 1e6)
}
