// edgeswap: multistream-select 1.0 as a NIO handler (multiformats/multistream-select README,
// libp2p/specs connections/README.md). The protocol logic lives in MultistreamListener / MultistreamDialer.

import Logging
import NIOCore

/// Why a multistream-select negotiation ended without a protocol.
public enum MultistreamHandlerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer broke the protocol or rejected every proposal (see the wrapped error).
    case negotiationFailed(MultistreamError)
    /// The connection or stream closed (or its input ended) before a protocol was chosen.
    case closedDuringNegotiation(stage: String)
    /// The next stage could not be set up for the chosen protocol (for example a handler that was
    /// unregistered between the proposal and the answer).
    case nextStageFailed(protocol: String, reason: String)

    public var description: String {
        switch self {
        case .negotiationFailed(let error): return "multistream-select failed: \(error)"
        case .closedDuringNegotiation(let stage): return "closed during multistream-select (\(stage))"
        case .nextStageFailed(let proto, let reason): return "cannot start \(proto): \(reason)"
        }
    }
}

/// Runs one multistream-select negotiation on a channel that carries `ByteBuffer`s (a raw WebSocket byte
/// stream, the decrypted Noise stream, or one muxed stream), then gets out of the way.
///
/// All decisions are made by ``MultistreamListener`` / ``MultistreamDialer``; this class only performs I/O:
/// - The listener writes its header as soon as the channel is active ("The listener sends its header
///   immediately"); the dialer writes header and first proposal in one write.
/// - On success it writes the echo (listener) and calls `onSelected` synchronously on the event loop, so the
///   caller can add the next stage's handlers right after this one. Then it forwards the bytes the peer
///   pipelined behind the last token (lazy clients send `header ‖ proto ‖ payload` in one write) to that
///   stage, and removes itself.
/// - On failure (peer error, everything rejected, EOF) it logs the reason, reports it through `onFailed`
///   and `fireErrorCaught`, and closes the channel.
///
/// Lazy dialer mode (one proposal, go-multistream's lazy client): the layers above are set up *before* the
/// negotiation and may write at once; their writes pass through behind our header and proposal. The
/// listener's header and echo are consumed here and never reach them. A `na` fails the channel.
public final class MultistreamSelectHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Called on the event loop with the chosen protocol, before the pipelined bytes are forwarded. Add the
    /// next stage with `context.pipeline.syncOperations` (it lands after this handler). Throwing fails the
    /// negotiation and closes the channel.
    public typealias OnSelected = (_ protocolID: String, _ channel: any Channel) throws -> Void
    /// Called on the event loop when the negotiation fails, before the channel is closed.
    public typealias OnFailed = (_ error: MultistreamHandlerError) -> Void

    private enum Machine {
        case listener(MultistreamListener)
        case dialer(MultistreamDialer)
    }

    private enum State {
        /// Waiting for the channel to become active before writing the first bytes.
        case idle
        /// First bytes written; negotiating.
        case negotiating
        /// A protocol was chosen (the handler is being removed) or the negotiation failed.
        case done
    }

    private var machine: Machine
    private var state = State.idle
    private let stage: String
    private let logger: Logger
    private var onSelected: OnSelected?
    private var onFailed: OnFailed?

    /// A listener: answers proposals from `protocols` (anything else, including `ls`, gets `na`).
    ///
    /// - Parameters:
    ///   - protocols: protocol ids to accept.
    ///   - stage: a short name for logs ("security", "muxer", "stream").
    public init(listening protocols: [String], stage: String, logger: Logger,
                onSelected: @escaping OnSelected, onFailed: OnFailed? = nil) {
        // "Top things": answer `ls` with `na` as go-multistream does; dialers "MUST NOT depend on a remote
        // node supporting ls".
        self.machine = .listener(MultistreamListener(protocols: protocols, lsPolicy: .notAvailable))
        self.stage = stage
        self.logger = logger
        self.onSelected = onSelected
        self.onFailed = onFailed
    }

    /// A dialer proposing `proposals` in order.
    ///
    /// - Parameters:
    ///   - lazy: commit to the single proposal without waiting for the echo (see the type's comment).
    public init(proposing proposals: [String], lazy: Bool = false, stage: String, logger: Logger,
                onSelected: @escaping OnSelected, onFailed: OnFailed? = nil) throws(MultistreamError) {
        self.machine = .dialer(try MultistreamDialer(proposals: proposals, lazy: lazy))
        self.stage = stage
        self.logger = logger
        self.onSelected = onSelected
        self.onFailed = onFailed
    }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            self.start(context: context)
        }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard case .idle = self.state else { return }
        self.state = .negotiating
        let first: ByteBuffer
        switch self.machine {
        case .listener(var listener):
            first = listener.start()
            self.machine = .listener(listener)
        case .dialer(var dialer):
            first = dialer.start()
            self.machine = .dialer(dialer)
        }
        if first.readableBytes > 0 {
            context.writeAndFlush(self.wrapOutboundOut(first), promise: nil)
        }
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .negotiating = self.state else {
            // Bytes that raced with our removal belong to the next stage.
            context.fireChannelRead(data)
            return
        }
        let bytes = self.unwrapInboundIn(data)
        let action: MultistreamAction
        do throws(MultistreamError) {
            switch self.machine {
            case .listener(var listener):
                action = try listener.receive(bytes)
                self.machine = .listener(listener)
            case .dialer(var dialer):
                action = try dialer.receive(bytes)
                self.machine = .dialer(dialer)
            }
        } catch {
            self.fail(.negotiationFailed(error), context: context)
            return
        }
        switch action {
        case .needMoreData(let write):
            if let write {
                context.writeAndFlush(self.wrapOutboundOut(write), promise: nil)
            }
        case .selected(let protocolID, let write, let leftover):
            if let write, write.readableBytes > 0 {
                // The echo is written even if the stream never carries data: lazy dialers wait for it (boxo#1142).
                context.writeAndFlush(self.wrapOutboundOut(write), promise: nil)
            }
            self.select(protocolID, leftover: leftover, context: context)
        }
    }

    private func select(_ protocolID: String, leftover: ByteBuffer, context: ChannelHandlerContext) {
        self.state = .done
        self.logger.trace("multistream-select chose a protocol",
                          metadata: ["stage": "\(self.stage)", "protocol": "\(protocolID)"])
        let onSelected = self.onSelected
        self.onSelected = nil
        self.onFailed = nil
        do {
            try onSelected?(protocolID, context.channel)
        } catch {
            let failure = MultistreamHandlerError.nextStageFailed(protocol: protocolID, reason: "\(error)")
            self.logger.debug("closing after multistream-select",
                              metadata: ["stage": "\(self.stage)", "reason": "\(failure)"])
            context.fireErrorCaught(failure)
            context.close(promise: nil)
            return
        }
        if leftover.readableBytes > 0 {
            context.fireChannelRead(self.wrapInboundOut(leftover))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .negotiating = self.state, let event = event as? ChannelEvent, event == .inputClosed {
            self.fail(.closedDuringNegotiation(stage: self.stage), context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        switch self.state {
        case .idle, .negotiating:
            self.state = .done
            let error = MultistreamHandlerError.closedDuringNegotiation(stage: self.stage)
            self.logger.debug("closed during multistream-select", metadata: ["stage": "\(self.stage)"])
            self.onFailed?(error)
            self.onFailed = nil
            self.onSelected = nil
        case .done:
            break
        }
        context.fireChannelInactive()
    }

    private func fail(_ error: MultistreamHandlerError, context: ChannelHandlerContext) {
        self.state = .done
        self.logger.debug("closing: multistream-select failed",
                          metadata: ["stage": "\(self.stage)", "reason": "\(error)"])
        let onFailed = self.onFailed
        self.onFailed = nil
        self.onSelected = nil
        onFailed?(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension MultistreamSelectHandler: Sendable {}
