import NIOCore

/// The dialer (initiator) side of multistream-select 1.0, as a sans-IO state machine.
///
/// ```
///   start() writes header ‖ proposal[0] (‖ data when lazy)
///   awaitingHeader ──"/multistream/1.0.0"──▶ awaitingAnswer(i)
///   awaitingAnswer(i) ──echo of proposal[i]──▶ selected
///                     ──"na"──▶ write proposal[i+1], awaitingAnswer(i+1)   (error when none left)
/// ```
///
/// "The initiator SHOULD send the multistream protocol AND the desired protocol in the same packet"
/// (README, Implementation Recommendations), so `start()` always returns both. In lazy mode
/// (go-multistream's `NewMSSelect`/lazy client, used by go-libp2p once identify listed the protocol)
/// the caller's first application bytes go in the same write, which commits the dialer to its first
/// proposal: a later `na` is `MultistreamError.lazyProtocolRejected`.
public struct MultistreamDialer: Sendable {
    private enum State: Sendable {
        case idle
        case awaitingHeader(proposal: Int)
        case awaitingAnswer(proposal: Int)
        case finished
    }

    /// Protocols to propose, most preferred first.
    public let proposals: [String]
    /// Whether the first proposal is sent together with application data and no fallback is tried.
    public let lazy: Bool
    private var reader: MultistreamTokenReader
    private var state: State = .idle

    /// - Parameters:
    ///   - proposals: protocol ids, most preferred first; must not be empty.
    ///   - lazy: send header, first proposal and initial data in one write, with no fallback.
    ///   - maxTokenLength: cap on one received token including its newline.
    public init(proposals: [String], lazy: Bool = false,
                maxTokenLength: Int = Multistream.defaultMaxTokenLength) throws(MultistreamError) {
        guard !proposals.isEmpty else { throw .noProtocolsToPropose }
        self.proposals = proposals
        self.lazy = lazy
        self.reader = MultistreamTokenReader(maxTokenLength: maxTokenLength)
    }

    /// The first write: header and first proposal, followed by `initialData` in lazy mode.
    /// `initialData` is ignored when not lazy (data must wait for the echo).
    public mutating func start(initialData: ByteBuffer? = nil) -> ByteBuffer {
        precondition({ if case .idle = self.state { return true } else { return false } }(),
                     "start() called twice")
        var out = ByteBuffer()
        Multistream.writeMessage(Multistream.header, into: &out)
        Multistream.writeMessage(self.proposals[0], into: &out)
        if self.lazy, var data = initialData {
            out.writeBuffer(&data)
        }
        self.state = .awaitingHeader(proposal: 0)
        return out
    }

    /// Feeds bytes from the listener.
    public mutating func receive(_ bytes: ByteBuffer) throws(MultistreamError) -> MultistreamAction {
        switch self.state {
        case .idle:
            preconditionFailure("receive(_:) before start()")
        case .finished:
            throw .negotiationFinished
        case .awaitingHeader, .awaitingAnswer:
            break
        }
        self.reader.append(bytes)
        var out = ByteBuffer()
        do throws(MultistreamError) {
            while let token = try self.reader.nextToken() {
                switch self.state {
                case .awaitingHeader(let proposal):
                    guard token == Multistream.header else { throw .unexpectedHeader(token) }
                    self.state = .awaitingAnswer(proposal: proposal)
                case .awaitingAnswer(let proposal):
                    let proposed = self.proposals[proposal]
                    if token == proposed {
                        self.state = .finished
                        return .selected(protocol: proposed, write: out.readableBytes > 0 ? out : nil,
                                         leftover: self.reader.takeRemaining())
                    }
                    guard token == Multistream.notAvailable else {
                        throw .unexpectedResponse(proposed: proposed, received: token)
                    }
                    if self.lazy { throw .lazyProtocolRejected(proposed) }
                    let next = proposal + 1
                    guard next < self.proposals.count else { throw .allProtocolsRejected(self.proposals) }
                    Multistream.writeMessage(self.proposals[next], into: &out)
                    self.state = .awaitingAnswer(proposal: next)
                case .idle, .finished:
                    preconditionFailure("unreachable: checked above")
                }
            }
        } catch {
            self.state = .finished
            throw error
        }
        return .needMoreData(write: out.readableBytes > 0 ? out : nil)
    }
}
