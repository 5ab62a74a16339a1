// edgeswap: WebSocket multiaddrs (libp2p/specs websockets/README.md § Addressing).

import Multiformats
import NIOCore

/// A WebSocket endpoint as libp2p writes it: `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/ws`, `…/wss`,
/// `…/tls/ws` or `…/tls/sni/<name>/ws`, optionally followed by `/p2p/<peer id>`.
///
/// websockets/README.md: "`/wss` is equivalent to `/tls/ws`"; "WebSocket implies TCP". The `/tls/sni/<name>`
/// form names the TLS server name to send, for dialing an IP address with a certificate for a name.
public struct WebSocketMultiaddr: Sendable, Hashable, CustomStringConvertible {
    /// How the address spells TLS, kept so the address can be printed back the same way.
    public enum Security: Sendable, Hashable {
        /// `/ws`: plain WebSocket.
        case plain
        /// `/wss`.
        case wss
        /// `/tls/ws` or `/tls/sni/<name>/ws`.
        case tlsWS(serverName: String?)
    }

    /// The host component as written (`ip4`, `ip6`, `dns`, `dns4`, `dns6`).
    public let hostComponent: Multiaddr.Component
    /// The host as text (an IP address or a DNS name).
    public let host: String
    /// The TCP port (0 in a listen address means "any free port").
    public let port: Int
    /// Plain or TLS, and how TLS was written.
    public let security: Security
    /// The `/p2p` peer id, if the address names one.
    public let peerID: PeerID?

    /// Whether the address uses TLS.
    public var isSecure: Bool { self.security != .plain }

    /// Parses a WebSocket multiaddr, or throws ``Libp2pHostError/unsupportedAddress(_:reason:)`` naming what is
    /// wrong with it.
    public init(_ multiaddr: Multiaddr) throws(Libp2pHostError) {
        let text = multiaddr.description
        func reject(_ why: String) -> Libp2pHostError { .unsupportedAddress(text, reason: why) }
        var parts = multiaddr.components[...]
        var peerID: PeerID?
        if case .p2p(let mh) = parts.last {
            do {
                peerID = try PeerID(multihash: mh)
            } catch {
                throw reject("invalid /p2p peer id: \(error)")
            }
            parts = parts.dropLast()
        }
        guard let first = parts.popFirst() else { throw reject("empty address") }
        switch first {
        case .ip4(let a): self.host = a.description
        case .ip6(let a): self.host = a.description
        case .dns(let s), .dns4(let s), .dns6(let s): self.host = s
        default: throw reject("must start with /ip4, /ip6, /dns, /dns4 or /dns6")
        }
        self.hostComponent = first
        guard case .tcp(let port) = parts.popFirst() else { throw reject("the host must be followed by /tcp/<port>") }
        self.port = Int(port)
        switch Array(parts) {
        case [.ws]: self.security = .plain
        case [.wss]: self.security = .wss
        case [.tls, .ws]: self.security = .tlsWS(serverName: nil)
        default:
            if parts.count == 3, case .tls = parts[parts.startIndex], case .sni(let name) = parts[parts.startIndex + 1],
               case .ws = parts[parts.startIndex + 2] {
                self.security = .tlsWS(serverName: name)
            } else {
                throw reject("after /tcp/<port> expected /ws, /wss, /tls/ws or /tls/sni/<name>/ws")
            }
        }
        self.peerID = peerID
    }

    /// The multiaddr with another port and/or peer id.
    public func multiaddr(port: Int? = nil, peerID: PeerID? = nil) -> Multiaddr {
        var components: [Multiaddr.Component] = [self.hostComponent, .tcp(UInt16(port ?? self.port))]
        switch self.security {
        case .plain: components.append(.ws)
        case .wss: components.append(.wss)
        case .tlsWS(let name):
            components.append(.tls)
            if let name { components.append(.sni(name)) }
            components.append(.ws)
        }
        if let peer = peerID ?? self.peerID { components.append(.p2p(peer.multihash)) }
        return Multiaddr(components)
    }

    public var description: String { self.multiaddr().description }

    /// `/ip4|ip6/<address>/tcp/<port>/ws|wss` for a socket address, e.g. the remote end of a connection.
    public static func multiaddr(for address: SocketAddress, secure: Bool) -> Multiaddr? {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        let host: Multiaddr.Component
        switch address.protocol {
        case .inet:
            guard let a = IPv4Address(ip) else { return nil }
            host = .ip4(a)
        case .inet6:
            guard let a = IPv6Address(ip) else { return nil }
            host = .ip6(a)
        default:
            return nil
        }
        return Multiaddr([host, .tcp(UInt16(port)), secure ? .wss : .ws])
    }
}
