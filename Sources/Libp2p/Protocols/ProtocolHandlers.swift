// edgeswap: NIO stream handlers for identify and ping. Each sits on one muxed stream channel after
// multistream-select chose its protocol: ByteBuffer in, ByteBuffer out, the remote's end of writing seen as
// `ChannelEvent.inputClosed` (the stream channel must allow remote half-closure), our end as
// `close(mode: .output)`. The protocol logic lives in the sans-IO machines next to this file.

import Logging
import NIOCore

/// Writes one length-delimited identify message, then closes the stream's write side. Identify spec: "the
/// peer ... opening the stream ... the other side responds with an Identify message and closes the stream".
public final class IdentifyResponderHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let message: IdentifyMessage
    private let logger: Logger
    private var sent = false

    /// Creates a handler that sends `message`.
    public init(message: IdentifyMessage, logger: Logger) {
        self.message = message
        self.logger = logger
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.send(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.send(context: context)
        context.fireChannelActive()
    }

    private func send(context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        var buffer = context.channel.allocator.buffer(capacity: 512)
        message.writeDelimited(into: &buffer)
        let logger = self.logger
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).flatMap {
            context.close(mode: .output)
        }.whenFailure { error in
            logger.debug("identify response not delivered", metadata: ["error": "\(error)"])
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The dialer has nothing to say on this protocol; anything it sends is dropped.
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // Our message is written and our side is closed (or closing); the stream is finished.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Reads the remote's identify (until it closes its write side) and completes `promise` with the merged
/// message. When `expectedPeer` is set, the message's public key must belong to it, as the identify spec asks
/// ("the public key ... MUST match the peer ID of the authenticated connection").
public final class IdentifyInitiatorHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// go-libp2p's identify timeout (`Timeout = 5 * time.Second` in id.go).
    public static let defaultTimeout = TimeAmount.seconds(5)

    private var reader = IdentifyReader()
    private let promise: EventLoopPromise<IdentifyMessage>
    private let expectedPeer: PeerID?
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var done = false

    /// Creates a handler completing `promise`.
    public init(promise: EventLoopPromise<IdentifyMessage>, expectedPeer: PeerID?, timeout: TimeAmount = defaultTimeout) {
        self.promise = promise
        self.expectedPeer = expectedPeer
        self.timeout = timeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: timeout) { [self] in
            self.fail(IdentifyTimeout(), context: loopBound.value)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        if !done {
            done = true
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        do {
            try reader.receive(Self.unwrapInboundIn(data))
        } catch {
            self.fail(error, context: context)
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !done else { return }
        do throws(IdentifyError) {
            let message = try reader.finish()
            if let expectedPeer {
                let key = try message.decodedPublicKey()
                guard expectedPeer.matches(key) else {
                    throw .publicKeyMismatch(expected: "\(expectedPeer)", got: "\(key.peerID)")
                }
            }
            done = true
            timer?.cancel()
            promise.succeed(message)
            context.close(promise: nil)
        } catch {
            self.fail(error, context: context)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.fail(ChannelError.eof, context: context)
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(error, context: context)
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        timer?.cancel()
        promise.fail(error)
        context.close(promise: nil)
    }
}

/// The identify initiator waited longer than its timeout.
public struct IdentifyTimeout: Error, Sendable, CustomStringConvertible {
    public var description: String { "identify timed out" }
}

/// Echoes ping payloads until the remote closes its write side, then closes ours.
public final class PingResponderHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var machine = PingResponder()
    private let logger: Logger

    /// Creates a responder handler.
    public init(logger: Logger) {
        self.logger = logger
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .write(let bytes) = machine.receive(Self.unwrapInboundIn(data)) {
            context.writeAndFlush(Self.wrapOutboundOut(bytes), promise: nil)
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if case .close(let partial) = machine.receiveEOF() {
            if partial > 0 {
                logger.debug("ping stream ended mid-payload", metadata: ["bytes": "\(partial)"])
            }
            context.close(mode: .output).whenComplete { _ in context.close(promise: nil) }
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("ping stream error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}

/// Sends `count` pings one after the other on one stream, completes `promise` with the round-trip times,
/// then closes the stream.
public final class PingInitiatorHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private var machine = PingInitiator()
    private let count: Int
    private let promise: EventLoopPromise<[Duration]>
    private var done = false
    private var started = false

    /// Creates a handler that runs `count` pings.
    public init(count: Int, promise: EventLoopPromise<[Duration]>) {
        precondition(count > 0, "at least one ping")
        self.count = count
        self.promise = promise
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.start(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    private func start(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        self.sendNext(context: context)
    }

    private func sendNext(context: ChannelHandlerContext) {
        do {
            let bytes = try machine.sendPing(payload: PingInitiator.randomPayload(), now: .now)
            context.writeAndFlush(Self.wrapOutboundOut(bytes), promise: nil)
        } catch {
            self.fail(error, context: context)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        do {
            guard try machine.receive(Self.unwrapInboundIn(data), now: .now) != nil else { return }
            if machine.roundTrips.count < count {
                self.sendNext(context: context)
            } else {
                done = true
                promise.succeed(machine.roundTrips)
                context.close(mode: .output).whenComplete { _ in context.close(promise: nil) }
            }
        } catch {
            self.fail(error, context: context)
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            self.fail(PingError.closedBeforeEcho, context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.fail(PingError.closedBeforeEcho, context: context)
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(error, context: context)
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        promise.fail(error)
        context.close(promise: nil)
    }
}
