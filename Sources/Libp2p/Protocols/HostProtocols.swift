// edgeswap: identify and ping on a Libp2pHost, built on the sans-IO machines and async services of this
// folder. `Libp2pHost.init` calls `registerIdentifyAndPing`, so every host answers both; the `Libp2pConnection`
// methods are the initiators our dialer uses.

import NIOCore

extension Libp2pHost {
    /// Registers the identify and ping responders (replacing any registered before):
    /// - identify answers with ``IdentifyMessage``: "ipfs/0.1.0", the agent version, our public key, the
    ///   advertised addresses (announce addresses when configured, without `/p2p/`), the address we see the
    ///   peer at, and the protocols registered on this host, i.e. only those we accept inbound;
    /// - ping echoes through `pingService`, which refuses a third concurrent ping stream from one peer
    ///   (ping.md: "SHOULD accept at most two streams per peer"); a refused stream is reset.
    public func registerIdentifyAndPing(pingService: PingService = PingService()) {
        self.register(protocol: IdentifyMessage.protocolID) { [unowned self] stream in
            let message = IdentifyMessage(
                localKey: self.configuration.identity.publicKey, agentVersion: self.configuration.agentVersion,
                listenAddrs: self.advertisedAddresses, observedAddr: stream.connection.remoteMultiaddr,
                protocols: self.protocols)
            try await stream.executeThenClose { _, outbound in
                try await IdentifyService.respond(with: message, outbound: outbound)
            }
        }
        self.register(protocol: Ping.protocolID) { stream in
            let peer = stream.connection.remotePeerID
            _ = try await stream.executeThenClose { inbound, outbound in
                try await pingService.respond(to: peer, inbound: inbound, outbound: outbound)
            }
        }
    }
}

extension Libp2pConnection {
    /// Reads the peer's identify on a new stream and checks that its public key is the one Noise
    /// authenticated.
    public func identify(timeout: Duration = IdentifyService.defaultTimeout) async throws -> IdentifyMessage {
        let stream = try await self.openStream(protocols: [IdentifyMessage.protocolID])
        let peer = self.remotePeerID
        return try await stream.executeThenClose { inbound, outbound in
            try await IdentifyService.request(inbound: inbound, outbound: outbound, expectedPeer: peer,
                                              timeout: timeout)
        }
    }

    /// Runs `count` pings on one new `/ipfs/ping/1.0.0` stream and returns the round-trip times.
    public func ping(count: Int = 1, timeout: Duration = .seconds(10)) async throws -> [Duration] {
        let stream = try await self.openStream(Ping.protocolID)
        return try await stream.executeThenClose { inbound, outbound in
            try await PingService.ping(count: count, inbound: inbound, outbound: outbound, timeout: timeout)
        }
    }
}
