import EdgeswapTestSupport
import Foundation
import Testing

/// The harness itself: namespace guard, venv, ports, process control, `listening` line parsing.
@Suite struct HarnessTests {
    @Test func runsInLoopbackOnlyNamespace() throws {
        try InteropEnvironment.requirePrivateNetworkNamespace()
        #expect(try InteropEnvironment.networkInterfaces() == ["lo"])
    }

    @Test func findsPackageRootScriptsAndVenv() throws {
        let root = try InteropEnvironment.packageRoot()
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path))
        for script in ["kubo_peer.py", "pylibp2p_peer.py", "test_tls.py", "common.py"] {
            let path = try InteropEnvironment.scriptsDirectory().appendingPathComponent(script).path
            #expect(FileManager.default.fileExists(atPath: path), "\(path)")
        }
        #expect(FileManager.default.isExecutableFile(atPath: try InteropEnvironment.venvPython().path))
    }

    @Test func allocatesDistinctBindablePorts() throws {
        let ports = try (0..<20).map { _ in try LoopbackPorts.allocate() }
        #expect(Set(ports).count == ports.count)
        #expect(ports.allSatisfy { $0 > 0 })
    }

    @Test func waitsForLineThenStopsWithSigterm() async throws {
        let directory = try TestDirectory(name: "harness-sigterm")
        defer { directory.remove() }
        let process = try ManagedProcess(
            name: "sh", executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: ["-c", "echo starting; echo 'listening /ip4/127.0.0.1/tcp/9/ws/p2p/X'; exec sleep 60"],
            directory: directory)
        let line = try await process.waitForLine(matching: "^listening /ip4/", timeout: .seconds(10))
        #expect(line == "listening /ip4/127.0.0.1/tcp/9/ws/p2p/X")
        let clock = ContinuousClock()
        let start = clock.now
        process.terminate(grace: .seconds(10))
        #expect(!process.isRunning)
        #expect(clock.now - start < .seconds(5), "SIGTERM alone should have stopped sleep")
    }

    @Test func escalatesToSigkillWhenSigtermIsIgnored() async throws {
        let directory = try TestDirectory(name: "harness-sigkill")
        defer { directory.remove() }
        let process = try ManagedProcess(
            name: "stubborn", executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: ["-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"], directory: directory)
        _ = try await process.waitForLine(matching: "^ready$", timeout: .seconds(10))
        process.terminate(grace: .milliseconds(300))
        #expect(!process.isRunning)
    }

    @Test func failsWhenNoLineArrivesInTime() async throws {
        let directory = try TestDirectory(name: "harness-timeout")
        defer { directory.remove() }
        let process = try ManagedProcess(name: "silent", executable: URL(fileURLWithPath: "/bin/sh"),
                                         arguments: ["-c", "echo other; exec sleep 60"], directory: directory)
        defer { process.terminate() }
        await #expect(throws: InteropHarnessError.self) {
            _ = try await process.waitForLine(matching: "^never", timeout: .milliseconds(300))
        }
        let exited = try ManagedProcess(name: "quits", executable: URL(fileURLWithPath: "/bin/sh"),
                                        arguments: ["-c", "echo bye >&2; exit 3"], directory: directory)
        await #expect(throws: InteropHarnessError.self) {
            _ = try await exited.waitForLine(matching: "^never", timeout: .seconds(10))
        }
        #expect(try await exited.waitForExit(timeout: .seconds(5)) == 3)
        #expect(exited.stderr() == "bye\n")
    }

    @Test func parsesListeningLines() throws {
        let ws = try #require(EdgeswapServe.parseListeningLine(
            "listening /ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWAbc"))
        #expect(ws == .init(multiaddr: "/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooWAbc", peerID: "12D3KooWAbc",
                            port: 4001, isSecure: false))
        let wss = try #require(EdgeswapServe.parseListeningLine("listening /ip4/127.0.0.1/tcp/4443/wss/p2p/Qm1"))
        #expect(wss.isSecure && wss.port == 4443 && wss.peerID == "Qm1")
        #expect(EdgeswapServe.parseListeningLine("listening /ip4/127.0.0.1/tcp/4443/tls/sni/localhost/ws/p2p/Q")?
            .isSecure == true)
        for bad in ["listening", "listening /ip4/127.0.0.1/tcp/4001/ws", "listening /ip4/127.0.0.1/tcp/0/ws/p2p/X",
                    "listening /ip4/127.0.0.1/udp/4001/ws/p2p/X", "listening /ip4/127.0.0.1/tcp/4001/p2p/X",
                    "ready /ip4/127.0.0.1/tcp/4001/ws/p2p/X", "listening /ip4/127.0.0.1/tcp/4001/ws/p2p/"] {
            #expect(EdgeswapServe.parseListeningLine(bad) == nil, "\(bad)")
        }
    }
}
