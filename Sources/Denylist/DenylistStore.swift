#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import Multiformats
import NIOConcurrencyHelpers

/// What `stat` says of a denylist file; a change in any part means the file changed (an edit in place
/// changes size or mtime, a replace-by-rename changes the inode).
struct FileFingerprint: Equatable, Sendable {
    var device: UInt64 = 0
    var inode: UInt64 = 0
    var size: Int64 = 0
    var mtimeSeconds: Int64 = 0
    var mtimeNanoseconds: Int64 = 0
    /// The errno of a failed `stat`; 0 when the file was there.
    var missing: Int32 = 0

    init(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else {
            missing = errno
            return
        }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        #if canImport(Darwin)
        mtimeSeconds = Int64(st.st_mtimespec.tv_sec)
        mtimeNanoseconds = Int64(st.st_mtimespec.tv_nsec)
        #else
        mtimeSeconds = Int64(st.st_mtim.tv_sec)
        mtimeNanoseconds = Int64(st.st_mtim.tv_nsec)
        #endif
    }
}

/// Counters of a `DenylistStore`, for metrics.
public struct DenylistCounters: Sendable, Equatable {
    /// Rules by kind in the current snapshot (allow rules included).
    public var rulesByKind: [DenylistRuleKind: Int]
    /// Successful reloads since the store was made (the first load is not one).
    public var reloads: Int
    /// Reloads that failed and kept the previous snapshot.
    public var reloadFailures: Int
    /// The error of the last reload, if it failed.
    public var lastError: DenylistError?
}

/// The denylists a server enforces: the current `DenylistSnapshot` behind a lock, replaced whole on reload.
///
/// Reads take the lock only to copy the snapshot out; parsing happens outside it, so wants are never held up
/// by a reload. A reload that fails (a file that cannot be read or parsed) keeps the previous snapshot and
/// logs the error with its file and line. Reloads are serialised so that an older parse never replaces a
/// newer one.
///
/// ```swift
/// let denylists = try DenylistStore(paths: options.denylists, logger: logger)   // --denylist FILE, repeatable
/// // SIGHUP: try? denylists.reload()
/// let watcher = Task { await denylists.watch(every: .seconds(10)) }             // cancel on shutdown
/// // per want, before any storage or cache access:
/// if case .denied(let reason) = denylists.decision(for: cid) { /* answer as a miss; count reason.kind */ }
/// ```
public final class DenylistStore: Sendable {
    public let paths: [String]
    private let logger: Logger

    private struct State: Sendable {
        var snapshot: DenylistSnapshot
        /// The files as the last load or reload attempt saw them, so a failed reload is not retried (and
        /// logged again) until a file changes once more.
        var fingerprints: [FileFingerprint]
        var reloads = 0
        var reloadFailures = 0
        var lastError: DenylistError?
    }

    private let state: NIOLockedValueBox<State>
    private let reloading = NIOLock()

    /// Loads every file; a file that cannot be read or parsed is an error (a server should not start with a
    /// denylist it cannot enforce).
    public init(paths: [String], logger: Logger = Logger(label: "edgeswap.denylist")) throws(DenylistError) {
        self.paths = paths
        self.logger = logger
        let fingerprints = paths.map { FileFingerprint(path: $0) }
        let snapshot = try Self.load(paths, logger: logger)
        state = NIOLockedValueBox(State(snapshot: snapshot, fingerprints: fingerprints))
    }

    /// The current snapshot (hold it for a batch of wants to decide them all against one version).
    public var snapshot: DenylistSnapshot {
        state.withLockedValue { $0.snapshot }
    }

    /// `snapshot.decision(for:)`.
    public func decision(for cid: CID) -> DenylistDecision {
        snapshot.decision(for: cid)
    }

    public var counters: DenylistCounters {
        state.withLockedValue {
            DenylistCounters(rulesByKind: $0.snapshot.ruleCounts, reloads: $0.reloads,
                             reloadFailures: $0.reloadFailures, lastError: $0.lastError)
        }
    }

    /// Reads every file again and installs the new snapshot; on an error keeps the current one, logs and
    /// counts the failure, and throws it. For SIGHUP.
    @discardableResult
    public func reload() throws(DenylistError) -> DenylistSnapshot {
        // NIOLock's `withLock` rethrows untyped errors; a Result keeps the error's type.
        try reloading.withLock {
            Result { () throws(DenylistError) in try reloadLocked(fingerprints: paths.map { FileFingerprint(path: $0) }) }
        }.get()
    }

    /// Reloads if any file's size, mtime or inode changed since the last attempt. Returns whether a new
    /// snapshot was installed (false when nothing changed or the reload failed; a failure is logged once).
    @discardableResult
    public func reloadIfChanged() -> Bool {
        reloading.withLock {
            let now = paths.map { FileFingerprint(path: $0) }
            guard now != state.withLockedValue({ $0.fingerprints }) else { return false }
            do {
                _ = try reloadLocked(fingerprints: now)
                return true
            } catch {
                return false
            }
        }
    }

    /// Polls the files every `interval` with `reloadIfChanged()` until the task is cancelled.
    public func watch(every interval: Duration) async {
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            reloadIfChanged()
        }
    }

    /// Called with `reloading` held. The fingerprints are taken before reading, so a write during the read
    /// shows as a change at the next poll.
    private func reloadLocked(fingerprints: [FileFingerprint]) throws(DenylistError) -> DenylistSnapshot {
        do throws(DenylistError) {
            let snapshot = try Self.load(paths, logger: logger)
            state.withLockedValue {
                $0.snapshot = snapshot
                $0.fingerprints = fingerprints
                $0.reloads += 1
                $0.lastError = nil
            }
            logger.info("denylists reloaded", metadata: ["files": "\(paths.count)", "rules": "\(snapshot.files.reduce(0) { $0 + $1.counts.values.reduce(0, +) })"])
            return snapshot
        } catch {
            state.withLockedValue {
                $0.fingerprints = fingerprints
                $0.reloadFailures += 1
                $0.lastError = error
            }
            logger.error("denylist reload failed; the previous denylists stay in force",
                         metadata: ["error": "\(error)", "file": "\(error.file)", "line": "\(error.line.map(String.init) ?? "-")"])
            throw error
        }
    }

    private static func load(_ paths: [String], logger: Logger) throws(DenylistError) -> DenylistSnapshot {
        var files: [DenylistFile] = []
        for path in paths {
            let file = try DenylistFile(contentsOf: path)
            report(file, logger: logger)
            files.append(file)
        }
        return DenylistSnapshot(files: files)
    }

    /// One summary per file per load, and one line for the rules Bitswap cannot enforce.
    private static func report(_ file: DenylistFile, logger: Logger) {
        var metadata: Logger.Metadata = ["file": "\(file.path)", "lines": "\(file.lineCount)"]
        if let name = file.header.name { metadata["name"] = "\(name)" }
        for kind in DenylistRuleKind.allCases { metadata[kind.rawValue] = "\(file.counts[kind] ?? 0)" }
        metadata["allow"] = "\(file.allowRules)"
        logger.info("denylist loaded", metadata: metadata)

        let inapplicable = file.inapplicableRules.count
        if inapplicable > 0 {
            let kinds = [DenylistRuleKind.ipfsPath, .ipns, .path].map { "\($0)=\(file.counts[$0] ?? 0)" }.joined(separator: " ")
            logger.notice("denylist rules that do not apply to Bitswap (paths, IPNS names) are kept but not enforced",
                          metadata: ["file": "\(file.path)", "rules": "\(inapplicable)", "kinds": "\(kinds)",
                                     "first_line": "\(file.inapplicableRules.first?.line ?? 0)"])
        }
        if let empty = file.counts[.emptyBlock], empty > 0 {
            logger.warning("denylist deny rules for well-known empty blocks or directories are ignored",
                           metadata: ["file": "\(file.path)", "rules": "\(empty)"])
        }
    }
}
