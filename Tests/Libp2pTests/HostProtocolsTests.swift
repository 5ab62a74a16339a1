// Identify and ping between two Libp2pHosts over loopback WebSocket, through the Libp2pConnection initiators.

import Logging
import Multiformats
import NIOCore
import NIOPosix
import Testing

@testable import Libp2p

@Suite struct HostProtocolsTests {
    private func host(listen: [String], group: any EventLoopGroup, announce: [String] = []) throws -> Libp2pHost {
        var logger = Logger(label: "test.protocols")
        logger.logLevel = .critical
        let configuration = Libp2pHostConfiguration(
            identity: .generateEd25519(), listenAddresses: try listen.map { try Multiaddr($0) },
            announceAddresses: try announce.map { try Multiaddr($0) }, logger: logger)
        let host = try Libp2pHost(configuration: configuration, group: group)
        host.registerIdentifyAndPing()
        return host
    }

    @Test func identifyAndPingBetweenTwoHosts() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try host(listen: ["/ip4/127.0.0.1/tcp/0/ws"], group: group,
                              announce: ["/dns4/edge.example.com/tcp/443/wss"])
        let client = try host(listen: [], group: group)
        let addresses = try await server.start()
        _ = try await client.start()
        do {
            let connection = try await client.dial(try #require(addresses.first))
            let message = try await connection.identify()
            #expect(message.protocolVersion == "ipfs/0.1.0")
            #expect(message.agentVersion == server.configuration.agentVersion)
            #expect(try message.decodedPublicKey().peerID == server.peerID)
            #expect(message.listenMultiaddrs.map(\.description) == ["/dns4/edge.example.com/tcp/443/wss"])
            #expect(Set(message.protocols) == Set(server.protocols))
            #expect(message.protocols.contains(Ping.protocolID))
            #expect(message.observedMultiaddr?.description.hasPrefix("/ip4/127.0.0.1/tcp/") == true)

            let rtts = try await connection.ping(count: 3)
            #expect(rtts.count == 3)
            #expect(rtts.allSatisfy { $0 > .zero })
        } catch {
            Issue.record("\(error)")
        }
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func aThirdConcurrentPingStreamIsReset() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try host(listen: ["/ip4/127.0.0.1/tcp/0/ws"], group: group)
        let client = try host(listen: [], group: group)
        let addresses = try await server.start()
        _ = try await client.start()
        do {
            let connection = try await client.dial(try #require(addresses.first))
            // Two ping streams held open (one ping each, not closed), then a third.
            var held: [Libp2pStream] = []
            for _ in 0..<2 {
                let stream = try await connection.openStream(Ping.protocolID)
                try await stream.channel.channel.writeAndFlush(ByteBuffer(bytes: PingInitiator.randomPayload()))
                held.append(stream)
            }
            // Give the server time to count both.
            try await Task.sleep(for: .milliseconds(200))
            await #expect(throws: (any Error).self) { _ = try await connection.ping(count: 1, timeout: .seconds(3)) }
            // Closing one frees a slot.
            try await held[0].channel.channel.close()
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await connection.ping(count: 1).count == 1)
            for stream in held.dropFirst() { try? await stream.channel.channel.close() }
        } catch {
            Issue.record("\(error)")
        }
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }
}
