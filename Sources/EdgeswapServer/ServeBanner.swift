import Foundation

/// The startup banner `edgeswap serve --print-roots fixtures.json` writes to stdout after its `listening`
/// lines: where to dial, which roots are served under which names, and the kubo commands that fetch them.
///
/// It is for a person at a terminal (`make run`), so it names things the way a kubo user types them:
/// `ipfs swarm connect <multiaddr>/p2p/<peer ID>` first (kubo's bitswap asks connected peers, and nothing
/// announces edgeswap to the DHT), then `ipfs cat` / `ipfs get` / `ipfs block get` by CID.
public enum ServeBanner {
    /// The banner's lines.
    ///
    /// - Parameters:
    ///   - manifest: the `fixtures.json` whose roots are listed.
    ///   - manifestPath: where it was read from (shown in the first line).
    ///   - addresses: the bound listen addresses, each ending in `/p2p/<peer ID>`. An unspecified bind
    ///     address (`/ip4/0.0.0.0`, `/ip6/::`) is shown as loopback, the address a local kubo can dial.
    public static func lines(manifest: FixtureManifest, manifestPath: String, addresses: [String]) -> [String] {
        let dialable = addresses.map(Self.dialable)
        var lines: [String] = []
        lines.append("serving \(manifest.fixtures.count) fixtures from \(manifestPath):")
        let width = manifest.fixtures.map(\.name.count).max() ?? 0
        for fixture in manifest.fixtures {
            let name = fixture.name.padding(toLength: width, withPad: " ", startingAt: 0)
            lines.append("  \(name)  \(fixture.root)  \(fixture.summary)")
            for extra in fixture.roots.dropFirst() {
                let what = fixture.sources.first { $0.cid == extra }.map { " (\($0.path))" } ?? ""
                lines.append("  \(String(repeating: " ", count: width))  \(extra)  also a root\(what)")
            }
        }
        for address in dialable {
            lines.append("dial: \(address)")
        }
        guard let first = dialable.first else { return lines }
        lines.append("fetch with kubo (with `ipfs daemon` running, in another terminal):")
        lines.append("  ipfs swarm connect \(first)")
        for fixture in manifest.fixtures {
            if fixture.sha256 != nil {
                lines.append("  ipfs cat \(fixture.root) > \(fixture.name).bin")
            } else {
                lines.append("  ipfs get \(fixture.root) -o \(fixture.name)")
            }
            for extra in fixture.roots.dropFirst() {
                // Named after its source file when the manifest has one (`raw-block.bin`).
                let file = fixture.sources.first { $0.cid == extra }.map { ($0.path as NSString).lastPathComponent }
                lines.append("  ipfs block get \(extra) > \(file ?? "\(extra.prefix(12)).bin")")
            }
        }
        return lines
    }

    /// `/ip4/0.0.0.0/...` -> `/ip4/127.0.0.1/...`, `/ip6/::/...` -> `/ip6/::1/...`; others unchanged.
    static func dialable(_ address: String) -> String {
        if address.hasPrefix("/ip4/0.0.0.0/") { return "/ip4/127.0.0.1/" + address.dropFirst("/ip4/0.0.0.0/".count) }
        if address.hasPrefix("/ip6/::/") { return "/ip6/::1/" + address.dropFirst("/ip6/::/".count) }
        return address
    }
}
