import EdgeswapTestSupport
import Foundation
import Testing

/// `edgeswap serve`'s settings: every one is explained by `--help`, and a bad value is refused before anything
/// starts, naming the option.
@Suite struct ServeOptionsTests {
    private func edgeswap(_ arguments: [String], in directory: TestDirectory) async throws -> ManagedProcess {
        let process = try ManagedProcess(name: "edgeswap-\(arguments.count)-\(UUID().uuidString.prefix(4))",
                                         executable: InteropEnvironment.edgeswapBinary(), arguments: arguments,
                                         directory: directory)
        _ = try await process.waitForExit(timeout: .seconds(30))
        return process
    }

    @Test func helpExplainsEverySetting() async throws {
        let directory = try TestDirectory(name: "serve-help")
        defer { directory.remove() }
        let help = try await edgeswap(["serve", "--help"], in: directory).stdout()
        for option in ["--store", "--s3-endpoint", "--bucket", "--carpark-bucket", "--s3-retries", "--redis",
                       "--scope-ttl", "--index-ttl", "--listen", "--announce", "--max-connections",
                       "--tcp-keepalive", "--admin-listen", "--max-wants-per-message", "--max-wants-per-peer",
                       "--have-as-block-max", "--max-block-size", "--message-target-size", "--index-cache-mib",
                       "--coalesce-gap", "--max-coalesced-read", "--negative-cache-ttl", "--location-cache-ttl",
                       "--quota-subrequests", "--quota-bytes", "--quota-window", "--quota-action",
                       "--s3-access-key-id"] {
            #expect(help.contains(option), "serve --help lacks \(option)")
        }
        // Every option line carries an explanation (on its line or the next).
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (index, line) in lines.enumerated() where line.hasPrefix("  --") {
            let words = line.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true)
            let explainedHere = words.count > 2
            let explainedNext = index + 1 < lines.count && lines[index + 1].hasPrefix("        ")
            #expect(explainedHere || explainedNext, "no help text for \(line)")
        }
    }

    @Test(arguments: [
        (["--max-block-size", "3000000"], "--max-block-size"),
        (["--message-target-size", "4194304"], "--message-target-size"),
        (["--lookup-batch", "0"], "--lookup-batch"),
        (["--redis", "http://x"], "--redis"),
        (["--s3-endpoint", "http://127.0.0.1:1"], "--bucket"),
        (["--admin-listen", "nope"], "--admin-listen"),
        (["--quota-action", "shout"], "--quota-action"),
        (["--quota-bytes", "-1"], "--quota-bytes"),
    ])
    func badSettingsAreRefusedUpFront(extra: [String], named: String) async throws {
        let directory = try TestDirectory(name: "serve-bad-option")
        defer { directory.remove() }
        let store = directory.path("store")
        try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
        var arguments = ["serve", "--listen", "/ip4/127.0.0.1/tcp/0/ws"] + extra
        if !extra.contains("--s3-endpoint") { arguments += ["--store", store.path] }
        let process = try await edgeswap(arguments, in: directory)
        let status = try await process.waitForExit(timeout: .seconds(5))
        #expect(status != 0)
        #expect(process.stderr().contains(named), "\(extra): \(process.stderr())")
        #expect(!process.stdout().contains("listening"), "nothing may start")
    }
}
