import EdgeswapTestSupport
import Foundation
import Testing

/// Acceptance test for "Bitswap server": real kubo v0.22 (boxo bitswap) fetches the generated fixtures
/// from `edgeswap serve` over /ws in a loopback-only namespace; every file must come back byte-exact
/// (sha2-256 against `fixtures.json`). Run through `.ci/in-netns`.
@Suite(.serialized) struct BitswapInteropTests {
    /// The parts of `fixtures.json` this test reads (the test target links none of our modules).
    private struct Manifest: Decodable {
        struct Fixture: Decodable {
            let name: String
            let root: String
            let sha256: String?
            let car: String
        }
        let fixtures: [Fixture]
    }

    /// Runs the built `edgeswap` binary to completion and returns its stdout.
    @discardableResult
    private func edgeswap(_ name: String, _ arguments: [String], directory: TestDirectory) async throws -> String {
        let process = try ManagedProcess(name: name, executable: InteropEnvironment.edgeswapBinary(),
                                         arguments: arguments, environment: [:], directory: directory)
        let status = try await process.waitForExit(timeout: .seconds(300))
        guard status == 0 else { throw process.failure("edgeswap \(arguments.first ?? "") exited with \(status)") }
        return process.stdout()
    }

    @Test func kuboFetchesEveryFileFixtureByteExact() async throws {
        let directory = try TestDirectory(name: "kubo-edgeswap-bitswap")
        defer { directory.remove() }
        let fixtures = directory.path("fixtures").path
        let store = directory.path("store").path
        let key = directory.path("edgeswap.key").path
        try await edgeswap("fixtures", ["fixtures", "--output", fixtures], directory: directory)
        let manifest = try JSONDecoder().decode(
            Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/fixtures.json")))
        let files = manifest.fixtures.filter { $0.sha256 != nil }
        #expect(files.count >= 3, "single-file fixtures: \(files.map(\.name))")
        try await edgeswap("ingest", ["ingest", "--store", store, "--quiet"]
                           + manifest.fixtures.map { fixtures + "/" + $0.car }, directory: directory)
        try await edgeswap("key-new", ["key", "new", "--type", "ed25519", "--output", key], directory: directory)

        let server = try await EdgeswapServe.start(
            ["--store", store, "--key", key, "--log-level", "debug",
             "--listen", "/ip4/127.0.0.1/tcp/\(try LoopbackPorts.allocate())/ws"],
            expectedListeners: 1, directory: directory)
        defer { server.process.terminate() }
        let listener = try server.listener(secure: false)

        let report = try await Kubo.fetch(files.map(\.root), from: listener.multiaddr, identity: .ed25519,
                                          directory: directory, timeout: .seconds(240))
        #expect(report.ok, "\(report)\n\(server.process.stderr())")
        for fixture in files {
            let item = report.results?.first { $0.cid == fixture.root }
            #expect(item?.ok == true, "\(fixture.name): \(String(describing: item))")
            #expect(item?.sha256 == fixture.sha256, "\(fixture.name) \(fixture.root)")
            if let item { print("kubo fetched \(fixture.name) (\(item.bytes ?? 0) B) in \(item.seconds) s") }
        }
    }
}
