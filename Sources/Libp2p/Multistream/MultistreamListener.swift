import NIOCore

/// The listener (responder) side of multistream-select 1.0, as a sans-IO state machine.
///
/// ```
///   awaitingHeader ──"/multistream/1.0.0"──▶ awaitingProposal ──supported proto──▶ selected
///        │ anything else: error                   │ "ls" → list, unknown → "na" (loop)
/// ```
///
/// Rules implemented (multistream-select README; libp2p/specs connections/README.md):
/// - "The listener sends its header immediately": `start()` returns it; if the caller never calls
///   `start()`, the header is prepended to the first write instead.
/// - "Anything other than the header as the first message aborts": `MultistreamError.unexpectedHeader`.
/// - Unknown protocols, including `/libp2p/simultaneous-connect` (which a server must not accept),
///   are answered with `na` and the dialer may propose again.
/// - Pipelined input: header, proposals and application data may arrive in one read; the bytes
///   after the accepted proposal are returned untouched as `leftover`.
/// - The echo of the accepted protocol is always written, even if the caller never writes data on
///   the stream, because lazy dialers block on it (boxo#1142).
/// - `ls`: the README says "Implementations MAY support listing" and the response is
///   `uvarint(total) ‖ (uvarint(len) ‖ proto ‖ '\n')* ‖ '\n'`. `LsPolicy.list` (the default) sends
///   that; `LsPolicy.notAvailable` answers `na` as go-multistream ≥ 0.4 does. Either is allowed
///   because dialers "MUST NOT depend on a remote node supporting ls".
public struct MultistreamListener: Sendable {
    /// How to answer an `ls` request.
    public enum LsPolicy: Sendable, Equatable {
        /// Send the spec's list of supported protocols.
        case list
        /// Answer `na`, as go-multistream does.
        case notAvailable
    }

    private enum State: Sendable {
        case awaitingHeader
        case awaitingProposal
        case finished
    }

    /// Protocols this listener accepts, in the order `ls` lists them.
    public let protocols: [String]
    private let supported: Set<String>
    private let lsPolicy: LsPolicy
    private var reader: MultistreamTokenReader
    private var state: State = .awaitingHeader
    private var headerSent = false

    /// - Parameters:
    ///   - protocols: the protocol ids to accept.
    ///   - lsPolicy: how to answer `ls`.
    ///   - maxTokenLength: cap on one token including its newline (go-multistream: 1024).
    public init(protocols: [String], lsPolicy: LsPolicy = .list,
                maxTokenLength: Int = Multistream.defaultMaxTokenLength) {
        self.protocols = protocols
        self.supported = Set(protocols)
        self.lsPolicy = lsPolicy
        self.reader = MultistreamTokenReader(maxTokenLength: maxTokenLength)
    }

    /// The header to write as soon as the connection or stream is up.
    public mutating func start() -> ByteBuffer {
        var out = ByteBuffer()
        if !self.headerSent {
            self.headerSent = true
            Multistream.writeMessage(Multistream.header, into: &out)
        }
        return out
    }

    /// Feeds received bytes; returns what to write and whether a protocol was selected.
    public mutating func receive(_ bytes: ByteBuffer) throws(MultistreamError) -> MultistreamAction {
        if case .finished = self.state { throw .negotiationFinished }
        return try self.process(bytes)
    }

    private mutating func process(_ bytes: ByteBuffer) throws(MultistreamError) -> MultistreamAction {
        self.reader.append(bytes)
        var out = self.start()
        do throws(MultistreamError) {
            while let token = try self.reader.nextToken() {
                switch self.state {
                case .awaitingHeader:
                    guard token == Multistream.header else { throw MultistreamError.unexpectedHeader(token) }
                    self.state = .awaitingProposal
                case .awaitingProposal:
                    if token == Multistream.list && self.lsPolicy == .list {
                        self.writeList(into: &out)
                    } else if self.supported.contains(token) {
                        Multistream.writeMessage(token, into: &out)
                        self.state = .finished
                        return .selected(protocol: token, write: out, leftover: self.reader.takeRemaining())
                    } else {
                        Multistream.writeMessage(Multistream.notAvailable, into: &out)
                    }
                case .finished:
                    preconditionFailure("tokens are not read after selection")
                }
            }
        } catch {
            self.state = .finished
            throw error
        }
        return .needMoreData(write: out.readableBytes > 0 ? out : nil)
    }

    /// The `ls` answer: `uvarint(total) ‖ (uvarint(len) ‖ proto ‖ '\n')* ‖ '\n'`.
    private func writeList(into out: inout ByteBuffer) {
        var body = ByteBuffer()
        for proto in self.protocols {
            Multistream.writeMessage(proto, into: &body)
        }
        body.writeInteger(UInt8(ascii: "\n"))
        Multistream.writeUVarint(UInt64(body.readableBytes), into: &out)
        out.writeBuffer(&body)
    }
}
