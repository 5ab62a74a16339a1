// edgeswap: the libp2p Noise security stage as a NIO handler (libp2p/specs noise/README.md). The protocol
// logic lives in NoiseHandshakeStateMachine and NoiseTransport; this class performs the I/O.

import Logging
import NIOCore

/// Fired inbound (as a user event) and passed to the completion callback once the Noise handshake has
/// authenticated the remote peer.
public struct NoiseHandshakeCompleted: Sendable {
    /// The remote peer, derived from the identity key whose signature over the Noise static key verified.
    public let remotePeerID: PeerID
    /// The remote identity key.
    public let remotePublicKey: PublicKey
}

/// Errors of the Noise stage that are not protocol errors of the handshake itself.
public enum NoiseHandlerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The handshake did not finish within the configured time.
    case handshakeTimedOut(TimeAmount)
    /// The connection closed before the handshake finished.
    case closedDuringHandshake
    /// The Noise state machine reported an error (see the wrapped value).
    case noise(NoiseError)

    public var description: String {
        switch self {
        case .handshakeTimedOut(let t): return "Noise handshake timed out after \(t.nanoseconds / 1_000_000) ms"
        case .closedDuringHandshake: return "connection closed during the Noise handshake"
        case .noise(let error): return "\(error)"
        }
    }
}

/// The Noise stage of a libp2p connection: runs the XX handshake, then encrypts and decrypts.
///
/// - Handshake: messages from ``NoiseHandshakeStateMachine`` are written as they come; an optional timeout
///   closes the connection if the handshake is not done in time. On success the handler calls
///   `onHandshakeComplete` synchronously (add the next stage there), fires ``NoiseHandshakeCompleted`` as a
///   user event, succeeds the optional promise, and then decrypts whatever the peer pipelined behind its
///   last handshake message.
/// - Inbound transport: ciphertext goes into ``NoiseTransport``; every complete frame is decrypted (raw
///   pointers, no `ByteBufferView`) into one plaintext buffer, fired once per read.
/// - Outbound transport: writes are queued and coalesced on `flush` into frames of at most 65,519 plaintext
///   bytes ("≤65519 B of plaintext per frame"): small muxer frames share one Noise frame (each seal has a
///   fixed cost of about 2 µs), a large write is sealed straight from its own storage. Every Noise frame
///   goes down as its own write (one WebSocket message per Noise frame, as go-libp2p does), all of them
///   slices of one ciphertext buffer. The write promises complete with the last of those writes.
/// - Any error (bad frame, bad tag, bad signature, wrong peer, timeout) is logged, fired through
///   `errorCaught`, fails the promise and closes the connection: noise/README.md "If the signature is
///   invalid, the connection MUST be terminated immediately."
///
/// Writes made before the handshake completes are held and sent encrypted once it has.
public final class NoiseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Called on the event loop once the handshake is authenticated, before any decrypted byte is forwarded.
    /// Throwing closes the connection.
    public typealias OnHandshakeComplete = (_ completed: NoiseHandshakeCompleted, _ channel: any Channel) throws -> Void

    private enum State {
        case handshaking(NoiseHandshakeStateMachine)
        case transport(NoiseTransport)
        case failed
    }

    private var state: State
    private let handshakeTimeout: TimeAmount?
    private let logger: Logger
    private var onHandshakeComplete: OnHandshakeComplete?
    private var promise: EventLoopPromise<NoiseHandshakeCompleted>?
    private var timeoutTask: Scheduled<Void>?
    private var started = false

    /// Plaintext writes waiting for `flush` (or for the handshake).
    private var pendingWrites = CircularBuffer<ByteBuffer>(initialCapacity: 8)
    private var pendingPromises: [EventLoopPromise<Void>] = []
    /// Reused to gather small writes into one frame's plaintext.
    private var framePlaintext = ByteBuffer()
    /// Reused for decrypted reads when the previous one has been released downstream.
    private var readPlaintext = ByteBuffer()

    /// - Parameters:
    ///   - role: initiator (dialer) or responder (listener).
    ///   - identity: our identity and static key (one per process).
    ///   - expectedRemotePeerID: a dialer's expected peer; a different one fails with `.peerIDMismatch`.
    ///   - acceptedKeyTypes: remote identity key types to accept.
    ///   - handshakeTimeout: closes the connection if the handshake takes longer; nil for no limit.
    ///   - promise: completed with the remote peer, or failed with the reason the handshake ended.
    public init(role: NoiseRole, identity: NoiseIdentity, expectedRemotePeerID: PeerID? = nil,
                acceptedKeyTypes: Set<KeyType> = Set(KeyType.allCases), handshakeTimeout: TimeAmount? = .seconds(10),
                logger: Logger, promise: EventLoopPromise<NoiseHandshakeCompleted>? = nil,
                onHandshakeComplete: OnHandshakeComplete? = nil) {
        self.state = .handshaking(NoiseHandshakeStateMachine(
            role: role, identity: identity, expectedRemotePeerID: expectedRemotePeerID,
            acceptedKeyTypes: acceptedKeyTypes))
        self.handshakeTimeout = handshakeTimeout
        self.logger = logger
        self.promise = promise
        self.onHandshakeComplete = onHandshakeComplete
    }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.start(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.failPending(ChannelError.ioOnClosedChannel)
        self.promise?.fail(NoiseHandlerError.closedDuringHandshake)
        self.promise = nil
    }

    private func start(context: ChannelHandlerContext) {
        guard !self.started, case .handshaking(var machine) = self.state else { return }
        self.started = true
        if let timeout = self.handshakeTimeout {
            self.timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                guard case .handshaking = self.state else { return }
                self.fail(.handshakeTimedOut(timeout), context: context)
            }
        }
        let action: NoiseHandshakeStateMachine.Action
        do throws(NoiseError) {
            action = try machine.start()
        } catch {
            self.fail(.noise(error), context: context)
            return
        }
        self.state = .handshaking(machine)
        self.run(action, context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        switch self.state {
        case .handshaking:
            self.fail(.closedDuringHandshake, context: context, close: false)
        case .transport(let transport):
            do throws(NoiseError) {
                try transport.finish()
            } catch {
                self.logger.debug("input ended inside a Noise frame", metadata: ["reason": "\(error)"])
            }
            self.failPending(ChannelError.ioOnClosedChannel)
        case .failed:
            break
        }
        context.fireChannelInactive()
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        switch self.state {
        case .handshaking(var machine):
            let action: NoiseHandshakeStateMachine.Action
            do throws(NoiseError) {
                action = try machine.receive(&bytes)
            } catch {
                self.fail(.noise(error), context: context)
                return
            }
            self.state = .handshaking(machine)
            self.run(action, context: context)
        case .transport(var transport):
            // Drop our reference while mutating so the transport's buffer stays uniquely owned.
            self.state = .failed
            transport.receive(&bytes)
            self.state = .transport(transport)
            self.decryptAndForward(context: context)
        case .failed:
            break
        }
    }

    private func run(_ action: NoiseHandshakeStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .needMoreData:
            break
        case .send(let bytes):
            context.writeAndFlush(self.wrapOutboundOut(bytes), promise: nil)
        case .sendAndComplete(let bytes, let result):
            context.write(self.wrapOutboundOut(bytes), promise: nil)
            self.complete(result, context: context)
        case .complete(let result):
            self.complete(result, context: context)
        }
    }

    private func complete(_ result: NoiseHandshakeResult, context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.state = .transport(result.transport)
        let completed = NoiseHandshakeCompleted(remotePeerID: result.remotePeerID,
                                                remotePublicKey: result.remotePublicKey)
        self.logger.trace("Noise handshake complete", metadata: ["peer": "\(completed.remotePeerID)"])
        let callback = self.onHandshakeComplete
        self.onHandshakeComplete = nil
        do {
            try callback?(completed, context.channel)
        } catch {
            self.logger.debug("closing: stage after Noise failed", metadata: ["reason": "\(error)"])
            self.state = .failed
            self.promise?.fail(error)
            self.promise = nil
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(completed)
        self.promise?.succeed(completed)
        self.promise = nil
        // Message 3 (initiator) and anything the upper layers wrote meanwhile.
        self.flushPending(context: context)
        context.flush()
        self.decryptAndForward(context: context)
    }

    private func decryptAndForward(context: ChannelHandlerContext) {
        guard case .transport(var transport) = self.state else { return }
        self.state = .failed
        var plain = self.readPlaintext
        self.readPlaintext = ByteBuffer()
        // Keeps the storage when downstream has released the previous read; otherwise allocates.
        plain.clear(minimumCapacity: min(transport.bufferedByteCount, 4 * NoiseTransport.maximumMessageLength))
        do throws(NoiseError) {
            while try transport.decryptNext(into: &plain) {}
        } catch {
            self.state = .transport(transport)
            self.fail(.noise(error), context: context)
            return
        }
        self.state = .transport(transport)
        if plain.readableBytes > 0 {
            context.fireChannelRead(self.wrapInboundOut(plain))
            context.fireChannelReadComplete()
        }
        self.readPlaintext = plain
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        // Plaintext reads are completed in decryptAndForward; the raw readComplete has no meaning above us.
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .handshaking = self.state {
            self.fail(.closedDuringHandshake, context: context, close: false)
        }
        context.fireErrorCaught(error)
    }

    // MARK: - Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .failed = self.state {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let bytes = self.unwrapOutboundIn(data)
        self.pendingWrites.append(bytes)
        if let promise { self.pendingPromises.append(promise) }
    }

    public func flush(context: ChannelHandlerContext) {
        guard case .transport = self.state else { return }
        self.flushPending(context: context)
        context.flush()
    }

    /// Encrypts every queued write into Noise frames and writes them (no flush).
    private func flushPending(context: ChannelHandlerContext) {
        guard !self.pendingWrites.isEmpty, case .transport(var transport) = self.state else { return }
        self.state = .failed
        var total = 0
        for buffer in self.pendingWrites { total += buffer.readableBytes }
        var out = context.channel.allocator.buffer(
            capacity: NoiseTransport.encryptedLength(ofPlaintextLength: total))
        var gather = self.framePlaintext
        self.framePlaintext = ByteBuffer()
        gather.clear(minimumCapacity: min(total, NoiseTransport.maximumPlaintextLength))
        let limit = NoiseTransport.maximumPlaintextLength
        do throws(NoiseError) {
            while var buffer = self.pendingWrites.popFirst() {
                while buffer.readableBytes > 0 {
                    if buffer.readableBytes >= Self.sealInPlaceLength {
                        // A large write (a block's bytes, handed on by the muxer in their own storage): seal it
                        // from there, a frame at a time, rather than copy it behind what is gathered. What is
                        // gathered (frame headers) goes first as a small frame of its own: one more seal (about
                        // 2 µs) costs less than copying tens of KiB.
                        if gather.readableBytes > 0 {
                            try transport.encrypt(gather, into: &out)
                            gather.clear()
                        }
                        let take = min(limit, buffer.readableBytes)
                        var failure: NoiseError?
                        buffer.withUnsafeReadableBytes { raw in
                            do throws(NoiseError) {
                                try transport.encrypt(UnsafeRawBufferPointer(rebasing: raw.prefix(take)), into: &out)
                            } catch {
                                failure = error
                            }
                        }
                        if let failure { throw failure }
                        buffer.moveReaderIndex(forwardBy: take)
                        continue
                    }
                    let take = min(limit - gather.readableBytes, buffer.readableBytes)
                    var part = buffer.readSlice(length: take)!
                    gather.writeBuffer(&part)
                    if gather.readableBytes == limit {
                        try transport.encrypt(gather, into: &out)
                        gather.clear()
                    }
                }
            }
            if gather.readableBytes > 0 {
                try transport.encrypt(gather, into: &out)
                gather.clear()
            }
        } catch {
            self.state = .transport(transport)
            self.framePlaintext = gather
            self.fail(.noise(error), context: context)
            return
        }
        self.state = .transport(transport)
        self.framePlaintext = gather
        let promises = self.pendingPromises
        self.pendingPromises.removeAll(keepingCapacity: true)
        self.writeFrames(out, promises: promises, context: context)
    }

    /// Writes `out` (a run of `u16be length ‖ ciphertext` frames) as one write per Noise frame.
    private func writeFrames(_ out: ByteBuffer, promises: [EventLoopPromise<Void>], context: ChannelHandlerContext) {
        var out = out
        guard out.readableBytes > 0 else {
            // Only empty writes: nothing to encrypt (an empty Noise frame would carry nothing).
            for promise in promises { promise.succeed() }
            return
        }
        let last: EventLoopPromise<Void>?
        switch promises.count {
        case 0: last = nil
        case 1: last = promises[0]
        default:
            let combined = context.eventLoop.makePromise(of: Void.self)
            combined.futureResult.assumeIsolated().whenComplete { result in
                for promise in promises { promise.completeWith(result) }
            }
            last = combined
        }
        while out.readableBytes > 0 {
            let length = Int(out.getInteger(at: out.readerIndex, as: UInt16.self)!)
            let frame = out.readSlice(length: 2 + length)!
            context.write(self.wrapOutboundOut(frame), promise: out.readableBytes == 0 ? last : nil)
        }
    }

    private func failPending(_ error: any Error) {
        self.pendingWrites.removeAll()
        let promises = self.pendingPromises
        self.pendingPromises.removeAll()
        for promise in promises { promise.fail(error) }
    }

    /// Writes at least this long are sealed from their own storage, in frames of their own.
    static let sealInPlaceLength = 16 << 10

    // MARK: - Failure

    private func fail(_ error: NoiseHandlerError, context: ChannelHandlerContext, close: Bool = true) {
        if case .failed = self.state, self.promise == nil { return }
        self.state = .failed
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.onHandshakeComplete = nil
        self.failPending(error)
        self.promise?.fail(error)
        self.promise = nil
        guard close else { return }
        self.logger.debug("closing: Noise failed", metadata: ["reason": "\(error)"])
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension NoiseHandler: Sendable {}
