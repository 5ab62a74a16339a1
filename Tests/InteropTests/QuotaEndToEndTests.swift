import EdgeswapTestSupport
import Foundation
import Testing

/// `edgeswap serve --quota-…` against our own Bitswap client: a peer over its quota gets DONT_HAVE (or loses its
/// connection) while other peers are served in full.
@Suite(.serialized) struct QuotaEndToEndTests {
    private func load(_ address: String, root: String, key: String, name: String, directory: TestDirectory)
        async throws -> LoadReport
    {
        try await runLoad(address, ["--root", root, "--key", key, "--round-timeout", "60"], name: name,
                          directory: directory)
    }

    @Test func peerOverItsByteQuotaGetsDontHaveWhileOthersAreServed() async throws {
        let directory = try TestDirectory(name: "quota-dont-have")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let fixture = try store.manifest.fixture("cidv0-20mib")
        // 3 MB per window: about a dozen of the 81 blocks (256 KiB each). Windows are aligned to the clock; one of
        // about 12 days makes crossing a boundary during the test practically impossible.
        let (server, address) = try await store.serve(["--quota-bytes", "3000000", "--quota-window", "1000000",
                                                       "--admin-listen", "127.0.0.1:0"])
        defer { server.process.terminate() }
        let admin = String(try await server.process.waitForLine(matching: "^admin http://", timeout: .seconds(10))
            .dropFirst("admin ".count))

        let greedy = try await newKeyFile("greedy.key", in: directory)
        let first = try await load(address, root: fixture.root, key: greedy, name: "load-greedy", directory: directory)
        #expect(first.errors == 0, "\(first)")
        #expect(first.blocks > 0 && first.blocks < fixture.blocks, "served until the cap: \(first)")
        #expect(first.dont_haves > 0, "\(first)")
        // Still over it in the same window: nothing more.
        let again = try await load(address, root: fixture.root, key: greedy, name: "load-greedy-2", directory: directory)
        #expect(again.blocks == 0 && again.dont_haves > 0, "\(again)")

        // Another peer has its own quota; the server is fine.
        let other = try await newKeyFile("other.key", in: directory)
        let served = try await load(address, root: fixture.root, key: other, name: "load-other", directory: directory)
        #expect(served.blocks > 0 && served.errors == 0, "\(served)")

        let metrics = try await AdminEndpointTests.get(admin + "/metrics").1
        #expect(metrics.contains("edgeswap_quota_refused_batches_total"), "\(metrics)")
        #expect(!metrics.contains("edgeswap_quota_refused_batches_total 0\n"), "\(metrics)")
        #expect(server.process.stderr().contains("peer over quota"))
    }

    @Test func closeActionDropsTheConnection() async throws {
        let directory = try TestDirectory(name: "quota-close")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let fixture = try store.manifest.fixture("cidv0-20mib")
        let (server, address) = try await store.serve(["--quota-subrequests", "2", "--quota-action", "close"])
        defer { server.process.terminate() }
        let peer = try await newKeyFile("peer.key", in: directory)
        let report = try await load(address, root: fixture.root, key: peer, name: "load-closed", directory: directory)
        #expect(report.errors > 0, "the connection was closed mid-DAG: \(report)")
        #expect(report.blocks < fixture.blocks)
        #expect(server.process.stderr().contains("closing connection"))
        #expect(server.process.isRunning)
    }
}
