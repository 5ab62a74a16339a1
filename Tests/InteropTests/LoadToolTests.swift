import EdgeswapTestSupport
import Foundation
import Testing

/// `edgeswap load` against a real `edgeswap serve` (both the built binary) over /ws in a loopback-only
/// namespace: the counts it reports must be exact, and every block it counts was hash-checked by it.
/// Expected counts come from the fixture CAR itself, parsed here independently of our modules.
@Suite(.serialized) struct LoadToolTests {
    /// The parts of `fixtures.json` this test reads.
    private struct Manifest: Decodable {
        struct Fixture: Decodable {
            let name: String
            let root: String
            let blocks: Int
            let car: String
        }
        let fixtures: [Fixture]
    }

    /// (blocks, total block bytes) of a CARv1 file: each section is `uvarint(len) ‖ CID ‖ block`.
    private func carBlockSizes(_ path: String) throws -> (blocks: Int, bytes: Int) {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var position = 0
        func uvarint() throws -> Int {
            var value = 0
            var shift = 0
            while true {
                guard position < data.count, shift < 63 else { throw InteropHarnessError("bad varint in \(path)") }
                let byte = data[position]
                position += 1
                value |= Int(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }
        let headerLength = try uvarint()
        position += headerLength
        var blocks = 0
        var bytes = 0
        while position < data.count {
            let sectionLength = try uvarint()
            let sectionEnd = position + sectionLength
            if data[position] == 0x12 && data[position + 1] == 0x20 {
                position += 34  // CIDv0
            } else {
                _ = try uvarint(); _ = try uvarint(); _ = try uvarint()  // version, codec, hash code
                let digestLength = try uvarint()
                position += digestLength
            }
            bytes += sectionEnd - position
            blocks += 1
            position = sectionEnd
        }
        return (blocks, bytes)
    }

    @Test func twoClientsFetchThe20MiBFixtureWithExactCounts() async throws {
        let directory = try TestDirectory(name: "edgeswap-load")
        defer { directory.remove() }
        let fixtures = directory.path("fixtures").path
        let store = directory.path("store").path
        let key = directory.path("edgeswap.key").path
        try await runEdgeswap("fixtures", ["fixtures", "--output", fixtures], directory: directory)
        let manifest = try JSONDecoder().decode(
            Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/fixtures.json")))
        let fixture = try #require(manifest.fixtures.first { $0.name == "cidv0-20mib" })
        let expected = try carBlockSizes(fixtures + "/" + fixture.car)
        #expect(expected.blocks == fixture.blocks)
        #expect(expected.blocks == 81)
        try await runEdgeswap("ingest", ["ingest", "--store", store, "--quiet", fixtures + "/" + fixture.car],
                               directory: directory)
        try await runEdgeswap("key-new", ["key", "new", "--type", "ed25519", "--output", key], directory: directory)
        let server = try await EdgeswapServe.start(
            ["--store", store, "--key", key, "--listen", "/ip4/127.0.0.1/tcp/\(try LoopbackPorts.allocate())/ws"],
            expectedListeners: 1, directory: directory)
        defer { server.process.terminate() }
        let target = try server.listener(secure: false).multiaddr

        // Two clients, two rounds each, a small window so the traversal has to queue links.
        let report = try await runLoad(target, ["--root", fixture.root, "--clients", "2", "--rounds", "2", "--window", "8"],
                                       name: "load", directory: directory, expectStatus: [0])
        #expect(report.errors == 0, "\(report.error_samples)\n\(server.process.stderr())")
        #expect(report.clients == 2)
        #expect(report.rounds == 4)
        #expect(report.blocks == 4 * expected.blocks)
        #expect(report.bytes == 4 * expected.bytes)
        #expect(report.haves == 4, "one HAVE per root WANT_HAVE")
        #expect(report.dont_haves == 0)
        #expect(report.duplicates == 0)
        #expect(report.seconds > 0 && report.mb_per_s > 0)
        let p50 = try #require(report.latency_p50_ms)
        let p99 = try #require(report.latency_p99_ms)
        #expect(p50 > 0 && p50 <= p99)

        // Wantlist replay: the root (no traversal) and a CID the store lacks, which must come back DONT_HAVE.
        // The missing one is the CIDv1 raw block of the 11 bytes "hello world" (not in any fixture).
        let wantlist = directory.path("wantlist.txt")
        try "# replayed wants\n\(fixture.root)\nbafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e\n"
            .write(to: wantlist, atomically: true, encoding: .utf8)
        let replayed = try await runLoad(target, ["--wantlist", wantlist.path, "--clients", "2"],
                                         name: "load-wantlist", directory: directory, expectStatus: [0])
        #expect(replayed.errors == 0, "\(replayed.error_samples)")
        #expect(replayed.blocks == 2)
        #expect(replayed.dont_haves == 2)
        #expect(replayed.haves == 0)
    }

    /// A wrong /p2p/ID in the target: the Noise handshake must refuse the server, and the tool must say so
    /// and exit 1.
    @Test func wrongPeerIDIsRefused() async throws {
        let directory = try TestDirectory(name: "edgeswap-load-peerid")
        defer { directory.remove() }
        let store = directory.path("store")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        let key = directory.path("edgeswap.key").path
        try await runEdgeswap("key-new", ["key", "new", "--type", "ed25519", "--output", key], directory: directory)
        let server = try await EdgeswapServe.start(
            ["--store", store.path, "--key", key, "--listen", "/ip4/127.0.0.1/tcp/\(try LoopbackPorts.allocate())/ws"],
            expectedListeners: 1, directory: directory)
        defer { server.process.terminate() }
        let listener = try server.listener(secure: false)
        let other = "12D3KooWP4CXb2uRaxUrUx4ea6T6vnvcs4VgMVkZFD6eiT8vJF9b"
        try #require(other != listener.peerID)
        let target = listener.multiaddr.replacingOccurrences(of: listener.peerID, with: other)
        let report = try await runLoad(target, ["--root", "QmVH7W8i9GnAiswiiFxznvhiEK3aWuoxS6BJuuBrJWtuam"],
                                       name: "load-wrong-id", directory: directory, expectStatus: [1])
        #expect(report.errors == 1)
        #expect(report.blocks == 0)
        #expect(report.error_samples.first?.contains("cannot connect") == true, "\(report.error_samples)")
    }
}
