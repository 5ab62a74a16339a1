import EdgeswapTestSupport
import Foundation
import Testing

/// Proves the harness against real third-party peers before edgeswap serves anything: kubo v0.22
/// (go-libp2p 0.29.2, boxo bitswap) serving, kubo and py-libp2p 0.8.1 fetching, over /ws and /wss.
@Suite struct RealPeerTests {
    /// A fresh dir with a 1.3 MB file (6 blocks as raw-leaves) and a 700 B file (one raw block).
    private func content(_ directory: TestDirectory) throws -> (large: (url: URL, bytes: Data), small: (url: URL, bytes: Data)) {
        (try directory.randomFile("large.bin", count: 1_300_000, seed: 0x5EED_0001),
         try directory.randomFile("small.bin", count: 700, seed: 0x5EED_0002))
    }

    /// The bytes a fetch wrote for `cid`.
    private func fetched(_ report: FetchReport, _ cid: String) throws -> Data {
        let item = try #require(report.results?.first { $0.cid == cid }, "no result for \(cid): \(report)")
        #expect(item.ok, "\(item)")
        return try Data(contentsOf: URL(fileURLWithPath: try #require(item.path)))
    }

    @Test func kuboFetchesFromKuboOverWebSocket() async throws {
        let directory = try TestDirectory(name: "kubo-kubo-ws")
        defer { directory.remove() }
        let (large, small) = try content(directory)
        let server = try await Kubo.serve(identity: .ed25519, addFiles: [large.url],
                                          rawDAGFiles: [large.url, small.url], directory: directory)
        defer { server.process.terminate() }
        #expect(server.info.peerID.hasPrefix("12D3KooW"))
        #expect(server.info.maddr == "/ip4/127.0.0.1/tcp/\(server.port)/ws/p2p/\(server.info.peerID)")
        let cids = server.info.cids.map(\.cid)
        #expect(cids.count == 3)
        #expect(server.info.cids.first { $0.kind == "addfile" }?.cid.hasPrefix("Qm") == true)

        let report = try await Kubo.fetch(cids, from: server.info.maddr, identity: .rsa, directory: directory)
        #expect(report.ok, "\(report)")
        #expect(report.connected)
        for served in server.info.cids {
            let expected = served.file == large.url.path ? large.bytes : small.bytes
            #expect(try fetched(report, served.cid) == expected, "\(served.kind) \(served.cid)")
        }
    }

    @Test func pylibp2pPingsAndFetchesFromKubo() async throws {
        let directory = try TestDirectory(name: "py-kubo-ws")
        defer { directory.remove() }
        let (large, small) = try content(directory)
        let server = try await Kubo.serve(rawDAGFiles: [large.url, small.url], directory: directory)
        defer { server.process.terminate() }

        let ping = try await PyLibp2p.ping(server.info.maddr, count: 3, directory: directory)
        #expect(ping.ok, "\(ping)")
        #expect(ping.security == "/noise" && ping.muxer == "/yamux/1.0.0")
        #expect(ping.rttsMilliseconds?.count == 3)
        #expect(ping.rttsMilliseconds?.allSatisfy { $0 > 0 } == true)

        let cids = server.info.cids.map(\.cid)
        let report = try await PyLibp2p.fetch(cids, from: server.info.maddr, directory: directory)
        #expect(report.ok, "\(report)")
        #expect(try fetched(report, cids[0]) == large.bytes)
        #expect(try fetched(report, cids[1]) == small.bytes)
    }

    /// kubo can only dial /wss, so a TLS-terminating proxy in front of its /ws listener stands in for
    /// edgeswap's /wss: proves the test CA, SSL_CERT_FILE-style trust (`--ca-file`) and py-libp2p's wss.
    @Test func kuboAndPylibp2pOverSecureWebSocketWithTestCA() async throws {
        let directory = try TestDirectory(name: "wss")
        defer { directory.remove() }
        let (large, _) = try content(directory)
        let certificates = try await TestTLS.makeCertificates(directory: directory)
        let server = try await Kubo.serve(rawDAGFiles: [large.url], directory: directory)
        defer { server.process.terminate() }
        let proxy = try await TestTLS.startProxy(to: server.port, certificates: certificates, directory: directory)
        defer { proxy.process.terminate() }
        let wss = "/ip4/127.0.0.1/tcp/\(proxy.port)/wss/p2p/\(server.info.peerID)"
        let cid = server.info.cids[0].cid

        let trusted = try await Kubo.fetch([cid], from: wss, caFile: certificates.ca, directory: directory)
        #expect(trusted.ok, "\(trusted)")
        #expect(try fetched(trusted, cid) == large.bytes)

        // Without the CA the same dial must fail: the certificate really is checked.
        let untrusted = try await Kubo.connect(to: wss, name: "kubo-untrusted", directory: directory)
        #expect(!untrusted.connected && !untrusted.ok, "\(untrusted)")

        let ping = try await PyLibp2p.ping(wss, count: 2, caFile: certificates.ca, directory: directory)
        #expect(ping.ok, "\(ping)")
        #expect(ping.rttsMilliseconds?.count == 2)
    }

    @Test func kuboConnectReportsFailureWhenNobodyListens() async throws {
        let directory = try TestDirectory(name: "kubo-refused")
        defer { directory.remove() }
        let port = try LoopbackPorts.allocate()
        // A syntactically valid peer ID that nobody has: the dial is refused at the TCP level.
        let peer = "/ip4/127.0.0.1/tcp/\(port)/ws/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
        let report = try await Kubo.connect(to: peer, directory: directory)
        #expect(!report.connected && !report.listed && !report.ok, "\(report)")
        #expect(report.error != nil)
    }
}
