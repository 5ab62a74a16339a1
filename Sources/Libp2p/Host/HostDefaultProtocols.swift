// edgeswap: the identify and ping responders every host registers by default (libp2p/specs
// identify/README.md, ping/ping.md). Minimal encoders live here so the host does not depend on a fuller codec.

import Multiformats
import NIOCore

/// `/ipfs/id/1.0.0` responder.
///
/// identify/README.md: "the peer that opens the stream … The other peer (the responder) sends an Identify
/// message and closes the stream." The message is one uvarint-length-prefixed protobuf:
/// ```
/// message Identify {
///   optional string protocolVersion = 5;  optional string agentVersion = 6;
///   optional bytes publicKey = 1;         repeated bytes listenAddrs = 2;
///   optional bytes observedAddr = 4;      repeated string protocols = 3;
/// }
/// ```
/// "List only protocols you accept inbound" (anchors c.6): the host's registered protocols. Listen addresses
/// are the announce addresses when configured (so `ipfs id` shows the public `wss` address, not localhost).
enum HostIdentify {
    static let protocolID = "/ipfs/id/1.0.0"
    /// go-libp2p's value; peers do not interpret it beyond display.
    static let protocolVersion = "ipfs/0.1.0"

    static func respond(on stream: Libp2pStream, host: Libp2pHost) async throws {
        let message = Self.encode(
            publicKey: host.configuration.identity.publicKey.protobufEncoding,
            listenAddresses: host.advertisedAddresses.map(\.bytes),
            protocols: host.protocols,
            observedAddress: stream.connection.remoteMultiaddr?.bytes,
            agentVersion: host.configuration.agentVersion)
        try await stream.executeThenClose { _, outbound in
            var buffer = ByteBuffer()
            Multistream.writeUVarint(UInt64(message.count), into: &buffer)
            buffer.writeBytes(message)
            try await outbound.write(buffer)
            outbound.finish()
        }
    }

    /// The Identify protobuf (without the length prefix).
    static func encode(publicKey: [UInt8], listenAddresses: [[UInt8]], protocols: [String],
                       observedAddress: [UInt8]?, agentVersion: String) -> [UInt8] {
        var out: [UInt8] = []
        func field(_ number: UInt64, _ bytes: some Collection<UInt8>) {
            appendVarint(number << 3 | 2, to: &out)
            appendVarint(UInt64(bytes.count), to: &out)
            out.append(contentsOf: bytes)
        }
        field(5, Array(Self.protocolVersion.utf8))
        field(6, Array(agentVersion.utf8))
        field(1, publicKey)
        for address in listenAddresses { field(2, address) }
        if let observedAddress { field(4, observedAddress) }
        for proto in protocols { field(3, Array(proto.utf8)) }
        return out
    }

    private static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }
}

/// `/ipfs/ping/1.0.0` responder.
///
/// ping/ping.md: "The dialing peer sends a 32-byte payload of random binary data on an open stream. The
/// listening peer echoes the same 32-byte payload back", repeatedly on the same stream, until the dialer
/// closes it. Bytes are echoed in whole 32-byte units as they complete; a trailing partial payload at EOF is
/// dropped.
enum HostPing {
    static let protocolID = "/ipfs/ping/1.0.0"
    static let payloadLength = 32

    static func respond(on stream: Libp2pStream) async throws {
        try await stream.executeThenClose { inbound, outbound in
            var pending = ByteBuffer()
            for try await var chunk in inbound {
                pending.writeBuffer(&chunk)
                let whole = pending.readableBytes / Self.payloadLength * Self.payloadLength
                if whole > 0 {
                    try await outbound.write(pending.readSlice(length: whole)!)
                    pending.discardReadBytes()
                }
            }
            outbound.finish()
        }
    }
}
