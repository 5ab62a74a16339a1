import CAR
import EdgeswapServer
import Foundation
import Multiformats
import ObjectStorage
import Testing
import UnixFS

/// The fixtures are generated once per test process into one fixed temporary directory and shared
/// (read-only) by the tests below; tests that change files work on copies. The generator checks what is
/// there (sizes and sha2-256) and rewrites anything stale, so a later run reuses the directory.
private let sharedFixtures: Result<String, FixtureSetupFailure> = {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-test-fixtures").path
    do {
        _ = try FixtureGenerator.run(directory: dir)
        return .success(dir)
    } catch {
        return .failure(FixtureSetupFailure(message: "\(error)"))
    }
}()

private struct FixtureSetupFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { "fixture generation failed: \(message)" }
}

/// The shared fixtures directory (generated once per test process; read-only for tests).
func fixturesDirectory() throws -> String { try sharedFixtures.get() }

private func temporaryDirectory(_ label: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Every section of a CAR file, with its block bytes.
private func sections(of path: String) throws -> (roots: [CID], payloadStart: UInt64, [(CARSection, [UInt8])]) {
    let reader = try CARReader(source: try FileByteSource(path: path))
    var out: [(CARSection, [UInt8])] = []
    while let (section, data) = try reader.nextBlock() { out.append((section, data)) }
    return (reader.header.roots, reader.layout.payload.lowerBound, out)
}

@Suite struct FixtureGeneratorTests {
    @Test func manifestDescribesTheFiles() throws {
        let dir = try fixturesDirectory()
        let manifest = try FixtureGenerator.loadManifest(directory: dir)
        #expect(manifest.fixtures.map(\.name) == ["cidv0-20mib", "rawleaves-3mib", "blake3-2mib", "directory"])
        let v0 = try #require(manifest.fixture(named: "cidv0-20mib"))
        #expect(v0.root.hasPrefix("Qm"))
        #expect(v0.size == 20 << 20)
        #expect(v0.blocks == 81)  // 80 leaves of 256 KiB and their root
        let raw = try #require(manifest.fixture(named: "rawleaves-3mib"))
        #expect(raw.root.hasPrefix("bafybei"))
        #expect(raw.blocks == 14)  // 13 raw leaves and the root
        let blake3 = try #require(manifest.fixture(named: "blake3-2mib"))
        #expect(blake3.blocks == 10)
        #expect(try CID(string: blake3.root).multihash.code == Multicodec.blake3)
        let directory = try #require(manifest.fixture(named: "directory"))
        #expect(directory.roots.count == 2)
        #expect(directory.roots[1].hasPrefix("bafkrei"))
        for fixture in manifest.fixtures {
            let (roots, _, blocks) = try sections(of: dir + "/" + fixture.car)
            #expect(roots.map(\.description) == fixture.roots)
            #expect(blocks.count == fixture.blocks)
            #expect(blocks.first?.0.cid.description == fixture.root)
            var store: [CID: [UInt8]] = [:]
            for (section, data) in blocks {
                #expect(try data.withUnsafeBytes { try section.cid.multihash.verify($0) }, "\(section.cid)")
                store[section.cid] = data
            }
            // Each source file reads back byte for byte from the CAR's blocks.
            let reader = UnixFSReader { store[$0] }
            for source in fixture.sources {
                let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + source.path)))
                #expect(UInt64(bytes.count) == source.size)
                #expect(try reader.readFile(try CID(string: source.cid)) == bytes, "\(source.path)")
            }
        }
        // BLAKE3 leaves are `bafkr4…`.
        let (_, _, blake3Blocks) = try sections(of: dir + "/" + blake3.car)
        #expect(blake3Blocks.dropFirst().allSatisfy { $0.0.cid.description.hasPrefix("bafkr4") })
        // The directory lists its four files in byte order.
        let (_, _, dirBlocks) = try sections(of: dir + "/" + directory.car)
        let dirStore = Dictionary(dirBlocks.map { ($0.0.cid, $0.1) }, uniquingKeysWith: { a, _ in a })
        let entries = try UnixFSReader { dirStore[$0] }.listDirectory(try CID(string: directory.root))
        #expect(entries.map(\.name) == ["hello.txt", "multi-block.bin", "notes.md", "small.bin"])
    }

    @Test func cidV0FixtureMatchesIpfsCid() throws {
        let dir = try fixturesDirectory()
        let manifest = try FixtureGenerator.loadManifest(directory: dir)
        let fixture = try #require(manifest.fixture(named: "cidv0-20mib"))
        let candidates = ["/usr/bin/ipfs_cid", "/usr/bin/ipfs-cid", "/usr/local/bin/ipfs-cid"]
        guard let tool = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            Issue.record("install ipfs-cid: apt-get install ipfs-cid")
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = [dir + "/" + fixture.sources[0].path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let json = try JSONSerialization.jsonObject(with: output) as? [String: String]
        #expect(json?["CIDv0"] == fixture.root)
    }

    @Test func secondRunIsANoOpAndDamageIsRepaired() throws {
        let dir = try temporaryDirectory("fixtures-rerun")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try FixtureGenerator.run(directory: dir)
        #expect(first.wrote)
        let reference = try FixtureGenerator.loadManifest(directory: try fixturesDirectory())
        // Deterministic: a second directory gets the same manifest, byte for byte the same files.
        #expect(first.manifest == reference)
        let again = try FixtureGenerator.run(directory: dir)
        #expect(!again.wrote)
        // Damage one CAR without changing its size: the hash check catches it and the run rewrites it.
        let car = dir + "/" + first.manifest.fixtures[1].car
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: car)))
        bytes[bytes.count / 2] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: car))
        #expect(!FixtureGenerator.isIntact(first.manifest, directory: dir))
        let repaired = try FixtureGenerator.run(directory: dir)
        #expect(repaired.wrote)
        #expect(FixtureGenerator.isIntact(repaired.manifest, directory: dir))
        #expect(repaired.manifest == reference)
    }

    @Test func syntheticFixtureIsDeterministicAndReadsBack() throws {
        let dir = try temporaryDirectory("fixtures-synthetic")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try FixtureGenerator.runSynthetic(directory: dir, mebibytes: 3)
        #expect(first.wrote)
        let fixture = try #require(first.manifest.fixtures.first)
        #expect(first.manifest.fixtures.count == 1)
        #expect(fixture.name == "cidv0-3mib")
        #expect(fixture.size == 3 << 20)
        // 12 leaves of 256 KiB and one root: the kubo default layout.
        #expect(fixture.blocks == 13)
        #expect(fixture.root.hasPrefix("Qm"))
        let again = try FixtureGenerator.runSynthetic(directory: dir, mebibytes: 3)
        #expect(!again.wrote)
        #expect(again.manifest == first.manifest)
        // The test fixtures' manifest does not pass for a synthetic directory (and the reverse).
        #expect(!FixtureGenerator.isIntact(first.manifest, directory: dir))
    }
}

@Suite struct IngestTests {
    private func allCARs() throws -> [String] {
        let dir = try fixturesDirectory()
        return try FixtureGenerator.loadManifest(directory: dir).fixtures.map { dir + "/" + $0.car }
    }

    @Test func ingestWritesEveryKeyAndIsIdempotent() async throws {
        let store = try temporaryDirectory("store")
        defer { try? FileManager.default.removeItem(atPath: store) }
        let bucket = try FileSystemBucket(root: store)
        let ingester = Ingester(store: StoreBuckets(single: bucket))
        let paths = try allCARs()
        var progressLines = 0
        let results = await ingester.ingest(paths: paths) { _ in progressLines += 1 }
        #expect(progressLines >= paths.count)
        for (path, result) in zip(paths, results) {
            let r = try result.get()
            let (roots, _, blocks) = try sections(of: path)
            // The CAR CID is codec car over the sha2-256 of the whole file.
            let digest = try Array(try Data(contentsOf: URL(fileURLWithPath: path))).withUnsafeBytes {
                try Hashing.digest(code: Multicodec.sha2_256, of: $0)
            }
            #expect(r.car == StoreLayout.carCID(sha256Digest: digest))
            #expect(r.car.description.hasPrefix("bagbaiera"))
            #expect(r.roots == roots)
            #expect(r.blocks == blocks.count)
            let distinct = Set(blocks.map(\.0.cid.multihash))
            #expect(r.keysWritten == 2 + distinct.count + roots.count)
            #expect(try await bucket.get(StoreLayout.carKey(r.car)) == Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            // The index finds every block at its section offset.
            let index = try CARIndex.decode(try await bucket.get(StoreLayout.indexKey(r.car)))
            for (section, _) in blocks {
                #expect(index.offset(of: section.cid.multihash) == section.offset)
                #expect(try await bucket.exists(StoreLayout.blockKey(multihash: section.cid.multihash, car: r.car)))
            }
            for root in roots {
                let listed = try await bucket.list(prefix: StoreLayout.rootPrefix(root), after: nil, limit: 10)
                #expect(listed == [StoreLayout.rootKey(root: root, car: r.car)])
                #expect(listed.compactMap { StoreLayout.carCID(fromKey: $0, prefix: StoreLayout.rootPrefix(root)) }
                        == [r.car])
                #expect(try await bucket.head(listed[0]) == 0)
            }
        }
        // Every key in the store is accounted for.
        let keys = try await bucket.listAll(prefix: "")
        let expected = results.reduce(0) { $0 + ((try? $1.get().keysWritten) ?? 0) }
        #expect(keys.count == expected)

        let again = await ingester.ingest(paths: paths)
        for result in again {
            let r = try result.get()
            #expect(r.wasAlreadyIngested)
            #expect(r.keysWritten == 0)
        }
        #expect(try await bucket.listAll(prefix: "") == keys)
    }

    @Test func corruptBlockFailsOnlyThatCAR() async throws {
        let work = try temporaryDirectory("corrupt")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let paths = try allCARs()
        let original = paths[1]
        let (_, payloadStart, blocks) = try sections(of: original)
        let victim = blocks[5].0
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: original)))
        bytes[Int(payloadStart + victim.blockOffset + victim.blockLength / 2)] ^= 0x01
        let corrupt = work + "/corrupt.car"
        try Data(bytes).write(to: URL(fileURLWithPath: corrupt))

        let bucket = try FileSystemBucket(root: work + "/store")
        let results = await Ingester(store: StoreBuckets(single: bucket)).ingest(paths: [paths[0], corrupt, paths[2]])
        #expect((try? results[0].get()) != nil)
        #expect((try? results[2].get()) != nil)
        #expect(throws: IngestError.badBlock(path: corrupt, cid: victim.cid, offset: payloadStart + victim.offset)) {
            try results[1].get()
        }
        let message = "\(IngestError.badBlock(path: corrupt, cid: victim.cid, offset: victim.offset))"
        #expect(message.contains(victim.cid.description) && message.contains("offset \(victim.offset)"))
        // Nothing of the bad CAR reached the store.
        let digest = bytes.withUnsafeBytes { (try? Hashing.digest(code: Multicodec.sha2_256, of: $0)) ?? [] }
        let badCar = StoreLayout.carCID(sha256Digest: digest)
        let keys = try await bucket.listAll(prefix: "")
        #expect(!keys.contains { $0.contains(badCar.description) })
    }

    @Test func carV2IsIngestedWithItsOwnCID() async throws {
        let work = try temporaryDirectory("v2")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let v1 = try allCARs()[3]
        let v2 = work + "/directory.v2.car"
        let source = try FileByteSource(path: v1)
        try CARv2Writer.wrap(carv1: source, index: .multihashSorted(try CARIndexer.multihashIndexSorted(of: source)),
                             to: v2)
        let bucket = try FileSystemBucket(root: work + "/store")
        let ingester = Ingester(store: StoreBuckets(single: bucket))
        let r1 = try await ingester.ingest(path: v1)
        let r2 = try await ingester.ingest(path: v2)
        #expect(r1.car != r2.car)
        #expect(r1.roots == r2.roots)
        #expect(r1.blocks == r2.blocks)
        // Index offsets are relative to the CARv1 payload, so both CARs get the same index bytes.
        #expect(try await bucket.get(StoreLayout.indexKey(r1.car)) == (try await bucket.get(StoreLayout.indexKey(r2.car))))
        for root in r1.roots {
            let cars = try await bucket.list(prefix: StoreLayout.rootPrefix(root), after: nil, limit: 10)
                .compactMap { StoreLayout.carCID(fromKey: $0, prefix: StoreLayout.rootPrefix(root)) }
            #expect(Set(cars) == [r1.car, r2.car])
        }
    }

    @Test func badInputsGiveClearErrors() async throws {
        let work = try temporaryDirectory("bad-input")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let ingester = Ingester(store: StoreBuckets(single: try FileSystemBucket(root: work + "/store")))
        await #expect(throws: IngestError.unreadable(path: work + "/missing.car", reason: "no such file")) {
            try await ingester.ingest(path: work + "/missing.car")
        }
        await #expect(throws: IngestError.unreadable(path: work, reason: "is a directory")) {
            try await ingester.ingest(path: work)
        }
        let notCar = work + "/text.car"
        try Data("this is not a CAR file\n".utf8).write(to: URL(fileURLWithPath: notCar))
        do {
            _ = try await ingester.ingest(path: notCar)
            Issue.record("a text file was ingested")
        } catch {
            guard case .malformedCAR(let path, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(path == notCar)
        }
    }

    /// The command itself: argument errors and the exit status of a run with a bad CAR.
    @Test
    func commandLine() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("edgeswap").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            Issue.record("edgeswap binary not found at \(binary): run swift build --build-tests first")
            return
        }
        let work = try temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: work) }
        func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let o = out.fileHandleForReading.readDataToEndOfFile()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        let noFiles = try run(["ingest", "--store", work + "/store"])
        #expect(noFiles.status != 0)
        #expect(noFiles.stderr.contains("no CAR files given"))
        let noStore = try run(["ingest", try allCARs()[0]])
        #expect(noStore.status != 0)
        #expect(noStore.stderr.contains("--store"))
        let mixed = try run(["ingest", "--quiet", "--store", work + "/store", try allCARs()[3], work + "/nope.car"])
        #expect(mixed.status != 0)
        #expect(mixed.stderr.contains("nope.car: cannot read: no such file"))
        #expect(mixed.stdout.contains("keys written"))
        let rerun = try run(["ingest", "--quiet", "--store", work + "/store", try allCARs()[3]])
        #expect(rerun.status == 0)
        #expect(rerun.stdout.contains("already ingested, nothing written"))
    }
}
