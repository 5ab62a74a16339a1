import ArgumentParser
import EdgeswapServer

/// `edgeswap fixtures --output DIR`: writes the deterministic test fixtures (see `FixtureGenerator`).
struct FixturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fixtures",
        abstract: "Write the deterministic fixture files, their CARs and fixtures.json.",
        discussion: """
            The same bytes on every run (seeded generator). A directory that already holds a matching set \
            (fixtures.json plus every file with its recorded size and sha2-256) is left as it is.
            """)

    @Option(name: .long, help: "Directory to write into (created if missing).")
    var output: String

    @Option(name: .customLong("synthetic-mib"), help: ArgumentHelp(
        "Instead of the test fixtures, write one N MiB file fixture (cidv0-<N>mib: CIDv0, 256 KiB leaves) for benchmarks.",
        discussion: "Use its own --output directory: it has its own fixtures.json."))
    var syntheticMiB: Int?

    func validate() throws {
        if let syntheticMiB, !(1...4096).contains(syntheticMiB) {
            throw ValidationError("--synthetic-mib must be between 1 and 4096")
        }
    }

    func run() throws {
        let outcome = try syntheticMiB.map { try FixtureGenerator.runSynthetic(directory: output, mebibytes: $0) { print($0) } }
            ?? FixtureGenerator.run(directory: output) { line in print(line) }
        for fixture in outcome.manifest.fixtures {
            print("\(fixture.name)\t\(fixture.roots.joined(separator: ","))\t\(fixture.car)\t\(fixture.blocks) blocks")
        }
        if !outcome.wrote { print("nothing to do") }
    }
}
