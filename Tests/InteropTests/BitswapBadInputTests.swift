import EdgeswapTestSupport
import Foundation
import Testing

/// Bad Bitswap input end to end against `edgeswap serve`, one test each. Each checks what became of the
/// offending stream, that edgeswap logged a specific reason (its stderr, at `--log-level debug`), that the
/// same connection still answers a valid want on a fresh stream, and that another peer (kubo) is served
/// afterwards. The bad bytes come from `pylibp2p_peer.py bitswap-probe` (py-libp2p 0.8.1 underneath).
@Suite(.serialized, .timeLimit(.minutes(10))) struct BitswapBadInputTests {
    /// Waits up to `timeout` for `text` in the server's stderr (log lines may trail the reply).
    private func expectLog(_ server: EdgeswapServe, _ text: String, timeout: Duration = .seconds(10),
                           sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if server.process.stderr().contains(text) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("edgeswap never logged \"\(text)\"; stderr:\n\(server.process.stderr())",
                     sourceLocation: sourceLocation)
    }

    /// kubo, a fresh peer, still downloads a file from the server.
    private func expectAnotherPeerServed(_ store: FixtureStore, _ server: EdgeswapServe, _ address: String,
                                         sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(server.process.isRunning, "edgeswap exited", sourceLocation: sourceLocation)
        let file = try store.manifest.fixture("rawleaves-3mib")
        let report = try await Kubo.fetch([file.root], from: address, name: "kubo-after", directory: store.directory)
        #expect(report.ok && report.results?.first?.sha256 == file.sha256,
                "\(report)\n\(server.process.stderr())", sourceLocation: sourceLocation)
    }

    /// The CIDs of two small files of the directory fixture: a held block to ask for and a control.
    private func smallFiles(_ store: FixtureStore) throws -> (hello: String, notes: String) {
        let tree = try store.manifest.fixture("directory")
        let hello = try #require(tree.sources.first { $0.path.hasSuffix("/hello.txt") })
        let notes = try #require(tree.sources.first { $0.path.hasSuffix("/notes.md") })
        return (hello.cid, notes.cid)
    }

    /// A Message whose wantlist field declares 100 bytes when 3 follow: the stream is reset, the reason logged.
    @Test func malformedMessageResetsItsStream() async throws {
        let directory = try TestDirectory(name: "bitswap-bad-malformed")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let (server, address) = try await store.serve()
        defer { server.process.terminate() }
        let report = try await PyLibp2p.bitswapProbe(.malformed, controlCID: try smallFiles(store).hello,
                                                     from: address, directory: directory)
        #expect(report.stream == "reset", "\(report)")
        #expect(report.ok && report.controlServed == true, "\(report)\n\(server.process.stderr())")
        try await expectLog(server, "resetting bitswap stream: bad message")
        try await expectLog(server, "Message.wantlist declares 100 bytes but only 3 remain")
        try await expectAnotherPeerServed(store, server, address)
    }

    /// A length prefix of 5 MiB (the limit is 4 MiB): refused as soon as the varint is complete, before
    /// any of the body is buffered.
    @Test func lengthPrefixOverFourMiBResetsItsStream() async throws {
        let directory = try TestDirectory(name: "bitswap-bad-oversize")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let (server, address) = try await store.serve()
        defer { server.process.terminate() }
        let report = try await PyLibp2p.bitswapProbe(.oversize, controlCID: try smallFiles(store).hello,
                                                     from: address, directory: directory)
        #expect(report.stream == "reset", "\(report)")
        #expect(report.ok && report.controlServed == true, "\(report)\n\(server.process.stderr())")
        try await expectLog(server, "resetting bitswap stream: bad message")
        try await expectLog(server, "message of \(5 << 20) bytes is over the \(4 << 20)-byte limit")
        try await expectAnotherPeerServed(store, server, address)
    }

    /// 10,000 want-blocks (sendDontHave) in one message at priorities 1...10000: the per-message cap keeps
    /// the 1024 highest priorities and drops the rest, so exactly 1024 DONT_HAVEs come back, all for
    /// priorities above 8976. The message itself is valid, so its stream stays open.
    @Test func tenThousandEntryWantlistIsCappedToTheHighestPriorities() async throws {
        let directory = try TestDirectory(name: "bitswap-bad-huge-wantlist")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let (server, address) = try await store.serve()
        defer { server.process.terminate() }
        let report = try await PyLibp2p.bitswapProbe(.hugeWantlist, controlCID: try smallFiles(store).hello,
                                                     from: address, directory: directory)
        #expect(report.ok && report.controlServed == true, "\(report)\n\(server.process.stderr())")
        #expect((report.messageBytes ?? 0) > 400_000, "\(report)")
        #expect(report.dontHaves == 1024, "\(report)")
        #expect(report.distinct == 1024, "\(report)")
        #expect(report.dontHavePriorities == [10_000 - 1024 + 1, 10_000], "\(report)")
        #expect(report.stream == "open", "a capped wantlist is not an error: \(report)")
        try await expectLog(server, "bitswap wantlist entries set aside")
        try await expectLog(server, "overCap(count: \(10_000 - 1024))")
        try await expectAnotherPeerServed(store, server, address)
    }

    /// wantType=7 (proto3 enums are open, so it is legal on the wire): that entry alone is ignored, never
    /// guessed at, while a valid want in the same message is served; the stream stays open.
    @Test func unknownWantTypeEntryIsIgnoredAndLogged() async throws {
        let directory = try TestDirectory(name: "bitswap-bad-want-type")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let (server, address) = try await store.serve()
        defer { server.process.terminate() }
        let files = try smallFiles(store)
        let report = try await PyLibp2p.bitswapProbe(.unknownWantType, cid: files.notes, controlCID: files.hello,
                                                     from: address, directory: directory)
        #expect(report.ok && report.controlServed == true, "\(report)\n\(server.process.stderr())")
        #expect(report.badEntryAnswered == false, "\(report)")
        #expect(report.stream == "open", "\(report)")
        try await expectLog(server, "bitswap wantlist entries set aside")
        try await expectLog(server, "unknownWantType(7)")
        try await expectAnotherPeerServed(store, server, address)
    }

    /// One block's bytes flipped in the stored CAR after ingest (the index still points at it): the block
    /// is never sent, the client gets DONT_HAVE for it, edgeswap logs the mismatch, and other blocks of
    /// the same CAR are still served.
    @Test func blockNotMatchingItsCIDIsNeverSent() async throws {
        let directory = try TestDirectory(name: "bitswap-bad-corrupt-block")
        defer { directory.remove() }
        let store = try await FixtureStore.make(directory: directory)
        let tree = try store.manifest.fixture("directory")
        let rawRoot = tree.roots[1]
        let rawSource = try #require(tree.sources.first { $0.cid == rawRoot })
        try flipByte(of: try store.source(rawSource.path), inCARsUnder: store.storePath)
        let (server, address) = try await store.serve()
        defer { server.process.terminate() }

        let report = try await PyLibp2p.bitswapGet(roots: [rawRoot, try smallFiles(store).hello], from: address,
                                                   directory: directory)
        #expect(report.blocksBad == 0, "wrong bytes were sent: \(report)")
        #expect(report.received?.contains(rawRoot) == false, "\(report)")
        let raw = try #require(report.roots?.first { $0.root == rawRoot })
        #expect(!raw.complete && raw.blocks == 0)
        #expect(report.presences?.count == 1 && report.presences?.first?.type == "dont_have",
                "\(String(describing: report.presences))")
        let hello = try #require(report.roots?.first { $0.root != rawRoot })
        #expect(hello.complete, "a sound block of the same CAR is still served: \(report)")
        try await expectLog(server, "block does not match its CID; not served")
        try await expectAnotherPeerServed(store, server, address)
    }

    /// Flips one byte in the middle of `block`'s bytes inside the (only) CAR under `storePath` that holds them.
    private func flipByte(of block: Data, inCARsUnder storePath: String) throws {
        let enumerator = try #require(FileManager.default.enumerator(atPath: storePath))
        var flipped = 0
        for case let relative as String in enumerator {
            let url = URL(fileURLWithPath: storePath).appendingPathComponent(relative)
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            var bytes = try Data(contentsOf: url)
            guard let range = bytes.range(of: block) else { continue }
            let index = range.lowerBound + block.count / 2
            bytes[index] ^= 0xFF
            try bytes.write(to: url)
            flipped += 1
        }
        #expect(flipped == 1, "the block's bytes were found in \(flipped) stored files")
    }
}
