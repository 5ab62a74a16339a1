import EdgeswapTestSupport
import Foundation
import Testing

/// Acceptance tests for "Bitswap server": real kubo v0.22 (boxo bitswap) and our own Bitswap 1.2.0 client on
/// py-libp2p 0.8.1 fetch the generated fixtures from `edgeswap serve` over /ws in a loopback-only namespace.
/// Every file must come back byte-exact (sha2-256 against `fixtures.json`), every block verified against
/// its CID. Run through `.ci/in-netns`.
@Suite(.serialized, .timeLimit(.minutes(10))) struct BitswapInteropTests {
    /// Every file of the `directory` fixture by its path inside the directory, with its size and sha2-256.
    private func directoryFiles(_ fixture: FixtureManifestFile.Fixture) -> [String: FileDigest] {
        var files: [String: FileDigest] = [:]
        for source in fixture.sources where source.path.hasPrefix("sources/directory/") {
            files[String(source.path.dropFirst("sources/directory/".count))] =
                FileDigest(bytes: source.size, sha256: source.sha256)
        }
        return files
    }

    /// kubo downloads every fixture: the three single files (CIDv0 dag-pb, CIDv1 raw leaves, BLAKE3), the
    /// UnixFS directory (written as a tree, every file checked) and the directory fixture's second root, a
    /// lone raw block. Once with an Ed25519 kubo identity and once with kubo's default RSA-2048 one.
    @Test(arguments: [Kubo.Identity.ed25519, .rsa])
    func kuboFetchesEveryFixtureByteExact(identity: Kubo.Identity) async throws {
        let directory = try TestDirectory(name: "kubo-edgeswap-bitswap-\(identity.rawValue)")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let files = store.manifest.fixtures.filter { $0.sha256 != nil }
        #expect(files.count >= 3, "single-file fixtures: \(files.map(\.name))")
        let tree = try store.manifest.fixture("directory")
        let rawRoot = try #require(tree.roots.dropFirst().first, "the directory fixture's second root")
        let rawSource = try #require(tree.sources.first { $0.cid == rawRoot })
        let expectedTree = directoryFiles(tree)
        #expect(expectedTree.count == 4, "\(expectedTree.keys.sorted())")

        let (server, address) = try await store.serve()
        defer { server.process.terminate() }
        let report = try await Kubo.fetch(files.map(\.root) + [tree.root, rawRoot], from: address,
                                          identity: identity, directory: directory, timeout: .seconds(240))
        #expect(report.ok, "\(report)\n\(server.process.stderr())")
        for fixture in files {
            let item = report.results?.first { $0.cid == fixture.root }
            #expect(item?.ok == true, "\(fixture.name): \(String(describing: item))")
            #expect(item?.sha256 == fixture.sha256, "\(fixture.name) \(fixture.root)")
            if let item { print("kubo (\(identity.rawValue)) fetched \(fixture.name) (\(item.bytes ?? 0) B) in \(item.seconds) s") }
        }
        let dir = try #require(report.results?.first { $0.cid == tree.root }, "no result for \(tree.root)")
        #expect(dir.ok, "\(dir)")
        #expect(dir.files == expectedTree, "kubo wrote \(String(describing: dir.files))")
        let raw = try #require(report.results?.first { $0.cid == rawRoot })
        #expect(raw.ok && raw.sha256 == rawSource.sha256 && raw.bytes == rawSource.size, "\(raw)")
        print("kubo (\(identity.rawValue)) fetched the directory (\(expectedTree.count) files) in \(dir.seconds) s")
    }

    /// Our Bitswap 1.2.0 client (`pylibp2p_peer.py bitswap-get`, py-libp2p 0.8.1 underneath) walks every
    /// sha2-256 fixture DAG by its dag-pb links: every block of each CAR arrives once, hashes to the CID it
    /// was asked for, and the reassembled files match their sources. (BLAKE3 is left out: the client checks
    /// sha2-256 only; kubo fetches the BLAKE3 fixture above.)
    @Test func pylibp2pBitswapClientFetchesEveryBlockVerified() async throws {
        let directory = try TestDirectory(name: "py-edgeswap-bitswap")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let fixtures = try ["cidv0-20mib", "rawleaves-3mib", "directory"].map { try store.manifest.fixture($0) }
        let (server, address) = try await store.serve()
        defer { server.process.terminate() }

        let report = try await PyLibp2p.bitswapGet(roots: fixtures.flatMap(\.roots), from: address,
                                                   directory: directory)
        #expect(report.ok, "\(report)\n\(server.process.stderr())")
        #expect(report.blocksBad == 0 && report.duplicates == 0 && report.unverifiable == 0, "\(report)")
        #expect(report.blocksVerified == fixtures.reduce(0) { $0 + $1.blocks },
                "verified \(report.blocksVerified ?? -1) of \(fixtures.map(\.blocks))")
        #expect(Set(report.received ?? []).count == report.blocksVerified)
        #expect((report.inboundStreams ?? 0) >= 1, "answers come on a stream the server opens")
        let roots = report.roots ?? []
        for fixture in fixtures {
            let reached = fixture.roots.compactMap { root in roots.first { $0.root == root } }
            #expect(reached.count == fixture.roots.count, "\(fixture.name): \(roots.map(\.root))")
            #expect(reached.allSatisfy { $0.complete }, "\(fixture.name): \(reached)")
            #expect(reached.reduce(0) { $0 + $1.blocks } == fixture.blocks, "\(fixture.name): \(reached.map(\.blocks))")
            if let sha256 = fixture.sha256 {
                #expect(reached.first?.files?[""]?.sha256 == sha256, "\(fixture.name)")
            }
        }
        let tree = try store.manifest.fixture("directory")
        #expect(roots.first { $0.root == tree.root }?.files == directoryFiles(tree))
        let rawSource = try #require(tree.sources.first { $0.cid == tree.roots[1] })
        #expect(roots.first { $0.root == tree.roots[1] }?.files?[""]?.sha256 == rawSource.sha256)
        print("py-libp2p bitswap client: \(report.blocksVerified ?? 0) blocks verified in \(report.seconds ?? -1) s")

        // py-libp2p 0.8.1 also ships a Bitswap client of its own (`libp2p.bitswap`, MerkleDag.fetch_file):
        // it fetches the single-file fixtures byte-exact too.
        let files = fixtures.filter { $0.sha256 != nil }
        let stock = try await PyLibp2p.fetch(files.map(\.root), from: address, directory: directory)
        #expect(stock.ok, "\(stock)\n\(server.process.stderr())")
        for fixture in files {
            #expect(stock.results?.first { $0.cid == fixture.root }?.sha256 == fixture.sha256, "\(fixture.name)")
        }
    }

    /// A CID edgeswap does not have: WANT_BLOCK with sendDontHave for random sha2-256 CIDv0 and CIDv1 gets
    /// a DONT_HAVE for exactly the bytes sent (a v0 stays v0), while kubo, another peer, fetches a file.
    @Test func missingCIDGetsDontHaveEchoedExactlyWhileAnotherPeerIsServed() async throws {
        let directory = try TestDirectory(name: "edgeswap-dont-have")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let file = try store.manifest.fixture("rawleaves-3mib")
        let (server, address) = try await store.serve()
        defer { server.process.terminate() }

        async let kubo = Kubo.fetch([file.root], from: address, directory: directory)
        async let py = PyLibp2p.bitswapGet(roots: [], missingV0: 2, missingV1: 2, from: address, directory: directory)
        let (fetched, probe) = try await (kubo, py)

        #expect(probe.ok, "\(probe)\n\(server.process.stderr())")
        let missing = probe.missing ?? []
        #expect(missing.count == 4)
        for want in missing {
            #expect(want.dontHave, "\(want.cid): \(want)")
            // The presence carries the CID bytes exactly as sent: once, not converted between versions.
            #expect(want.echoed == [want.sent], "\(want.cid) sent \(want.sent), echoed \(want.echoed)")
        }
        let v0 = missing.filter { $0.cid.hasPrefix("Qm") }
        #expect(v0.count == 2 && v0.allSatisfy { $0.sent.hasPrefix("1220") && $0.sent.count == 68 })
        #expect(missing.filter { $0.sent.hasPrefix("01551220") }.count == 2)
        #expect(probe.presences?.allSatisfy { $0.type == "dont_have" } == true, "\(probe.presences ?? [])")

        #expect(fetched.ok, "\(fetched)\n\(server.process.stderr())")
        #expect(fetched.results?.first?.sha256 == file.sha256)
    }
}
