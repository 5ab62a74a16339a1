import EdgeswapTestSupport
import Foundation
import Testing

/// Acceptance tests for "libp2p over WebSocket": real kubo v0.22 (go-libp2p 0.29.2) and py-libp2p 0.8.1
/// dial `edgeswap serve` over /ws and over /wss terminated by edgeswap itself, in a loopback-only namespace.
@Suite(.serialized) struct Libp2pInteropTests {
    /// Makes an identity with the built binary (`edgeswap key new`), as an operator would.
    private func makeKey(_ type: String, directory: TestDirectory) async throws -> (path: String, peerID: String) {
        let path = directory.path("edgeswap-\(type).key").path
        let process = try ManagedProcess(name: "key-new-\(type)", executable: InteropEnvironment.edgeswapBinary(),
                                         arguments: ["key", "new", "--type", type, "--output", path],
                                         environment: [:], directory: directory)
        let status = try await process.waitForExit(timeout: .seconds(60))
        guard status == 0 else { throw process.failure("key new exited with \(status)") }
        let peerID = process.stdout().trimmingCharacters(in: .whitespacesAndNewlines)
        return (path, peerID)
    }

    /// Starts `edgeswap serve` on a fresh /ws port (and a /wss one with `certificates`).
    private func serve(key: String, certificates: TestCertificates? = nil, announce: [String] = [],
                       directory: TestDirectory) async throws -> EdgeswapServe {
        let store = directory.path("store")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        var arguments = ["--store", store.path, "--key", key, "--log-level", "debug",
                         "--listen", "/ip4/127.0.0.1/tcp/\(try LoopbackPorts.allocate())/ws"]
        arguments += announce.flatMap { ["--announce", $0] }
        if let certificates {
            arguments += ["--listen", "/ip4/127.0.0.1/tcp/\(try LoopbackPorts.allocate())/wss",
                          "--tls-cert", certificates.cert, "--tls-key", certificates.key]
        }
        return try await EdgeswapServe.start(arguments, expectedListeners: certificates == nil ? 1 : 2,
                                             directory: directory)
    }

    @Test(arguments: [Kubo.Identity.ed25519, .rsa])
    func kuboConnectsOverWebSocket(identity: Kubo.Identity) async throws {
        let directory = try TestDirectory(name: "kubo-edgeswap-ws-\(identity.rawValue)")
        defer { directory.remove() }
        let key = try await makeKey("ed25519", directory: directory)
        let server = try await serve(key: key.path, directory: directory)
        defer { server.process.terminate() }
        let listener = try server.listener(secure: false)
        #expect(listener.peerID == key.peerID)
        #expect(listener.multiaddr == "/ip4/127.0.0.1/tcp/\(listener.port)/ws/p2p/\(key.peerID)")

        let report = try await Kubo.connect(to: listener.multiaddr, identity: identity, directory: directory)
        #expect(report.ok, "\(report)\n\(server.process.stderr())")
        #expect(report.connected)
        #expect(report.listed, "kubo peers: \(report.peers)")
        print("kubo (\(identity.rawValue)) connected over /ws in \(report.seconds) s")
    }

    /// Identify seen from kubo's side: after Connect (which waits for identify) kubo's peerstore holds the
    /// address edgeswap announced, which kubo can only have learnt from edgeswap's identify message.
    @Test func kuboLearnsTheAnnouncedAddressThroughIdentify() async throws {
        let directory = try TestDirectory(name: "kubo-edgeswap-identify")
        defer { directory.remove() }
        let key = try await makeKey("ed25519", directory: directory)
        let announced = "/dns4/edge.example.com/tcp/443/wss"
        let server = try await serve(key: key.path, announce: [announced], directory: directory)
        defer { server.process.terminate() }
        let report = try await Kubo.connect(to: try server.listener(secure: false).multiaddr, directory: directory)
        #expect(report.ok && report.listed, "\(report)\n\(server.process.stderr())")
        #expect(report.addrs?.contains(announced) == true, "kubo's addresses for edgeswap: \(report.addrs ?? [])")
    }

    @Test func kuboConnectsToAnRSAEdgeswap() async throws {
        // Hoverboard's staging identity is RSA: a non-Ed25519 server key must work too.
        let directory = try TestDirectory(name: "kubo-edgeswap-rsa")
        defer { directory.remove() }
        let key = try await makeKey("rsa", directory: directory)
        #expect(key.peerID.hasPrefix("Qm"))
        let server = try await serve(key: key.path, directory: directory)
        defer { server.process.terminate() }
        let report = try await Kubo.connect(to: try server.listener(secure: false).multiaddr, identity: .ed25519,
                                            directory: directory)
        #expect(report.ok && report.listed, "\(report)\n\(server.process.stderr())")
    }

    @Test(arguments: [Kubo.Identity.ed25519, .rsa])
    func kuboConnectsOverSecureWebSocket(identity: Kubo.Identity) async throws {
        let directory = try TestDirectory(name: "kubo-edgeswap-wss-\(identity.rawValue)")
        defer { directory.remove() }
        let certificates = try await TestTLS.makeCertificates(directory: directory)
        let key = try await makeKey("ed25519", directory: directory)
        let server = try await serve(key: key.path, certificates: certificates, directory: directory)
        defer { server.process.terminate() }
        let listener = try server.listener(secure: true)
        #expect(listener.multiaddr.contains("/wss/p2p/"))

        let report = try await Kubo.connect(to: listener.multiaddr, identity: identity, caFile: certificates.ca,
                                            directory: directory)
        #expect(report.ok, "\(report)\n\(server.process.stderr())")
        #expect(report.connected && report.listed, "kubo peers: \(report.peers)")
        print("kubo (\(identity.rawValue)) connected over /wss in \(report.seconds) s")
    }

    @Test func pylibp2pPingsEdgeswap() async throws {
        let directory = try TestDirectory(name: "py-edgeswap-ping")
        defer { directory.remove() }
        let certificates = try await TestTLS.makeCertificates(directory: directory)
        let key = try await makeKey("ed25519", directory: directory)
        let server = try await serve(key: key.path, certificates: certificates, directory: directory)
        defer { server.process.terminate() }

        for secure in [false, true] {
            let address = try server.listener(secure: secure).multiaddr
            let ping = try await PyLibp2p.ping(address, count: 5, caFile: secure ? certificates.ca : nil,
                                               name: "pylibp2p-ping-\(secure ? "wss" : "ws")", directory: directory)
            #expect(ping.ok, "\(ping)\n\(server.process.stderr())")
            #expect(ping.security == "/noise")
            #expect(ping.muxer == "/yamux/1.0.0" || ping.muxer == "/mplex/6.7.0")
            let rtts = try #require(ping.rttsMilliseconds)
            #expect(rtts.count == 5)
            #expect(rtts.allSatisfy { $0 > 0 && $0 < 5_000 })
            print("py-libp2p over \(secure ? "/wss" : "/ws"): connect \(ping.connectSeconds ?? -1) s, "
                  + "muxer \(ping.muxer ?? "?"), RTTs ms \(rtts)")
        }
    }
}
