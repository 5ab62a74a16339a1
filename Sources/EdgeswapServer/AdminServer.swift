import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// What the admin endpoint answers for one path.
public struct AdminResponse: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: String

    public init(status: HTTPResponseStatus = .ok, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// A small HTTP/1.1 server for operators and load balancers, on its own port (never the libp2p one):
///
/// - `GET /livez`: 200 while the process runs (a liveness probe restarts a wedged process, nothing else).
/// - `GET /readyz`: 200 when every dependency a block lookup needs answers, 503 with the reasons otherwise,
///   so a load balancer sends new peers to instances that can serve them.
/// - `GET /metrics`: counters in the Prometheus text exposition format (version 0.0.4).
///
/// Each request is answered by `respond`, which the server command supplies; the server only does HTTP.
public final class AdminServer: Sendable {
    public typealias Responder = @Sendable (_ method: HTTPMethod, _ path: String) async -> AdminResponse

    private let channel: any Channel
    private let task: Task<Void, Never>
    /// Where it listens (with the port the kernel chose when asked for port 0).
    public let localAddress: SocketAddress

    /// Binds `host:port` and starts answering.
    public static func start(host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                             logger: Logger, respond: @escaping Responder) async throws -> AdminServer
    {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        guard let address = server.channel.localAddress else {
            try? await server.channel.close()
            throw AdminServerError.noLocalAddress
        }
        let task = Task {
            do {
                try await withThrowingDiscardingTaskGroup { group in
                    try await server.executeThenClose { connections in
                        for try await connection in connections {
                            group.addTask { await serve(connection, logger: logger, respond: respond) }
                        }
                    }
                }
            } catch {
                logger.debug("admin listener closed", metadata: ["error": "\(error)"])
            }
        }
        return AdminServer(channel: server.channel, task: task, localAddress: address)
    }

    private init(channel: any Channel, task: Task<Void, Never>, localAddress: SocketAddress) {
        self.channel = channel
        self.task = task
        self.localAddress = localAddress
    }

    /// Stops listening and waits for the accept loop to end.
    public func shutdown() async {
        try? await channel.close()
        await task.value
    }

    private static func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>,
                              logger: Logger, respond: Responder) async
    {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let h): head = h
                    case .body: continue  // no admin endpoint takes a body; it is read and dropped
                    case .end:
                        guard let request = head else { return }
                        head = nil
                        let path = String(request.uri.split(separator: "?", maxSplits: 1).first ?? "")
                        let response = await respond(request.method, path)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: response.contentType)
                        headers.add(name: "Content-Length", value: "\(response.body.utf8.count)")
                        headers.add(name: "Cache-Control", value: "no-store")
                        let keepAlive = request.isKeepAlive
                        if !keepAlive { headers.add(name: "Connection", value: "close") }
                        try await outbound.write(.head(HTTPResponseHead(version: request.version,
                                                                        status: response.status, headers: headers)))
                        if request.method != .HEAD {
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(string: response.body))))
                        }
                        try await outbound.write(.end(nil))
                        if !keepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("admin connection ended", metadata: ["error": "\(error)"])
        }
    }
}

public enum AdminServerError: Error, CustomStringConvertible {
    case noLocalAddress

    public var description: String { "the admin listener has no local address" }
}

/// Prometheus text exposition (format 0.0.4): `# HELP`, `# TYPE`, then `name{labels} value` lines.
public struct PrometheusText: Sendable {
    public private(set) var text = ""

    public init() {}

    /// Appends one metric with a single unlabelled sample.
    public mutating func add(_ name: String, _ type: String, _ help: String, _ value: some BinaryInteger) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
    }

    /// Appends one metric whose samples differ by one label.
    public mutating func add(_ name: String, _ type: String, _ help: String, label: String,
                             _ samples: [(String, Int)]) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for (value, sample) in samples {
            text += "\(name){\(label)=\"\(value)\"} \(sample)\n"
        }
    }
}
