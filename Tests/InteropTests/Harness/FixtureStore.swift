import EdgeswapTestSupport
import Foundation

/// The parts of `fixtures.json` (written by `edgeswap fixtures`) the interop tests read; the test target
/// links none of our modules, so this mirrors `FixtureManifest` by hand.
struct FixtureManifestFile: Decodable, Sendable {
    struct Source: Decodable, Sendable {
        /// Relative to the fixtures directory, e.g. `sources/directory/hello.txt`.
        let path: String
        let size: Int
        let sha256: String
        /// The file's CID inside the fixture.
        let cid: String
    }

    struct Fixture: Decodable, Sendable {
        let name: String
        let summary: String
        let root: String
        let roots: [String]
        let sources: [Source]
        /// Set for single-file fixtures.
        let sha256: String?
        let car: String
        /// Blocks in the fixture's CAR.
        let blocks: Int
    }

    let fixtures: [Fixture]

    func fixture(_ name: String) throws -> Fixture {
        guard let fixture = fixtures.first(where: { $0.name == name }) else {
            throw InteropHarnessError("fixtures.json has no fixture \(name): \(fixtures.map(\.name))")
        }
        return fixture
    }
}

/// Runs the built `edgeswap` binary to completion (with `environment` added to this process's) and returns its
/// stdout; any exit status in `expectStatus` is accepted, any other fails with the process's output.
@discardableResult
func runEdgeswap(_ name: String, _ arguments: [String], directory: TestDirectory,
                 environment: [String: String] = [:], expectStatus: Set<Int32> = [0],
                 timeout: Duration = .seconds(300)) async throws -> String {
    let process = try ManagedProcess(name: name, executable: InteropEnvironment.edgeswapBinary(),
                                     arguments: arguments, environment: environment, directory: directory)
    return try await withManagedProcess(process) { process in
        let status = try await process.waitForExit(timeout: timeout)
        guard expectStatus.contains(status) else {
            throw process.failure("edgeswap \(arguments.first ?? "") exited with \(status), expected \(expectStatus.sorted())")
        }
        return process.stdout()
    }
}

/// What `edgeswap load --json` prints (one JSON object on the last line).
struct LoadReport: Decodable, Sendable {
    let clients: Int
    let rounds: Int
    let blocks: Int
    let bytes: Int
    let seconds: Double
    let errors: Int
    let dont_haves: Int
    let haves: Int
    let duplicates: Int
    let latency_p50_ms: Double?
    let latency_p99_ms: Double?
    let mb_per_s: Double
    let error_samples: [String]
}

/// Runs `edgeswap load TARGET ARGUMENTS --json` and decodes its report. Exit status 1 (the run had errors) is
/// accepted: the report says what they were.
func runLoad(_ target: String, _ arguments: [String], name: String, directory: TestDirectory,
             expectStatus: Set<Int32> = [0, 1]) async throws -> LoadReport {
    let output = try await runEdgeswap(name, ["load", target] + arguments + ["--json"], directory: directory,
                                       expectStatus: expectStatus)
    guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
        throw InteropHarnessError("edgeswap load printed no report: \(output)")
    }
    return try JSONDecoder().decode(LoadReport.self, from: Data(line.utf8))
}

/// A fresh identity file from `edgeswap key new`.
func newKeyFile(_ name: String, in directory: TestDirectory, type: String = "ed25519") async throws -> String {
    let path = directory.path(name).path
    try await runEdgeswap("key-\(name)", ["key", "new", "--type", type, "--output", path], directory: directory)
    return path
}

/// The generated fixtures, made once per test process (the 20 MiB one takes a while in a debug build) into
/// `$TMPDIR/edgeswap-interop-fixtures`. `edgeswap fixtures` checks sizes and sha2-256 of what is there and
/// rewrites anything stale, so a later run reuses the directory. Tests only read it.
private actor SharedFixtures {
    static let shared = SharedFixtures()
    private var ready: Task<(String, FixtureManifestFile), any Error>?

    func get() async throws -> (path: String, manifest: FixtureManifestFile) {
        if ready == nil {
            ready = Task {
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-interop-fixtures").path
                let scratch = try TestDirectory(name: "fixtures-log")
                defer { scratch.remove() }
                try await runEdgeswap("fixtures", ["fixtures", "--output", path], directory: scratch)
                let manifest = try JSONDecoder().decode(
                    FixtureManifestFile.self, from: Data(contentsOf: URL(fileURLWithPath: path + "/fixtures.json")))
                return (path, manifest)
            }
        }
        return try await ready!.value
    }
}

/// A store with every fixture ingested and an Ed25519 identity, in a test's own directory (so a test may
/// damage its copy), plus a way to serve it.
struct FixtureStore {
    let directory: TestDirectory
    /// The shared fixtures directory (sources, CARs, fixtures.json).
    let fixturesPath: String
    let manifest: FixtureManifestFile
    let storePath: String
    let keyPath: String

    static func make(directory: TestDirectory) async throws -> FixtureStore {
        let (fixtures, manifest) = try await SharedFixtures.shared.get()
        let store = directory.path("store").path
        let key = directory.path("edgeswap.key").path
        try await runEdgeswap("ingest", ["ingest", "--store", store, "--quiet"]
                              + manifest.fixtures.map { fixtures + "/" + $0.car }, directory: directory)
        try await runEdgeswap("key-new", ["key", "new", "--type", "ed25519", "--output", key], directory: directory)
        return FixtureStore(directory: directory, fixturesPath: fixtures, manifest: manifest, storePath: store,
                            keyPath: key)
    }

    /// `edgeswap serve` on a fresh loopback /ws port, logging at debug level (tests read the reasons), with
    /// `extra` options.
    func serve(_ extra: [String] = [], processName: String = "edgeswap-serve") async throws
        -> (server: EdgeswapServe, address: String)
    {
        let server = try await EdgeswapServe.start(
            ["--store", storePath, "--key", keyPath, "--log-level", "debug",
             "--listen", "/ip4/127.0.0.1/tcp/\(try LoopbackPorts.allocate())/ws"] + extra,
            expectedListeners: 1, directory: directory, processName: processName)
        do {
            return (server, try server.listener(secure: false).multiaddr)
        } catch {
            server.process.terminate()
            throw error
        }
    }

    /// The bytes of a fixture source file.
    func source(_ path: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: fixturesPath + "/" + path))
    }
}
