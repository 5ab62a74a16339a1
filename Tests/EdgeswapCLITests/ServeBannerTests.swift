import EdgeswapServer
import EdgeswapTestSupport
import Foundation
import Testing

/// `edgeswap serve --print-roots fixtures.json` (what `make run` runs): after the `listening` lines it
/// prints the roots with their names, the multiaddr to dial and the kubo commands that fetch them.
@Suite struct ServeBannerTests {
    @Test(.timeLimit(.minutes(2))) func bannerNamesEveryRootAndADialableMultiaddr() async throws {
        let fixtures = try fixturesDirectory()
        let manifestPath = fixtures + "/" + FixtureGenerator.manifestName
        let manifest = try FixtureGenerator.loadManifest(directory: fixtures)
        let directory = try TestDirectory(name: "serve-banner")
        defer { directory.remove() }
        let store = directory.path("store")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        let key = directory.path("edgeswap.key").path

        let keyNew = try ManagedProcess(name: "key-new", executable: InteropEnvironment.edgeswapBinary(),
                                        arguments: ["key", "new", "--output", key], directory: directory)
        #expect(try await keyNew.waitForExit(timeout: .seconds(60)) == 0, "\(keyNew.stderr())")
        let peerID = keyNew.stdout().trimmingCharacters(in: .whitespacesAndNewlines)

        let serve = try ManagedProcess(
            name: "serve", executable: InteropEnvironment.edgeswapBinary(),
            arguments: ["serve", "--store", store.path, "--key", key, "--listen", "/ip4/127.0.0.1/tcp/0/ws",
                        "--print-roots", manifestPath],
            directory: directory)
        defer { serve.terminate() }
        // One `ipfs swarm connect`, then one fetch command per root.
        let rootCount = manifest.fixtures.reduce(0) { $0 + $1.roots.count }
        _ = try await serve.waitForLines(count: rootCount + 1, timeout: .seconds(60)) { $0.hasPrefix("  ipfs ") }
        let lines = serve.stdoutLines()

        let listening = try #require(lines.first { $0.hasPrefix("listening ") }).dropFirst("listening ".count)
        let address = String(listening)
        // Dialable: a concrete loopback address, a real port (not 0), WebSocket, and the peer ID.
        let parts = address.split(separator: "/").map(String.init)
        try #require(parts.count == 7, "\(address)")
        #expect(parts[0] == "ip4" && parts[1] == "127.0.0.1" && parts[2] == "tcp", "\(address)")
        #expect((UInt16(parts[3]) ?? 0) != 0 && parts[4] == "ws", "\(address)")
        #expect(parts[5] == "p2p" && parts[6] == peerID && peerID.hasPrefix("12D3KooW"), "\(address) vs \(peerID)")
        #expect(lines.contains("dial: \(address)"), "\(lines)")
        #expect(lines.contains("  ipfs swarm connect \(address)"), "\(lines)")

        #expect(lines.contains { $0.hasPrefix("serving \(manifest.fixtures.count) fixtures from \(manifestPath)") })
        for fixture in manifest.fixtures {
            #expect(lines.contains { $0.contains(" \(fixture.name) ") && $0.contains(" \(fixture.root) ") },
                    "\(fixture.name) \(fixture.root) not listed: \(lines)")
            let fetch = fixture.sha256 != nil ? "  ipfs cat \(fixture.root) > \(fixture.name).bin"
                                              : "  ipfs get \(fixture.root) -o \(fixture.name)"
            #expect(lines.contains(fetch), "missing `\(fetch)`: \(lines)")
            for extra in fixture.roots.dropFirst() {
                #expect(lines.contains { $0.contains(extra) && $0.contains("also a root") }, "\(extra): \(lines)")
                #expect(lines.contains { $0.hasPrefix("  ipfs block get \(extra) ") }, "\(extra): \(lines)")
            }
        }
        let directoryFixture = try #require(manifest.fixture(named: "directory"))
        #expect(directoryFixture.root == "QmZTc5SrFtJHGM3UxQjQiFZ5fxGVzsf1UY6S2HUixq8sm6")
        #expect(lines.contains("  ipfs block get \(directoryFixture.roots[1]) > raw-block.bin"), "\(lines)")
        #expect(serve.isRunning, "the banner is printed while serving")
    }

    @Test func unspecifiedBindAddressesAreShownAsLoopback() throws {
        let manifest = try JSONDecoder().decode(FixtureManifest.self, from: Data(#"{"version":1,"fixtures":[]}"#.utf8))
        let lines = ServeBanner.lines(manifest: manifest, manifestPath: "f.json", addresses: [
            "/ip4/0.0.0.0/tcp/4001/ws/p2p/12D3KooWx", "/ip6/::/tcp/4001/ws/p2p/12D3KooWx",
            "/ip4/10.1.2.3/tcp/4001/ws/p2p/12D3KooWx",
        ])
        #expect(lines == [
            "serving 0 fixtures from f.json:",
            "dial: /ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWx",
            "dial: /ip6/::1/tcp/4001/ws/p2p/12D3KooWx",
            "dial: /ip4/10.1.2.3/tcp/4001/ws/p2p/12D3KooWx",
            "fetch with kubo (with `ipfs daemon` running, in another terminal):",
            "  ipfs swarm connect /ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWx",
        ])
    }

    @Test(.timeLimit(.minutes(1))) func unreadablePrintRootsFileIsRefusedUpFront() async throws {
        let directory = try TestDirectory(name: "serve-banner-bad")
        defer { directory.remove() }
        let store = directory.path("store")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        let serve = try ManagedProcess(
            name: "serve", executable: InteropEnvironment.edgeswapBinary(),
            arguments: ["serve", "--store", store.path, "--listen", "/ip4/127.0.0.1/tcp/0/ws",
                        "--print-roots", directory.path("nope.json").path],
            directory: directory)
        #expect(try await serve.waitForExit(timeout: .seconds(30)) != 0)
        #expect(serve.stderr().contains("--print-roots"), "\(serve.stderr())")
    }
}
