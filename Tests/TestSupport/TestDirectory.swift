import Foundation

/// A per-test scratch directory (kubo repos, logs, downloads, certificates).
///
/// Removed by `remove()` unless `EDGESWAP_KEEP_INTEROP_TMP=1`, which keeps it for a post-mortem
/// (its path is in every harness error message).
public struct TestDirectory: Sendable {
    public let url: URL

    /// Creates `$TMPDIR/edgeswap-interop-<name>-<random>`.
    public init(name: String) throws {
        let safe = String(name.map { $0.isLetter || $0.isNumber ? $0 : "-" })
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("edgeswap-interop-\(safe)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// A path inside the directory (not created).
    public func path(_ component: String) -> URL {
        url.appendingPathComponent(component)
    }

    /// Writes `count` pseudo-random bytes (seeded, so a failing run can be reproduced) to a new file.
    public func randomFile(_ name: String, count: Int, seed: UInt64) throws -> (url: URL, bytes: Data) {
        let bytes = Data(pseudoRandomBytes(count: count, seed: seed))
        let url = path(name)
        try bytes.write(to: url)
        return (url, bytes)
    }

    public func remove() {
        if ProcessInfo.processInfo.environment["EDGESWAP_KEEP_INTEROP_TMP"] == "1" { return }
        try? FileManager.default.removeItem(at: url)
    }
}
