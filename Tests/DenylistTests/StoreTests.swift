import Denylist
import EdgeswapTestSupport
import Foundation
import Logging
import Multiformats
import Testing

@Suite struct StoreTests {
    static let first = CID(codec: Multicodec.raw, multihash: sha256Multihash("first"))
    static let second = CID(codec: Multicodec.raw, multihash: sha256Multihash("second"))

    static func write(_ text: String, to url: URL) throws {
        try Data(text.utf8).write(to: url)
    }

    /// A scratch directory holding `list.deny` with `text`; the caller removes the directory.
    static func scratchList(_ name: String, _ text: String) throws -> (dir: TestDirectory, list: URL) {
        let dir = try TestDirectory(name: name)
        let list = dir.path("list.deny")
        try write(text, to: list)
        return (dir, list)
    }

    @Test func loadsSeveralFilesAndCounts() throws {
        let dir = try TestDirectory(name: "denylist-load")
        defer { dir.remove() }
        let a = dir.path("a.deny"), b = dir.path("b.deny")
        try Self.write("/ipfs/\(Self.first)\n/ipns/example.com\n", to: a)
        try Self.write("version: 1\n---\n!/ipfs/\(Self.first)\n//\(sha256Hex(Self.second.description + "/"))\n", to: b)
        let store = try DenylistStore(paths: [a.path, b.path])
        #expect(store.decision(for: Self.first) == .allowed)  // b.deny allows what a.deny denies
        #expect(store.decision(for: Self.second) == .denied(DenylistReason(file: b.path, line: 4, kind: .legacyDoubleHash)))
        let counters = store.counters
        #expect(counters.rulesByKind == [.cid: 2, .ipns: 1, .legacyDoubleHash: 1])
        #expect(counters.reloads == 0 && counters.reloadFailures == 0 && counters.lastError == nil)
        #expect(store.snapshot.files.map(\.path) == [a.path, b.path])
    }

    @Test func failedReloadKeepsThePreviousSnapshot() throws {
        let (dir, list) = try Self.scratchList("denylist-reload", "/ipfs/\(Self.first)\n")
        defer { dir.remove() }
        let store = try DenylistStore(paths: [list.path])
        #expect(store.decision(for: Self.first).isDenied)

        try Self.write("/ipfs/\(Self.first)\n/ipfs/\(Self.second)\n/ipfs/not-a-cid\n", to: list)
        #expect(throws: DenylistError.self) { try store.reload() }
        let counters = store.counters
        #expect(counters.reloadFailures == 1 && counters.reloads == 0)
        #expect(counters.lastError?.file == list.path && counters.lastError?.line == 3)
        // Nothing is lost: the old rules stand, the new one is not half-applied.
        #expect(store.decision(for: Self.first).isDenied)
        #expect(store.decision(for: Self.second) == .allowed)
        // The failed version is not retried until the file changes again.
        #expect(!store.reloadIfChanged())
        #expect(store.counters.reloadFailures == 1)

        // A file that vanishes is a failure too, and keeps the snapshot.
        try FileManager.default.removeItem(at: list)
        #expect(!store.reloadIfChanged())
        #expect(store.counters.reloadFailures == 2 && store.counters.lastError?.line == nil)
        #expect(store.decision(for: Self.first).isDenied)

        try Self.write("/ipfs/\(Self.second)\n", to: list)
        #expect(store.reloadIfChanged())
        #expect(store.decision(for: Self.first) == .allowed)
        #expect(store.decision(for: Self.second).isDenied)
        #expect(store.counters.reloads == 1 && store.counters.lastError == nil)
        // SIGHUP: an explicit reload always reads again.
        try store.reload()
        #expect(store.counters.reloads == 2)
    }

    @Test func editOnDiskIsPickedUp() throws {
        let (dir, list) = try Self.scratchList("denylist-edit", "# empty for now\n")
        defer { dir.remove() }
        let store = try DenylistStore(paths: [list.path])
        #expect(!store.reloadIfChanged())
        #expect(store.decision(for: Self.first) == .allowed)

        // Appended, as the spec expects lists to grow: "echo /ipfs/… >> custom.deny".
        let handle = try FileHandle(forWritingTo: list)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("/ipfs/\(Self.first)\n".utf8))
        try handle.close()
        #expect(store.reloadIfChanged())
        #expect(store.decision(for: Self.first) == .denied(DenylistReason(file: list.path, line: 2, kind: .cid)))
        #expect(!store.reloadIfChanged())

        // Replaced by a rename (a new inode).
        let staged = dir.path("list.deny.new")
        try Self.write("!/ipfs/\(Self.first)\n", to: staged)
        #expect(rename(staged.path, list.path) == 0)
        #expect(store.reloadIfChanged())
        #expect(store.decision(for: Self.first) == .allowed)
    }

    @Test func watchPollsUntilCancelled() async throws {
        let (dir, list) = try Self.scratchList("denylist-watch", "")
        defer { dir.remove() }
        let store = try DenylistStore(paths: [list.path])
        let watcher = Task { await store.watch(every: .milliseconds(20)) }
        try Self.write("/ipfs/\(Self.first)\n", to: list)
        // Generous: on a loaded machine the watcher's task may wait for a thread of the cooperative pool.
        let deadline = ContinuousClock.now + .seconds(90)
        while !store.decision(for: Self.first).isDenied && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(store.decision(for: Self.first).isDenied)
        watcher.cancel()
        await watcher.value  // ends with the cancellation
        // One reload, or two when a poll saw the file between its truncation and the write (the write here is
        // not atomic).
        #expect((1...2).contains(store.counters.reloads))
    }

    @Test func initialLoadFailureThrows() throws {
        let (dir, list) = try Self.scratchList("denylist-init", "version: 1\n---\n\ngarbage\n")
        defer { dir.remove() }
        #expect(throws: DenylistError(file: list.path, line: 4, problem: .badRule(
            "`garbage` is not a rule: a rule is `/ipfs/CID[/PATH]`, `/ipns/NAME[/PATH]`, `/PATH` or `//HASH`, optionally after `!`"
        ))) { try DenylistStore(paths: [list.path], logger: Logger(label: "test")) }
    }
}
