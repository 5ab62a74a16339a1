import CAR
import Foundation
import Multiformats
import UnixFS

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so fixture bytes are the same on every
/// machine and run; nothing here asks the OS for randomness.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` bytes from a generator seeded with `seed` (little-endian words).
    public static func bytes(count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var i = 0
            while i < count {
                var word = rng.next()
                for _ in 0..<min(8, count - i) {
                    buffer[i] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    i += 1
                }
            }
            initialized = count
        }
    }
}

/// `fixtures.json`: what `edgeswap fixtures` wrote. Paths are relative to the fixtures directory.
public struct FixtureManifest: Codable, Equatable, Sendable {
    /// Bumped whenever the generator's output changes, so old directories are regenerated.
    public static let currentVersion = 1

    public struct Source: Codable, Equatable, Sendable {
        public var path: String
        public var size: UInt64
        public var sha256: String
        /// The CID this file has inside the fixture (its UnixFS root, or the raw block).
        public var cid: String
    }

    public struct Fixture: Codable, Equatable, Sendable {
        public var name: String
        public var summary: String
        /// The root a client asks for first (also `roots[0]`).
        public var root: String
        /// Every root in the CAR header.
        public var roots: [String]
        public var sources: [Source]
        /// Total bytes of the sources.
        public var size: UInt64
        /// sha2-256 of the source, for single-file fixtures.
        public var sha256: String?
        public var car: String
        public var carSize: UInt64
        public var carSHA256: String
        public var blocks: Int
    }

    public var version: Int
    public var fixtures: [Fixture]

    public func fixture(named name: String) -> Fixture? { fixtures.first { $0.name == name } }
}

/// Writes the deterministic fixtures: source files and one CARv1 per fixture, then `fixtures.json`.
///
/// | name | content | DAG |
/// |---|---|---|
/// | `cidv0-20mib` | 20 MiB | kubo default: CIDv0, dag-pb leaves (80 leaves under one root) |
/// | `rawleaves-3mib` | 3 MiB + 12,345 B | CIDv1, raw leaves (`bafkrei…`), dag-pb parents |
/// | `blake3-2mib` | 2 MiB + 777 B | CIDv1, BLAKE3: raw leaves `bafkr4…`, dag-pb parents |
/// | `directory` | 4 files, one of 3 chunks | kubo default directory; second root: one raw block |
public enum FixtureGenerator {
    public static let manifestName = "fixtures.json"

    /// What one run did.
    public struct Outcome: Sendable {
        public let manifest: FixtureManifest
        /// False when everything was already present and matched (nothing was written).
        public let wrote: Bool
    }

    /// Generates the fixtures into `directory`, or does nothing if a matching set is already there.
    public static func run(directory: String, log: (String) -> Void = { _ in }) throws -> Outcome {
        try LocalFiles.makeDirectories(directory)
        if let existing = try? loadManifest(directory: directory), isIntact(existing, directory: directory) {
            log("fixtures in \(directory) are up to date (\(existing.fixtures.count) fixtures)")
            return Outcome(manifest: existing, wrote: false)
        }
        var fixtures: [FixtureManifest.Fixture] = []
        fixtures.append(try fileFixture(
            name: "cidv0-20mib", summary: "20 MiB file, kubo default (CIDv0, dag-pb leaves)",
            size: 20 << 20, seed: 0xED6E_0001, options: .kuboDefault, directory: directory, log: log))
        fixtures.append(try fileFixture(
            name: "rawleaves-3mib", summary: "3 MiB file, CIDv1 raw leaves",
            size: (3 << 20) + 12_345, seed: 0xED6E_0002, options: .cidV1RawLeaves, directory: directory, log: log))
        fixtures.append(try fileFixture(
            name: "blake3-2mib", summary: "2 MiB file, CIDv1 BLAKE3 raw leaves",
            size: (2 << 20) + 777, seed: 0xED6E_0003, options: .blake3RawLeaves, directory: directory, log: log))
        fixtures.append(try directoryFixture(directory: directory, log: log))
        let manifest = FixtureManifest(version: FixtureManifest.currentVersion, fixtures: fixtures)
        try writeManifest(manifest, directory: directory, log: log)
        return Outcome(manifest: manifest, wrote: true)
    }

    /// The name of the one fixture `runSynthetic` writes.
    public static func syntheticName(mebibytes: Int) -> String { "cidv0-\(mebibytes)mib" }

    /// Writes one large file fixture, `cidv0-<N>mib` (N MiB of seeded bytes imported as kubo does by default:
    /// CIDv0, 256 KiB dag-pb leaves), with its own fixtures.json, for benchmarks that need more blocks than
    /// the test fixtures have. Does nothing if a matching set is already there.
    public static func runSynthetic(directory: String, mebibytes: Int, log: (String) -> Void = { _ in }) throws
        -> Outcome
    {
        let name = syntheticName(mebibytes: mebibytes)
        try LocalFiles.makeDirectories(directory)
        if let existing = try? loadManifest(directory: directory), isIntact(existing, directory: directory, names: [name]) {
            log("fixture \(name) in \(directory) is up to date")
            return Outcome(manifest: existing, wrote: false)
        }
        let fixture = try fileFixture(
            name: name, summary: "\(mebibytes) MiB file, kubo default (CIDv0, dag-pb leaves), for benchmarks",
            size: mebibytes << 20, seed: 0xED6E_1000 &+ UInt64(mebibytes), options: .kuboDefault,
            directory: directory, log: log)
        let manifest = FixtureManifest(version: FixtureManifest.currentVersion, fixtures: [fixture])
        try writeManifest(manifest, directory: directory, log: log)
        return Outcome(manifest: manifest, wrote: true)
    }

    private static func writeManifest(_ manifest: FixtureManifest, directory: String, log: (String) -> Void) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try LocalFiles.writeAtomically(Array(try encoder.encode(manifest)) + [0x0a],
                                       to: directory + "/" + manifestName)
        log("wrote \(directory)/\(manifestName)")
    }

    /// Reads `fixtures.json`.
    public static func loadManifest(directory: String) throws -> FixtureManifest {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + manifestName))
        return try JSONDecoder().decode(FixtureManifest.self, from: data)
    }

    /// Whether every file the manifest names is there with its recorded size and sha2-256, and the manifest
    /// is from this generator version. Sizes are checked first so a missing or cut file costs no hashing.
    public static func isIntact(_ manifest: FixtureManifest, directory: String,
                                names: [String] = ["cidv0-20mib", "rawleaves-3mib", "blake3-2mib", "directory"]) -> Bool {
        guard manifest.version == FixtureManifest.currentVersion, manifest.fixtures.map(\.name) == names
        else { return false }
        var files: [(path: String, size: UInt64, sha256: String)] = []
        for fixture in manifest.fixtures {
            files.append((fixture.car, fixture.carSize, fixture.carSHA256))
            files += fixture.sources.map { ($0.path, $0.size, $0.sha256) }
        }
        guard files.allSatisfy({ LocalFiles.size(of: directory + "/" + $0.path) == $0.size }) else { return false }
        return files.allSatisfy { file in
            guard let (digest, _) = try? LocalFiles.sha256(of: directory + "/" + file.path) else { return false }
            return LocalFiles.hex(digest) == file.sha256
        }
    }

    // MARK: Fixtures

    private static func fileFixture(
        name: String, summary: String, size: Int, seed: UInt64, options: ImportOptions,
        directory: String, log: (String) -> Void
    ) throws -> FixtureManifest.Fixture {
        let bytes = SplitMix64.bytes(count: size, seed: seed)
        let sourcePath = "sources/\(name).bin"
        let source = try writeSource(bytes, path: sourcePath, directory: directory)
        let (root, blocks) = try UnixFSImporter.importFile(bytes, options: options)
        let store = Dictionary(blocks.map { ($0.cid, $0.bytes) }, uniquingKeysWith: { a, _ in a })
        // Read the DAG back before writing it: the fixture must hold exactly the source bytes.
        guard try UnixFSReader(lookup: { store[$0] }).readFile(root.cid) == bytes else {
            throw FixtureError.readBackMismatch(name)
        }
        let (carPath, carSize, carSHA, count) = try writeCAR(
            name: name, roots: [root.cid], store: store, directory: directory)
        log("\(name): \(root.cid) (\(size) bytes, \(count) blocks) -> \(carPath)")
        return FixtureManifest.Fixture(
            name: name, summary: summary, root: root.cid.description, roots: [root.cid.description],
            sources: [FixtureManifest.Source(path: sourcePath, size: source.size, sha256: source.sha256,
                                             cid: root.cid.description)],
            size: source.size, sha256: source.sha256, car: carPath, carSize: carSize, carSHA256: carSHA,
            blocks: count)
    }

    private static func directoryFixture(directory: String, log: (String) -> Void) throws -> FixtureManifest.Fixture {
        let files: [(name: String, bytes: [UInt8])] = [
            ("hello.txt", Array("hello from the edgeswap fixtures\n".utf8)),
            ("notes.md", Array("# notes\n\nA small file next to a larger one.\n".utf8)),
            ("small.bin", SplitMix64.bytes(count: 10_000, seed: 0xED6E_0004)),
            ("multi-block.bin", SplitMix64.bytes(count: 2 * 262_144 + 4_321, seed: 0xED6E_0005)),
        ]
        var store: [CID: [UInt8]] = [:]
        var entries: [(name: String, node: ImportedNode)] = []
        var sources: [FixtureManifest.Source] = []
        for file in files {
            let path = "sources/directory/\(file.name)"
            let written = try writeSource(file.bytes, path: path, directory: directory)
            let (root, blocks) = try UnixFSImporter.importFile(file.bytes, options: .kuboDefault)
            for block in blocks { store[block.cid] = block.bytes }
            entries.append((file.name, root))
            sources.append(FixtureManifest.Source(path: path, size: written.size, sha256: written.sha256,
                                                  cid: root.cid.description))
        }
        let (dir, dirBlock) = try UnixFSImporter.directory(entries: entries, options: .kuboDefault)
        store[dirBlock.cid] = dirBlock.bytes
        // A second root: one small raw block (`bafkrei…`), as `ipfs block put` or a tiny `--raw-leaves` add makes.
        let rawBytes = SplitMix64.bytes(count: 4_096, seed: 0xED6E_0006)
        let rawPath = "sources/raw-block.bin"
        let rawSource = try writeSource(rawBytes, path: rawPath, directory: directory)
        let raw = try UnixFSImporter.rawBlock(rawBytes)
        store[raw.cid] = raw.bytes
        sources.append(FixtureManifest.Source(path: rawPath, size: rawSource.size, sha256: rawSource.sha256,
                                              cid: raw.cid.description))
        let reader = UnixFSReader { store[$0] }
        for (entry, file) in zip(try reader.listDirectory(dir.cid), files.sorted { $0.name < $1.name }) {
            guard entry.name == file.name, try reader.readFile(entry.cid) == file.bytes else {
                throw FixtureError.readBackMismatch("directory/\(file.name)")
            }
        }
        let (carPath, carSize, carSHA, count) = try writeCAR(
            name: "directory", roots: [dir.cid, raw.cid], store: store, directory: directory)
        log("directory: \(dir.cid) + raw \(raw.cid) (\(count) blocks) -> \(carPath)")
        return FixtureManifest.Fixture(
            name: "directory", summary: "UnixFS directory (3 small files, 1 of 3 chunks) and a raw block",
            root: dir.cid.description, roots: [dir.cid.description, raw.cid.description], sources: sources,
            size: sources.reduce(0) { $0 + $1.size }, sha256: nil, car: carPath, carSize: carSize,
            carSHA256: carSHA, blocks: count)
    }

    // MARK: Writing

    private static func writeSource(_ bytes: [UInt8], path: String, directory: String) throws
        -> (size: UInt64, sha256: String)
    {
        let full = directory + "/" + path
        if let slash = full.utf8.lastIndex(of: UInt8(ascii: "/")) { try LocalFiles.makeDirectories(String(full[..<slash])) }
        try LocalFiles.writeAtomically(bytes, to: full)
        let digest = bytes.withUnsafeBytes { raw in (try? Hashing.digest(code: Multicodec.sha2_256, of: raw)) ?? [] }
        return (UInt64(bytes.count), LocalFiles.hex(digest))
    }

    /// Writes a CARv1 with the blocks reachable from `roots`, each once, parents before children (the order
    /// of `ipfs dag export`).
    private static func writeCAR(name: String, roots: [CID], store: [CID: [UInt8]], directory: String) throws
        -> (path: String, size: UInt64, sha256: String, blocks: Int)
    {
        let reader = UnixFSReader { store[$0] }
        var order: [CID] = []
        var seen = Set<CID>()
        for root in roots {
            for cid in try reader.blocks(under: root) where seen.insert(cid).inserted { order.append(cid) }
        }
        let relative = "cars/\(name).car"
        let full = directory + "/" + relative
        try LocalFiles.makeDirectories(directory + "/cars")
        let temp = full + ".tmp"
        let writer = try CARv1Writer(path: temp, roots: roots)
        for cid in order {
            _ = try writer.append(cid: cid, data: store[cid]!)
        }
        try writer.close()
        guard rename(temp, full) == 0 else { throw LocalFiles.Failure(operation: "rename", path: full, errno: errno) }
        let (digest, size) = try LocalFiles.sha256(of: full)
        return (relative, size, LocalFiles.hex(digest), order.count)
    }
}

/// Why fixtures could not be generated.
public enum FixtureError: Error, CustomStringConvertible {
    case readBackMismatch(String)

    public var description: String {
        switch self {
        case .readBackMismatch(let name): return "fixture \(name): the DAG does not read back to its source bytes"
        }
    }
}
