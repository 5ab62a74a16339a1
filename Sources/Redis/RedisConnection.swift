import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Commands written together (one `send` or `pipeline` call), waiting for their replies. One promise per
/// batch rather than per command: each promise completion is a hop from the event loop to the waiting task,
/// which would otherwise dominate a pipeline's cost.
struct PendingBatch: Sendable {
    let promise: EventLoopPromise<[RedisValue]>
    let count: Int
    /// The command name(s), for timeout messages (arguments are never logged: they may be secrets or blobs).
    let name: String
    let timeout: Duration
    let deadline: NIODeadline
}

/// What `RedisConnection` writes into the pipeline: encoded commands and the batch waiting for them.
struct RedisRequest: Sendable {
    var bytes: ByteBuffer
    var batch: PendingBatch
}

/// The I/O half of a connection. Replies arrive in the order commands were sent (RESP2: "the server
/// replies to commands in the same order it receives them"), so batches wait in a FIFO and each reply
/// goes to the oldest one. Any failure that could desynchronise that pairing (a protocol error, a
/// timeout, an unsolicited reply) fails every waiting command and closes the connection.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private let reader: RedisReplyReader
    private var pending = CircularBuffer<PendingBatch>(initialCapacity: 16)
    /// Replies collected so far for the oldest batch.
    private var collected: [RedisValue] = []
    private var replies: [RedisValue] = []
    /// Set once the connection can take no more commands; later writes fail with it.
    private var closedReason: RedisError?
    /// One timer, armed for the earliest deadline among waiting batches.
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(maxReplyBytes: Int, maxReplyElements: Int) {
        reader = RedisReplyReader(maxReplyBytes: maxReplyBytes, maxReplyElements: maxReplyElements)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let closedReason {
            request.batch.promise.fail(closedReason)
            promise?.fail(closedReason)
            return
        }
        if pending.isEmpty { collected.reserveCapacity(request.batch.count) }
        pending.append(request.batch)
        arm(at: request.batch.deadline, context: context)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { [self] result in
            if case .failure(let error) = result {
                failAll(.connectionClosed("write failed: \(error)"), context: context, close: true)
            }
        }
        written.futureResult.cascade(to: promise)
        context.write(wrapOutboundOut(request.bytes), promise: written)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard closedReason == nil else { return }
        replies.removeAll(keepingCapacity: true)
        do {
            try reader.feed(buffer, into: &replies)
        } catch {
            deliver(context: context)
            failAll(error, context: context, close: true)
            return
        }
        deliver(context: context)
    }

    private func deliver(context: ChannelHandlerContext) {
        for reply in replies {
            guard let batch = pending.first else {
                failAll(.protocolError("reply \(reply) arrived with no command waiting for it"), context: context,
                        close: true)
                return
            }
            collected.append(reply)
            if collected.count == batch.count {
                pending.removeFirst()
                let complete = collected
                collected = []
                if let next = pending.first { collected.reserveCapacity(next.count) }
                batch.promise.succeed(complete)
            }
        }
        replies.removeAll(keepingCapacity: true)
        if pending.isEmpty { disarm() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.connectionClosed(reader.bufferedBytes > 0
                ? "the server closed the connection in the middle of a reply"
                : "the server closed the connection"), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(.connectionClosed("\(error)"), context: context, close: true)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(.connectionClosed("the connection was shut down"), context: context)
    }

    /// Fails every waiting command with `error` and refuses new ones from now on. With `close`, the
    /// channel is closed first, so a caller woken by the failure already sees `isActive == false` and the
    /// pool dials a new connection instead of reusing this one.
    private func failAll(_ error: RedisError, context: ChannelHandlerContext, close: Bool = false) {
        if closedReason == nil { closedReason = error }
        disarm()
        let waiting = pending
        pending.removeAll()
        collected = []
        if close { context.close(promise: nil) }
        for batch in waiting { batch.promise.fail(error) }
    }

    private func arm(at deadline: NIODeadline, context: ChannelHandlerContext) {
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            timer = nil
            timerDeadline = nil
            checkTimeouts(context: context)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
        timerDeadline = nil
    }

    private func checkTimeouts(context: ChannelHandlerContext) {
        guard closedReason == nil, !pending.isEmpty else { return }
        let now = NIODeadline.now()
        guard let expired = pending.first(where: { $0.deadline <= now }) else {
            // The command the timer was armed for has been answered; re-arm for the earliest left.
            arm(at: pending.map(\.deadline).min()!, context: context)
            return
        }
        // Its reply may still come, and would then be paired with the next command: the connection is
        // unusable. Commands that expired get the timeout; the rest learn why the connection went away.
        let reason = RedisError.connectionClosed("closed because an earlier command (\(expired.name)) timed out")
        closedReason = reason
        let waiting = pending
        pending.removeAll()
        collected = []
        context.close(promise: nil)
        for batch in waiting {
            batch.promise.fail(batch.deadline <= now
                ? RedisError.timeout(command: batch.name, after: batch.timeout) : reason)
        }
    }
}

/// One TCP connection to Redis with any number of commands in flight on it (pipelining): each call writes
/// its command at once and waits for its own reply. Thread-safe; `RedisClient` pools a few of these.
public final class RedisConnection: Sendable {
    /// `host:port` of the server.
    public let address: String
    private let channel: any Channel
    private let commandTimeout: Duration

    private init(channel: any Channel, address: String, commandTimeout: Duration) {
        self.channel = channel
        self.address = address
        self.commandTimeout = commandTimeout
    }

    /// Connects (within `connectTimeout`), then authenticates and selects the database (within
    /// `commandTimeout`). Sends `PING` when there is neither AUTH nor SELECT, so a server that wants a
    /// password is reported as an authentication failure here rather than on the first command.
    public static func connect(
        to configuration: RedisConfiguration,
        on group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(RedisError) -> RedisConnection {
        let address = configuration.address
        let maxReplyBytes = configuration.maxReplyBytes
        let maxReplyElements = configuration.maxReplyElements
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            // An idle pooled connection whose server vanished (host down, NAT state dropped) is found
            // dead by the kernel rather than on the next command's timeout.
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        RedisChannelHandler(maxReplyBytes: maxReplyBytes, maxReplyElements: maxReplyElements))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw .unreachable(address: address, reason: Self.reason(error, connectTimeout: configuration.connectTimeout))
        }
        let connection = RedisConnection(channel: channel, address: address,
                                         commandTimeout: configuration.commandTimeout)
        do {
            try await connection.handshake(configuration)
        } catch {
            await connection.close()
            // Accepted the connection but never answered: as good as unreachable (a hung or overloaded
            // server, or something that is not Redis on that port).
            if case .timeout(let command, let after) = error {
                throw .unreachable(address: address, reason: "connected, but no reply to \(command) within \(after)")
            }
            throw error
        }
        return connection
    }

    /// A one-line reason for a failed connect: "connection refused", "connect timed out after 2.0 seconds",
    /// or the resolver's error, instead of NIO's nested description.
    private static func reason(_ error: any Error, connectTimeout: Duration) -> String {
        if let error = error as? ChannelError, case .connectTimeout = error {
            return "connect timed out after \(connectTimeout)"
        }
        guard let error = error as? NIOConnectionError else { return "\(error)" }
        if error.connectionErrors.isEmpty {
            let resolver = [error.dnsAError, error.dnsAAAAError].compactMap { $0.map { "\($0)" } }
            return "cannot resolve \(error.host): " + (resolver.isEmpty ? "no addresses" : resolver.joined(separator: "; "))
        }
        return error.connectionErrors.map { failure in
            if let io = failure.error as? IOError, io.errnoCode == ECONNREFUSED {
                return "connection refused by \(failure.target)"
            }
            if let channel = failure.error as? ChannelError, case .connectTimeout = channel {
                return "connect to \(failure.target) timed out after \(connectTimeout)"
            }
            return "\(failure.target): \(failure.error)"
        }.joined(separator: "; ")
    }

    private func handshake(_ configuration: RedisConfiguration) async throws(RedisError) {
        var commands: [[RedisArgument]] = []
        if let password = configuration.password {
            var auth: [RedisArgument] = ["AUTH"]
            if let username = configuration.username { auth.append(RedisArgument(username)) }
            auth.append(RedisArgument(password))
            commands.append(auth)
        }
        if configuration.database != 0 { commands.append(["SELECT", RedisArgument(configuration.database)]) }
        if commands.isEmpty { commands.append(["PING"]) }
        let replies = try await pipeline(commands)
        for (command, reply) in zip(commands, replies) {
            guard case .error(let message) = reply else { continue }
            let name = String(decoding: command[0].bytes, as: UTF8.self)
            // AUTH refused: "-WRONGPASS invalid username-password pair ..." (Redis 6+) or "-ERR invalid
            // password"; no password configured for a server that wants one: "-NOAUTH Authentication
            // required."; AUTH sent to a server without one: "-ERR AUTH <password> called without any
            // password configured ...".
            if name == "AUTH" || message.hasPrefix("NOAUTH") {
                throw .authenticationFailed(address: address, message: message)
            }
            throw .server("\(name) on a new connection: \(message)")
        }
    }

    /// False once the connection has closed (it is never reopened: dial a new one).
    public var isActive: Bool { channel.isActive }

    /// Sends one command and returns its reply. An error reply throws `RedisError.server`.
    public func send(_ command: [RedisArgument], timeout: Duration? = nil) async throws(RedisError) -> RedisValue {
        let reply = try await pipeline([command], timeout: timeout)[0]
        if case .error(let message) = reply { throw .server(message) }
        return reply
    }

    /// Sends `commands` in one write and returns their replies in order. Error replies are returned as
    /// `.error` values (one failed command does not hide the others' results); transport failures throw.
    public func pipeline(_ commands: [[RedisArgument]], timeout: Duration? = nil) async throws(RedisError) -> [RedisValue] {
        if commands.isEmpty { return [] }
        let timeout = timeout ?? commandTimeout
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        var bytes = channel.allocator.buffer(capacity: 0)
        for command in commands { RedisCommandEncoder.encode(command, into: &bytes) }
        let batch = PendingBatch(
            promise: channel.eventLoop.makePromise(of: [RedisValue].self), count: commands.count,
            name: Self.name(of: commands), timeout: timeout, deadline: deadline)
        // On a channel already torn down the request never reaches the handler; fail the promise here then
        // (completing a promise twice is a no-op in NIO, so the handler's own failure path is safe).
        let promise = batch.promise
        channel.writeAndFlush(RedisRequest(bytes: bytes, batch: batch)).whenFailure { error in
            promise.fail(error as? RedisError ?? .connectionClosed("\(error)"))
        }
        do {
            return try await promise.futureResult.get()
        } catch let error as RedisError {
            throw error
        } catch {
            throw .connectionClosed("\(error)")
        }
    }

    /// How errors name a batch: `GET`, or `pipeline of 3 starting with ZREVRANGE` (never the arguments).
    static func name(of commands: [[RedisArgument]]) -> String {
        let first = String(decoding: commands[0].first?.bytes.prefix(32) ?? [], as: UTF8.self).uppercased()
        return commands.count == 1 ? first : "pipeline of \(commands.count) starting with \(first)"
    }

    /// Closes the connection; commands still waiting fail with `RedisError.connectionClosed`.
    public func close() async {
        try? await channel.close()
    }
}
