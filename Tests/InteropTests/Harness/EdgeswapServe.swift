import EdgeswapTestSupport
import Foundation

/// Runs `edgeswap serve ...` (the debug build at `<root>/.build/debug/edgeswap`) for interop tests.
///
/// Once a listener is ready the server prints one stdout line per listener:
/// `listening <multiaddr>/p2p/<peer ID>`, e.g. `listening /ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooW...`.
struct EdgeswapServe {
    /// One `listening` line.
    struct Listener: Equatable, Sendable {
        /// The full dialable address, ending in `/p2p/<peer ID>`.
        let multiaddr: String
        let peerID: String
        /// The TCP port of the address.
        let port: UInt16
        /// True for `/wss` (or `/tls/ws`), false for plain `/ws`.
        let isSecure: Bool
    }

    let process: ManagedProcess
    let listeners: [Listener]

    /// The peer ID every listener announces.
    var peerID: String { listeners[0].peerID }

    /// Starts the server with `arguments` (after `serve`) and waits until it printed `expectedListeners`
    /// listening lines.
    /// `processName` names its log files in `directory` (give each server of one test its own).
    static func start(_ arguments: [String], expectedListeners: Int, environment: [String: String] = [:],
                      directory: TestDirectory, processName: String = "edgeswap-serve",
                      timeout: Duration = .seconds(30)) async throws -> EdgeswapServe {
        try InteropEnvironment.requirePrivateNetworkNamespace()
        let process = try ManagedProcess(name: processName, executable: InteropEnvironment.edgeswapBinary(),
                                         arguments: ["serve"] + arguments, environment: environment,
                                         directory: directory)
        do {
            let lines = try await process.waitForLines(count: expectedListeners, timeout: timeout) {
                $0.hasPrefix("listening ")
            }
            let listeners = try lines.map { line in
                guard let listener = parseListeningLine(line) else {
                    throw process.failure("printed a malformed listening line: \(line)")
                }
                return listener
            }
            guard Set(listeners.map(\.peerID)).count == 1 else {
                throw process.failure("announced different peer IDs on its listeners")
            }
            return EdgeswapServe(process: process, listeners: listeners)
        } catch {
            process.terminate()
            throw error
        }
    }

    /// The first listener of the given kind.
    func listener(secure: Bool) throws -> Listener {
        guard let listener = listeners.first(where: { $0.isSecure == secure }) else {
            throw InteropHarnessError("edgeswap has no \(secure ? "/wss" : "/ws") listener: \(listeners)")
        }
        return listener
    }

    /// Parses `listening /ip4/127.0.0.1/tcp/PORT/ws/p2p/ID` (also `/wss`, `/tls/ws`,
    /// `/tls/sni/HOST/ws`, `/ip6`, `/dns*`);
    /// nil for anything else.
    static func parseListeningLine(_ line: String) -> Listener? {
        let words = line.split(separator: " ")
        guard words.count == 2, words[0] == "listening", words[1].hasPrefix("/") else { return nil }
        let multiaddr = String(words[1])
        let parts = multiaddr.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard parts.count >= 6, ["ip4", "ip6", "dns", "dns4", "dns6"].contains(parts[0]), !parts[1].isEmpty,
              parts[2] == "tcp", let port = UInt16(parts[3]), port != 0,
              parts[parts.count - 2] == "p2p", !parts[parts.count - 1].isEmpty
        else { return nil }
        let transport = Array(parts[4..<(parts.count - 2)])
        let isSecure: Bool
        if transport == ["ws"] {
            isSecure = false
        } else if transport == ["wss"] || transport == ["tls", "ws"]
            || (transport.count == 4 && transport[0] == "tls" && transport[1] == "sni" && transport[3] == "ws") {
            isSecure = true
        } else {
            return nil
        }
        return Listener(multiaddr: multiaddr, peerID: parts[parts.count - 1], port: port, isSecure: isSecure)
    }
}
