// BitswapService over loopback: our dialer host sends wants on its own stream and must receive the
// answers on a stream the server opens (as kubo requires), served from an ingested fixture store.

import Bitswap
import BlockStore
import CAR
import EdgeswapServer
import Foundation
import Libp2p
import Logging
import Multiformats
import NIOCore
import NIOPosix
import ObjectStorage
import Testing

/// The generated fixtures, in a directory of this test target's own (the generator skips an up-to-date set).
private let bitswapFixtures = Task { () async throws -> (String, FixtureManifest) in
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-cli-bitswap-fixtures").path
    let outcome = try FixtureGenerator.run(directory: dir)
    return (dir, outcome.manifest)
}

/// Messages a client host receives on Bitswap streams the remote opened.
private final class ReceivedMessages: Sendable {
    enum Event: Sendable {
        /// The remote opened a Bitswap stream to us (the direction as our side sees it).
        case streamOpened(Libp2pDirection, protocolID: String)
        case message(BitswapMessage)
    }
    let stream: AsyncStream<Event>
    let sink: AsyncStream<Event>.Continuation
    init() { (stream, sink) = AsyncStream.makeStream() }
}

private func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return logger
}

private func makeHost(listen: [String], group: any EventLoopGroup) throws -> Libp2pHost {
    try Libp2pHost(configuration: Libp2pHostConfiguration(
        identity: .generateEd25519(), listenAddresses: try listen.map { try Multiaddr($0) },
        logger: quietLogger("test.host")), group: group)
}

private func frame(_ message: BitswapMessage) -> ByteBuffer {
    var buffer = ByteBuffer()
    message.encodeFrame(into: &buffer)
    return buffer
}

/// A fresh filesystem store holding the CAR at `carPath`, and its directory (the caller removes it).
private func ingestedStore(_ carPath: String) async throws -> (FileSystemBucket, String) {
    let root = FileManager.default.temporaryDirectory
        .appendingPathComponent("edgeswap-bitswap-store-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    let bucket = try FileSystemBucket(root: root)
    _ = try await Ingester(store: StoreBuckets(single: bucket)).ingest(path: carPath)
    return (bucket, root)
}

/// The Bitswap service over `bucket`, logging quietly.
private func bitswapService(over bucket: FileSystemBucket) -> BitswapService {
    BitswapService(source: IndexedCARBlockSource(buckets: StoreBuckets(single: bucket), logger: quietLogger("test.store")),
                   logger: quietLogger("test.bitswap"))
}

@Suite struct BitswapServiceTests {
    // The limit only turns a missing answer into a failure instead of a hang.
    @Test(.timeLimit(.minutes(2))) func wantBlockIsAnsweredOnServerOpenedStreamAndMissingGetsDontHave() async throws {
        let (dir, manifest) = try await bitswapFixtures.value
        let fixture = try #require(manifest.fixture(named: "cidv0-20mib"))
        let carPath = dir + "/" + fixture.car
        let (bucket, storeRoot) = try await ingestedStore(carPath)
        defer { try? FileManager.default.removeItem(atPath: storeRoot) }

        // The root block as the CAR holds it: what the server must send, byte for byte.
        let reader = try CARReader(source: try FileByteSource(path: carPath))
        let root = try CID(string: fixture.root)
        var rootBytes: [UInt8]?
        while rootBytes == nil, let (section, data) = try reader.nextBlock() {
            if section.cid == root { rootBytes = data }
        }
        let expectedRoot = try #require(rootBytes)
        // A CID no fixture holds: sha2-256 of bytes that are not a block.
        let missingBytes = Array("not in the store".utf8)
        let missing = CID(codec: Multicodec.raw, multihash: try missingBytes.withUnsafeBytes {
            try Multihash.compute(code: Multicodec.sha2_256, of: $0)
        })

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let server = try makeHost(listen: ["/ip4/127.0.0.1/tcp/0/ws"], group: group)
        let client = try makeHost(listen: [], group: group)
        let service = bitswapService(over: bucket)
        service.register(on: server)
        #expect(Set(server.protocols).isSuperset(of: BitswapProtocolVersion.protocolIDs.map(\.id)))

        let received = ReceivedMessages()
        client.register(protocol: "/ipfs/bitswap/1.2.0") { stream in
            received.sink.yield(.streamOpened(stream.direction, protocolID: stream.protocolID))
            var decoder = BitswapFrameDecoder()
            try await stream.executeThenClose { inbound, _ in
                for try await chunk in inbound {
                    decoder.append(chunk)
                    while let body = try decoder.nextMessage() {
                        received.sink.yield(.message(try BitswapMessage(decoding: body)))
                    }
                }
            }
        }
        let addresses = try await server.start()
        try await client.start()
        do {
            let connection = try await client.dial(try #require(addresses.first))
            // Two want streams on one connection, as boxo opens them: both feed the connection's one engine,
            // and every answer must come back on the single stream the server opens.
            for entry in [BitswapMessage.Entry(cid: root, priority: 10, wantType: .block, sendDontHave: true),
                          BitswapMessage.Entry(cid: missing, priority: 5, wantType: .block, sendDontHave: true)] {
                let wants = try await connection.openStream("/ipfs/bitswap/1.2.0")
                try await wants.executeThenClose { _, outbound in
                    try await outbound.write(frame(BitswapMessage(wantlist: .init(entries: [entry]))))
                    outbound.finish()
                }
            }

            var gotBlock: [UInt8]?
            var gotBlockPrefix: [UInt8]?
            var dontHaves: [CID] = []
            var haves: [CID] = []
            var opened: [(Libp2pDirection, String)] = []
            for await event in received.stream {
                guard case .message(let message) = event else {
                    if case .streamOpened(let direction, let protocolID) = event { opened.append((direction, protocolID)) }
                    continue
                }
                for block in message.payload {
                    gotBlockPrefix = block.prefix
                    gotBlock = Array(block.data.readableBytesView)
                }
                for presence in message.blockPresences {
                    if presence.type == .dontHave { dontHaves.append(presence.cid) } else { haves.append(presence.cid) }
                }
                if gotBlock != nil && !dontHaves.isEmpty { break }
            }
            #expect(gotBlock == expectedRoot)
            #expect(gotBlockPrefix == root.prefix)
            #expect(dontHaves == [missing])
            #expect(haves.isEmpty)
            // One stream, opened by the server (inbound on our side), in the version our wants used.
            #expect(opened.count == 1)
            #expect(opened.first?.0 == .inbound)
            #expect(opened.first?.1 == "/ipfs/bitswap/1.2.0")
            #expect(await service.activeConnections() == 1)
        } catch {
            await client.shutdown()
            await server.shutdown()
            try await group.shutdownGracefully()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    /// The peer resets the server's answer stream; the next answer must arrive on a new server-opened stream.
    @Test(.timeLimit(.minutes(1))) func answerStreamIsReopenedAfterPeerResetsIt() async throws {
        let (dir, manifest) = try await bitswapFixtures.value
        let fixture = try #require(manifest.fixture(named: "rawleaves-3mib"))
        let carPath = dir + "/" + fixture.car
        let (bucket, storeRoot) = try await ingestedStore(carPath)
        defer { try? FileManager.default.removeItem(atPath: storeRoot) }
        let reader = try CARReader(source: try FileByteSource(path: carPath))
        var blocks: [(CID, [UInt8])] = []
        while blocks.count < 2, let (section, data) = try reader.nextBlock() { blocks.append((section.cid, data)) }
        #expect(blocks.count == 2)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let server = try makeHost(listen: ["/ip4/127.0.0.1/tcp/0/ws"], group: group)
        let client = try makeHost(listen: [], group: group)
        bitswapService(over: bucket).register(on: server)
        let received = ReceivedMessages()
        // Reads one message per server-opened stream, then resets that stream.
        client.register(protocol: "/ipfs/bitswap/1.2.0") { stream in
            received.sink.yield(.streamOpened(stream.direction, protocolID: stream.protocolID))
            var decoder = BitswapFrameDecoder()
            var message: BitswapMessage?
            try await stream.executeThenClose { inbound, _ in
                for try await chunk in inbound {
                    decoder.append(chunk)
                    if let body = try decoder.nextMessage() {
                        message = try BitswapMessage(decoding: body)
                        break
                    }
                }
                // Reset while the stream is still open (a close first would only half-close it).
                stream.reset()
            }
            if let message { received.sink.yield(.message(message)) }
        }
        let addresses = try await server.start()
        try await client.start()
        do {
            let connection = try await client.dial(try #require(addresses.first))
            var iterator = received.stream.makeAsyncIterator()
            var opened = 0
            for (cid, bytes) in blocks {
                let wants = try await connection.openStream("/ipfs/bitswap/1.2.0")
                try await wants.executeThenClose { _, outbound in
                    let entry = BitswapMessage.Entry(cid: cid, priority: 1, wantType: .block, sendDontHave: true)
                    try await outbound.write(frame(BitswapMessage(wantlist: .init(entries: [entry]))))
                    outbound.finish()
                }
                var answer: BitswapMessage?
                while answer == nil, let event = await iterator.next() {
                    switch event {
                    case .streamOpened(let direction, _):
                        #expect(direction == .inbound)
                        opened += 1
                    case .message(let message): answer = message
                    }
                }
                let payload = try #require(answer?.payload.first)
                #expect(Array(payload.data.readableBytesView) == bytes, "\(cid)")
                #expect(payload.prefix == cid.prefix)
            }
            // Each answer came on its own server-opened stream: the first was reset before the second want.
            #expect(opened == 2)
        } catch {
            await client.shutdown()
            await server.shutdown()
            try await group.shutdownGracefully()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    /// A message that does not decode ends the stream that carried it (a reset) and nothing else: a want on
    /// another stream of the same connection is still answered.
    @Test(.timeLimit(.minutes(1))) func badMessageResetsOnlyItsStream() async throws {
        let bucket = try FileSystemBucket(root: FileManager.default.temporaryDirectory
            .appendingPathComponent("edgeswap-bitswap-empty-\(UUID().uuidString)").path)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let server = try makeHost(listen: ["/ip4/127.0.0.1/tcp/0/ws"], group: group)
        let client = try makeHost(listen: [], group: group)
        bitswapService(over: bucket).register(on: server)
        let received = ReceivedMessages()
        client.register(protocol: "/ipfs/bitswap/1.2.0") { stream in
            var decoder = BitswapFrameDecoder()
            try await stream.executeThenClose { inbound, _ in
                for try await chunk in inbound {
                    decoder.append(chunk)
                    while let body = try decoder.nextMessage() { received.sink.yield(.message(try BitswapMessage(decoding: body))) }
                }
            }
        }
        let addresses = try await server.start()
        try await client.start()
        do {
            let connection = try await client.dial(try #require(addresses.first))
            let bad = try await connection.openStream("/ipfs/bitswap/1.2.0")
            // Field 1 (wantlist), length-delimited, with a length varint that never ends inside the body.
            var garbage = ByteBuffer()
            garbage.writeBytes([0x03, 0x0a, 0xff, 0xff])
            let ending: String = try await bad.executeThenClose { inbound, outbound in
                try await outbound.write(garbage)
                // No FIN from us: only the server ending the stream ends this loop.
                do {
                    for try await _ in inbound {}
                    return "end of stream (FIN)"
                } catch let error as MuxedStreamResetError {
                    return "reset \(error)"
                } catch {
                    return "error \(error)"
                }
            }
            // A reset, not a FIN: boxo's reader treats a clean end as a finished sender, not a refused message.
            #expect(ending.hasPrefix("reset"), "the bad stream ended with \(ending)")

            let missingBytes = Array("absent".utf8)
            let missing = CID(codec: Multicodec.raw, multihash: try missingBytes.withUnsafeBytes {
                try Multihash.compute(code: Multicodec.sha2_256, of: $0)
            })
            let good = try await connection.openStream("/ipfs/bitswap/1.2.0")
            try await good.executeThenClose { _, outbound in
                let entry = BitswapMessage.Entry(cid: missing, priority: 1, wantType: .have, sendDontHave: true)
                try await outbound.write(frame(BitswapMessage(wantlist: .init(entries: [entry]))))
                outbound.finish()
            }
            var presences: [BitswapMessage.BlockPresence] = []
            for await event in received.stream {
                if case .message(let message) = event { presences = message.blockPresences; break }
            }
            #expect(presences == [.init(cid: missing, type: .dontHave)])
        } catch {
            await client.shutdown()
            await server.shutdown()
            try await group.shutdownGracefully()
            throw error
        }
        await client.shutdown()
        await server.shutdown()
        try await group.shutdownGracefully()
    }
}
