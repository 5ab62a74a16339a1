import ArgumentParser
import EdgeswapLoad
import Foundation
import Libp2p
import Logging
import Multiformats

/// `edgeswap load`: a Bitswap load generator that fetches DAGs the way kubo does, from N clients at once.
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Fetch DAGs from a Bitswap server with N concurrent clients and report throughput and latency.",
        discussion: """
            Each client has its own connection and its own fresh Ed25519 identity. Per round it fetches every \
            --root the way kubo does: WANT_HAVE for the root, then WANT_BLOCK with sendDontHave for it and for \
            every link found by decoding dag-pb blocks (raw leaves end a branch), with at most --window wants \
            outstanding, and a CANCEL after each block. Every block is hashed and checked against its CID. \
            With --wantlist FILE the CIDs in FILE (one per line, # comments) are asked with WANT_BLOCK, without \
            traversal. Rounds repeat until --rounds per client are done or --duration seconds have passed \
            (both bounded); a round that takes longer than --round-timeout fails its client. \
            Exit status 1 if any error happened (bad block, DONT_HAVE is not an error, timeout, lost connection).
            """)

    @Argument(help: "The server: /ip4/HOST/tcp/PORT/ws or …/wss, optionally ending in /p2p/<peer id> (checked).")
    var target: String

    @Option(name: .long, help: "A DAG root to fetch; repeat for several.")
    var root: [String] = []

    @Option(name: .long, help: "Replay the CIDs in FILE (one per line) with WANT_BLOCK instead of traversing DAGs.")
    var wantlist: String?

    @Option(name: .long, help: "Concurrent clients (1…1024).")
    var clients: Int = 1

    @Option(name: .long, help: "Wants outstanding per client (1…10000).")
    var window: Int = 32

    @Option(name: .long, help: "Rounds per client (1…1000000). Default 1 unless --duration is given.")
    var rounds: Int?

    @Option(name: .long, help: "Seconds after which no client starts a new round (0 < s ≤ 86400).")
    var duration: Double?

    @Option(name: .customLong("round-timeout"), help: "Seconds one round may take before its client fails.")
    var roundTimeout: Double = 60

    @Option(name: .customLong("ca-file"), help: "PEM trust roots for /wss targets (default: system roots).")
    var caFile: String?

    @Flag(name: .customLong("no-cancel"), help: "Do not send a CANCEL after each block (kubo does).")
    var noCancel = false

    @Option(name: .long, help: ArgumentHelp(
        "Private key file (as `edgeswap key new` writes) for every client, instead of a fresh Ed25519 key each.",
        discussion: "With a fixed identity a run continues what an earlier run of the same peer started: the server (any instance sharing its Redis) remembers the CARs that peer's roots resolved to."))
    var key: String?

    @Option(name: .customLong("reset-after"), help: ArgumentHelp(
        "Misbehave: every round on a new connection, reset (TCP RST) once this many Bitswap messages have arrived, mid-transfer (1…1000000).",
        discussion: "For leak and soak tests: what peers that crash or are killed do to a server. Rounds count resets made."))
    var resetAfter: Int?

    @Flag(name: .long, help: "Print one JSON object instead of the text summary.")
    var json = false

    @Option(name: .customLong("log-level"), help: "Minimum level logged to stderr.")
    var logLevel: String = "error"

    func validate() throws {
        do {
            _ = try WebSocketMultiaddr(try Multiaddr(target))
        } catch {
            throw ValidationError("\(target): \(error)")
        }
        guard root.isEmpty != (wantlist == nil) else {
            throw ValidationError("give --root CID (one or more) or --wantlist FILE, not both")
        }
        guard (1...1024).contains(clients) else { throw ValidationError("--clients must be in 1…1024") }
        guard (1...10_000).contains(window) else { throw ValidationError("--window must be in 1…10000") }
        if let rounds, !(1...1_000_000).contains(rounds) { throw ValidationError("--rounds must be in 1…1000000") }
        if let duration, !(duration > 0 && duration <= 86_400) { throw ValidationError("--duration must be in (0, 86400]") }
        if let resetAfter, !(1...1_000_000).contains(resetAfter) {
            throw ValidationError("--reset-after must be in 1…1000000")
        }
        guard roundTimeout > 0 && roundTimeout <= 86_400 else { throw ValidationError("--round-timeout must be in (0, 86400]") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level \(logLevel) is not a level") }
    }

    /// The CIDs of a wantlist file: one per line; blank lines and `#` comments are skipped.
    static func readWantlist(_ path: String) throws -> [CID] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var cids: [CID] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first
                .map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if trimmed.isEmpty { continue }
            do {
                cids.append(try CID(string: trimmed))
            } catch {
                throw ValidationError("\(path):\(number + 1): \(trimmed): \(error)")
            }
        }
        guard !cids.isEmpty else { throw ValidationError("\(path): no CIDs") }
        return cids
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .error
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let cids: [CID]
        var session = BitswapFetchSession.Configuration(window: window, sendCancels: !noCancel)
        if let wantlist {
            cids = try Self.readWantlist(wantlist)
            session.traverse = false
            session.rootWantHave = false
        } else {
            cids = try root.map { text in
                do { return try CID(string: text) } catch { throw ValidationError("--root \(text): \(error)") }
            }
        }
        var configuration = LoadConfiguration(
            target: try Multiaddr(target), clients: clients, cids: cids, session: session,
            rounds: rounds ?? (duration == nil ? 1 : nil),
            duration: duration.map { .nanoseconds(Int64($0 * 1e9)) },
            roundTimeout: .nanoseconds(Int64(roundTimeout * 1e9)), trustRootsFile: caFile,
            identity: try key.map { try PrivateKey(contentsOfFile: $0) })
        configuration.resetAfterMessages = resetAfter
        let report = try await LoadRunner.run(configuration)
        if json {
            writeStandardOutput(report.json())
        } else {
            print(report.text(), terminator: "")
        }
        if report.errors > 0 { throw ExitCode.failure }
    }
}
