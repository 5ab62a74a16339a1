// edgeswap: libp2p identify (`/ipfs/id/1.0.0`). The Identify protobuf, its encoder and a bounded decoder.
// Spec: libp2p/specs identify/README.md; schema go-libp2p p2p/protocol/identify/pb/identify.proto.

import ProtobufWire
import Multiformats
import NIOCore

/// The `Identify` protobuf message (proto2):
///
/// ```
/// message Identify {
///   optional string protocolVersion = 5;
///   optional string agentVersion = 6;
///   optional bytes publicKey = 1;
///   repeated bytes listenAddrs = 2;
///   optional bytes observedAddr = 4;
///   repeated string protocols = 3;
///   optional bytes signedPeerRecord = 8;
/// }
/// ```
///
/// Multiaddrs are kept as their binary bytes: a peer may announce transports this build cannot parse
/// (`/quic-v1`, `/webtransport/certhash/...`), and that must not make its whole identify unreadable.
/// `listenMultiaddrs` and `observedMultiaddr` give the ones that parse.
public struct IdentifyMessage: Sendable, Equatable {
    /// The protocol family version; libp2p peers send `"ipfs/0.1.0"`.
    public var protocolVersion: String?
    /// Free-form implementation name and version, e.g. `"edgeswap/0.1.0"` or `"kubo/0.22.0/"`.
    public var agentVersion: String?
    /// The sender's `PublicKey` protobuf (libp2p key encoding).
    public var publicKey: [UInt8]?
    /// Binary multiaddrs the sender listens on.
    public var listenAddrs: [[UInt8]]
    /// The binary multiaddr the sender sees the receiver connecting from.
    public var observedAddr: [UInt8]?
    /// Protocol ids the sender accepts on inbound streams.
    public var protocols: [String]
    /// A signed peer record envelope; decoded when present, never sent by edgeswap.
    public var signedPeerRecord: [UInt8]?

    /// The protocol id of identify.
    public static let protocolID = "/ipfs/id/1.0.0"
    /// The protocol id of identify push, which carries the same message.
    public static let pushProtocolID = "/ipfs/id/push/1.0.0"
    /// The `protocolVersion` libp2p peers send.
    public static let libp2pProtocolVersion = "ipfs/0.1.0"

    /// Field numbers of the schema above.
    enum Field {
        static let publicKey: UInt64 = 1
        static let listenAddrs: UInt64 = 2
        static let protocols: UInt64 = 3
        static let observedAddr: UInt64 = 4
        static let protocolVersion: UInt64 = 5
        static let agentVersion: UInt64 = 6
        static let signedPeerRecord: UInt64 = 8
    }

    /// Creates a message from its fields.
    public init(protocolVersion: String? = nil, agentVersion: String? = nil, publicKey: [UInt8]? = nil,
                listenAddrs: [[UInt8]] = [], observedAddr: [UInt8]? = nil, protocols: [String] = [],
                signedPeerRecord: [UInt8]? = nil) {
        self.protocolVersion = protocolVersion
        self.agentVersion = agentVersion
        self.publicKey = publicKey
        self.listenAddrs = listenAddrs
        self.observedAddr = observedAddr
        self.protocols = protocols
        self.signedPeerRecord = signedPeerRecord
    }

    /// The message edgeswap sends about itself: `protocolVersion` "ipfs/0.1.0", the agent version, our public
    /// key, listen addresses (without `/p2p/`), the observed address of the remote, and the protocols we
    /// accept inbound. identify/README.md: protocols "is a list of protocols supported by the peer"; we list
    /// only protocols accepted inbound, so peers never open streams we would refuse.
    public init(localKey: PublicKey, agentVersion: String, listenAddrs: [Multiaddr], observedAddr: Multiaddr?,
                protocols: [String]) {
        self.init(protocolVersion: Self.libp2pProtocolVersion, agentVersion: agentVersion,
                  publicKey: localKey.protobufEncoding,
                  listenAddrs: listenAddrs.map { $0.withoutPeerID.bytes },
                  observedAddr: observedAddr.map { $0.withoutPeerID.bytes },
                  protocols: protocols, signedPeerRecord: nil)
    }

    /// The protobuf encoding, fields in field-number order (as Go's marshaller writes them).
    public var protobufEncoding: [UInt8] {
        var out: [UInt8] = []
        if let publicKey { ProtoWire.appendBytesField(field: Field.publicKey, publicKey, to: &out) }
        for address in listenAddrs { ProtoWire.appendBytesField(field: Field.listenAddrs, address, to: &out) }
        for proto in protocols { ProtoWire.appendBytesField(field: Field.protocols, Array(proto.utf8), to: &out) }
        if let observedAddr { ProtoWire.appendBytesField(field: Field.observedAddr, observedAddr, to: &out) }
        if let protocolVersion {
            ProtoWire.appendBytesField(field: Field.protocolVersion, Array(protocolVersion.utf8), to: &out)
        }
        if let agentVersion { ProtoWire.appendBytesField(field: Field.agentVersion, Array(agentVersion.utf8), to: &out) }
        if let signedPeerRecord { ProtoWire.appendBytesField(field: Field.signedPeerRecord, signedPeerRecord, to: &out) }
        return out
    }

    /// The protobuf encoding behind its uvarint length: what the identify responder writes on the stream.
    public func writeDelimited(into buffer: inout ByteBuffer) {
        let body = self.protobufEncoding
        var prefix: [UInt8] = []
        ProtoWire.appendVarint(UInt64(body.count), to: &prefix)
        buffer.writeBytes(prefix)
        buffer.writeBytes(body)
    }

    /// Decodes one `Identify` protobuf (without its length prefix). Unknown fields are skipped, as proto2
    /// requires; a known field with the wrong wire type or a string that is not UTF-8 is refused.
    public init(protobuf bytes: [UInt8]) throws(IdentifyError) {
        guard bytes.count <= IdentifyReader.maximumMessageSize else {
            throw .messageTooLarge(length: UInt64(bytes.count), limit: IdentifyReader.maximumMessageSize)
        }
        let fields: [ProtoWire.Field]
        do {
            fields = try ProtoWire.fields(bytes)
        } catch {
            throw .malformedProtobuf("\(error)")
        }
        self.init()
        for field in fields {
            let name: String
            switch field.number {
            case Field.publicKey: name = "publicKey"
            case Field.listenAddrs: name = "listenAddrs"
            case Field.protocols: name = "protocols"
            case Field.observedAddr: name = "observedAddr"
            case Field.protocolVersion: name = "protocolVersion"
            case Field.agentVersion: name = "agentVersion"
            case Field.signedPeerRecord: name = "signedPeerRecord"
            default: continue
            }
            guard field.wireType == .lengthDelimited else {
                throw .wrongWireType(field: name, wireType: field.wireType.rawValue)
            }
            let value = Array(bytes[field.bytes])
            func text() throws(IdentifyError) -> String {
                guard let string = String(validating: value, as: UTF8.self) else { throw .invalidUTF8(field: name) }
                return string
            }
            switch field.number {
            case Field.publicKey: self.publicKey = value
            case Field.listenAddrs: self.listenAddrs.append(value)
            case Field.protocols: self.protocols.append(try text())
            case Field.observedAddr: self.observedAddr = value
            case Field.protocolVersion: self.protocolVersion = try text()
            case Field.agentVersion: self.agentVersion = try text()
            default: self.signedPeerRecord = value
            }
        }
    }

    /// Merges a later message into this one with protobuf merge rules (what go-libp2p does with a split
    /// identify): a later singular field replaces an earlier one, repeated fields are concatenated.
    public mutating func merge(_ later: IdentifyMessage) {
        if let value = later.protocolVersion { self.protocolVersion = value }
        if let value = later.agentVersion { self.agentVersion = value }
        if let value = later.publicKey { self.publicKey = value }
        if let value = later.observedAddr { self.observedAddr = value }
        if let value = later.signedPeerRecord { self.signedPeerRecord = value }
        self.listenAddrs += later.listenAddrs
        self.protocols += later.protocols
    }

    /// The listen addresses that parse as multiaddrs this build knows.
    public var listenMultiaddrs: [Multiaddr] {
        listenAddrs.compactMap { try? Multiaddr(bytes: $0) }
    }

    /// The observed address, when present and parseable.
    public var observedMultiaddr: Multiaddr? {
        observedAddr.flatMap { try? Multiaddr(bytes: $0) }
    }

    /// The sender's public key, decoded. Throws when absent or malformed.
    public func decodedPublicKey() throws(IdentifyError) -> PublicKey {
        guard let publicKey else { throw .missingPublicKey }
        do {
            return try PublicKey(protobuf: publicKey)
        } catch {
            throw .invalidPublicKey("\(error)")
        }
    }
}

/// Why an identify exchange failed. Each case names the rule that was broken.
public enum IdentifyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A length prefix announced more than the per-message limit (go-libp2p: 8 KiB).
    case messageTooLarge(length: UInt64, limit: Int)
    /// More delimited messages than the reader accepts (go-libp2p merges at most 10).
    case tooManyMessages(limit: Int)
    /// The uvarint length prefix is malformed (too long or not minimal).
    case badLengthPrefix
    /// The stream ended inside a length prefix or message body.
    case truncated(buffered: Int)
    /// The stream ended before any message.
    case noMessage
    /// The protobuf bytes are malformed.
    case malformedProtobuf(String)
    /// A known field came with a wire type other than length-delimited.
    case wrongWireType(field: String, wireType: UInt8)
    /// A string field is not valid UTF-8.
    case invalidUTF8(field: String)
    /// The message carries no public key, so the sender's identity cannot be checked.
    case missingPublicKey
    /// The public key does not decode.
    case invalidPublicKey(String)
    /// The public key does not belong to the peer ID authenticated by the secure channel.
    case publicKeyMismatch(expected: String, got: String)
    /// Bytes arrived after the reader had finished.
    case alreadyFinished

    public var description: String {
        switch self {
        case .messageTooLarge(let length, let limit): "identify message of \(length) bytes exceeds \(limit)"
        case .tooManyMessages(let limit): "more than \(limit) identify messages on one stream"
        case .badLengthPrefix: "malformed identify length prefix"
        case .truncated(let buffered): "identify stream ended inside a message (\(buffered) bytes buffered)"
        case .noMessage: "identify stream ended without a message"
        case .malformedProtobuf(let why): "identify message is not a valid protobuf: \(why)"
        case .wrongWireType(let field, let wireType): "identify field \(field) has wire type \(wireType)"
        case .invalidUTF8(let field): "identify field \(field) is not UTF-8"
        case .missingPublicKey: "identify message has no public key"
        case .invalidPublicKey(let why): "identify public key is invalid: \(why)"
        case .publicKeyMismatch(let expected, let got):
            "identify public key belongs to \(got), not the connected peer \(expected)"
        case .alreadyFinished: "identify reader already finished"
        }
    }
}

/// Sans-IO reader of the identify stream: uvarint-delimited `Identify` messages until the remote closes.
///
/// go-libp2p (`p2p/protocol/identify/id.go`) reads each message with a delimited reader capped at
/// `signedIDSize = 8 * 1024` and merges up to `maxMessages = 10` of them, so a large identify may arrive
/// split. The length prefix is checked against the cap before any body byte is buffered.
public struct IdentifyReader: Sendable {
    /// The per-message cap (go-libp2p `signedIDSize`).
    public static let maximumMessageSize = 8 * 1024
    /// The most delimited messages merged from one stream (go-libp2p `maxMessages`).
    public static let maximumMessages = 10

    private var buffer: ByteBuffer
    private var merged: IdentifyMessage?
    private var count = 0
    private var finished = false

    /// Creates a reader.
    public init() {
        self.buffer = ByteBuffer()
    }

    /// The number of complete messages read so far.
    public var messageCount: Int { count }

    /// Feeds stream bytes; parses every complete message they finish.
    public mutating func receive(_ bytes: ByteBuffer) throws(IdentifyError) {
        guard !finished else { throw .alreadyFinished }
        var bytes = bytes
        self.buffer.writeBuffer(&bytes)
        while let body = try self.nextBody() {
            guard count < Self.maximumMessages else {
                self.finished = true
                throw .tooManyMessages(limit: Self.maximumMessages)
            }
            let message = try IdentifyMessage(protobuf: body)
            count += 1
            if merged == nil { merged = message } else { merged!.merge(message) }
        }
        self.buffer.discardReadBytes()
    }

    /// The remote closed its write side: returns the merged message.
    public mutating func finish() throws(IdentifyError) -> IdentifyMessage {
        guard !finished else { throw .alreadyFinished }
        self.finished = true
        guard self.buffer.readableBytes == 0 else { throw .truncated(buffered: self.buffer.readableBytes) }
        guard let merged else { throw .noMessage }
        return merged
    }

    /// Takes one length-delimited body off the buffer, or nil when it is not complete yet.
    private mutating func nextBody() throws(IdentifyError) -> [UInt8]? {
        let readable = self.buffer.readableBytesView
        guard !readable.isEmpty else { return nil }
        let decoded: (value: UInt64, length: Int)
        do {
            decoded = try Varint.decode(readable)
        } catch .truncated {
            guard readable.count < Varint.maxLength else { throw .badLengthPrefix }
            return nil
        } catch {
            throw .badLengthPrefix
        }
        guard decoded.value <= UInt64(Self.maximumMessageSize) else {
            throw .messageTooLarge(length: decoded.value, limit: Self.maximumMessageSize)
        }
        let length = Int(decoded.value)
        guard readable.count - decoded.length >= length else { return nil }
        self.buffer.moveReaderIndex(forwardBy: decoded.length)
        return self.buffer.readBytes(length: length)
    }
}
