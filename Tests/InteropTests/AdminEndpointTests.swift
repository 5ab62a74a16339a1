import EdgeswapTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// `edgeswap serve --admin-listen`: liveness, readiness that follows the store, Prometheus metrics.
@Suite struct AdminEndpointTests {
    /// GET `url`: status and body (bounded wait).
    static func get(_ url: String) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 10
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? -1, String(decoding: data, as: UTF8.self))
    }

    /// GET `url` until it answers `status` (readiness is re-checked at most once a second, and a check may take
    /// a while on a loaded machine), at most `within`; the last answer.
    static func awaitStatus(_ url: String, _ status: Int, within: Duration = .seconds(20)) async throws -> (Int, String) {
        let deadline = ContinuousClock.now + within
        var answer = try await get(url)
        while answer.0 != status, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(250))
            answer = try await get(url)
        }
        return answer
    }

    @Test func readinessFollowsTheStoreAndMetricsAreExposed() async throws {
        let directory = try TestDirectory(name: "admin-endpoint")
        defer { directory.remove() }
        let store = directory.path("store")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        let key = try await newKeyFile("edgeswap.key", in: directory)

        let server = try await EdgeswapServe.start(
            ["--store", store.path, "--key", key, "--admin-listen", "127.0.0.1:0",
             "--listen", "/ip4/127.0.0.1/tcp/0/ws"],
            expectedListeners: 1, directory: directory)
        defer { server.process.terminate() }
        let line = try await server.process.waitForLine(matching: "^admin http://", timeout: .seconds(10))
        let base = String(line.dropFirst("admin ".count))

        let live = try await Self.get(base + "/livez")
        #expect(live.0 == 200)
        let ready = try await Self.awaitStatus(base + "/readyz", 200)
        #expect(ready.0 == 200, "\(ready.1)")
        #expect(ready.1.hasSuffix("ready\n"))
        let metrics = try await Self.get(base + "/metrics")
        #expect(metrics.0 == 200)
        for name in ["edgeswap_ready 1", "edgeswap_connections ", "edgeswap_bitswap_blocks_sent_total ",
                     "edgeswap_store_index_loads_total ", "# TYPE edgeswap_store_shared_failures_total counter"] {
            #expect(metrics.1.contains(name), "metrics lack \(name)")
        }
        #expect(try await Self.get(base + "/nope").0 == 404)

        // The store goes away: not ready, with the reason; it comes back: ready again. (Readiness is re-checked
        // at most once a second.)
        let moved = directory.path("store-away")
        try FileManager.default.moveItem(at: store, to: moved)
        let gone = try await Self.awaitStatus(base + "/readyz", 503)
        #expect(gone.0 == 503, "\(gone.1)")
        #expect(gone.1.contains("FAIL store"), "\(gone.1)")
        #expect(try await Self.get(base + "/metrics").1.contains("edgeswap_ready 0"))
        try FileManager.default.moveItem(at: moved, to: store)
        #expect(try await Self.awaitStatus(base + "/readyz", 200).0 == 200)
        #expect(server.process.isRunning)
    }
}
