import Bitswap
import Dispatch
import Libp2p
import Logging
import Multiformats
import NIOCore
import NIOPosix

/// What `edgeswap load` runs: N clients against one Bitswap server.
public struct LoadConfiguration: Sendable {
    /// The server (`/…/tcp/P/ws` or `/wss`, optionally ending in `/p2p/<id>`, which the Noise handshake checks).
    public var target: Multiaddr
    /// Concurrent clients; each has its own connection and (unless `identity` is set) its own fresh Ed25519
    /// identity.
    public var clients: Int
    /// The CIDs every client fetches each round: DAG roots, or with ``BitswapFetchSession/Configuration/traverse``
    /// off a replayed wantlist.
    public var cids: [CID]
    /// How each client fetches.
    public var session: BitswapFetchSession.Configuration
    /// Rounds per client (nil: until ``duration`` ends). At least one of the two is set.
    public var rounds: Int?
    /// Stop starting new rounds once this much time has passed since the clients connected.
    public var duration: Duration?
    /// A round not finished after this long fails its client (the client stops).
    public var roundTimeout: Duration
    /// Dial and connection-upgrade timeout per client.
    public var connectTimeout: Duration
    /// PEM trust roots for `/wss` (nil: the system roots).
    public var trustRootsFile: String?
    /// The Bitswap protocol the want stream proposes.
    public var protocolID: String
    /// The identity every client uses; nil gives each client a fresh Ed25519 key. A fixed identity lets a
    /// run continue what an earlier run of the same peer started (its scope on the server).
    public var identity: PrivateKey?
    /// Misbehave as peers at the edge do: every round on a connection of its own, reset (TCP RST) once this many
    /// Bitswap messages have arrived on it, mid-transfer. nil: well-behaved clients, one connection for all rounds.
    public var resetAfterMessages: Int?

    public init(target: Multiaddr, clients: Int, cids: [CID], session: BitswapFetchSession.Configuration = .init(),
                rounds: Int? = 1, duration: Duration? = nil, roundTimeout: Duration = .seconds(60),
                connectTimeout: Duration = .seconds(20), trustRootsFile: String? = nil,
                protocolID: String = "/ipfs/bitswap/1.2.0", identity: PrivateKey? = nil) {
        self.target = target
        self.clients = clients
        self.cids = cids
        self.session = session
        self.rounds = rounds
        self.duration = duration
        self.roundTimeout = roundTimeout
        self.connectTimeout = connectTimeout
        self.trustRootsFile = trustRootsFile
        self.protocolID = protocolID
        self.identity = identity
    }
}

/// The summary of one load run.
public struct LoadReport: Sendable {
    public var clients = 0
    /// Rounds completed, summed over clients.
    public var rounds = 0
    public var blocks = 0
    public var bytes = 0
    /// Wall time from the moment every client was connected until the last one finished.
    public var seconds = 0.0
    /// Wall time to dial and upgrade every connection (they are made concurrently).
    public var connectSeconds = 0.0
    public var haves = 0
    public var dontHaves = 0
    public var duplicates = 0
    public var messagesSent = 0
    /// Failed block checks, failed connections, timed-out rounds and broken streams.
    public var errors = 0
    /// The first few error descriptions.
    public var errorSamples: [String] = []
    /// Per-block latency percentiles, in milliseconds (nil without blocks).
    public var latencyP50Milliseconds: Double?
    public var latencyP99Milliseconds: Double?
    public var latencyMaxMilliseconds: Double?

    /// Decimal megabytes (10^6 bytes) per second of fetch time.
    public var megabytesPerSecond: Double { seconds > 0 ? Double(bytes) / 1e6 / seconds : 0 }
    public var blocksPerSecond: Double { seconds > 0 ? Double(blocks) / seconds : 0 }

    public init() {}

    /// One JSON object on one line.
    public func json() -> String {
        func number(_ value: Double?) -> String {
            guard let value, value.isFinite else { return "null" }
            return String(format3(value))
        }
        func quoted(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case _ where scalar.value < 0x20: out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
        let fields: [(String, String)] = [
            ("clients", "\(clients)"), ("rounds", "\(rounds)"), ("blocks", "\(blocks)"), ("bytes", "\(bytes)"),
            ("seconds", number(seconds)), ("connect_seconds", number(connectSeconds)),
            ("mb_per_s", number(megabytesPerSecond)), ("blocks_per_s", number(blocksPerSecond)),
            ("latency_p50_ms", number(latencyP50Milliseconds)), ("latency_p99_ms", number(latencyP99Milliseconds)),
            ("latency_max_ms", number(latencyMaxMilliseconds)),
            ("errors", "\(errors)"), ("dont_haves", "\(dontHaves)"), ("haves", "\(haves)"),
            ("duplicates", "\(duplicates)"), ("messages_sent", "\(messagesSent)"),
            ("error_samples", "[" + errorSamples.map(quoted).joined(separator: ",") + "]"),
        ]
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// A few human-readable lines.
    public func text() -> String {
        var lines = [
            "clients \(clients), rounds \(rounds), connect \(format3(connectSeconds)) s",
            "blocks \(blocks), bytes \(bytes) in \(format3(seconds)) s: \(format3(megabytesPerSecond)) MB/s, \(format3(blocksPerSecond)) blocks/s",
            "latency per block: p50 \(latencyP50Milliseconds.map(format3) ?? "-") ms, p99 \(latencyP99Milliseconds.map(format3) ?? "-") ms, max \(latencyMaxMilliseconds.map(format3) ?? "-") ms",
            "haves \(haves), dont_haves \(dontHaves), duplicates \(duplicates), messages sent \(messagesSent), errors \(errors)",
        ]
        for sample in errorSamples { lines.append("error: \(sample)") }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Three decimals, without Foundation.
func format3(_ value: Double) -> String {
    guard value.isFinite else { return "\(value)" }
    let scaled = (abs(value) * 1000).rounded()
    let whole = Int(scaled / 1000)
    let fraction = Int(scaled.truncatingRemainder(dividingBy: 1000))
    let digits = String(fraction)
    return (value < 0 ? "-" : "") + "\(whole)." + String(repeating: "0", count: 3 - digits.count) + digits
}

/// Errors that stop the whole run before any fetching.
public enum LoadError: Error, Sendable, CustomStringConvertible {
    case noCIDs
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .noCIDs: return "no CIDs to fetch"
        case .invalidConfiguration(let reason): return reason
        }
    }
}

/// Runs the clients of a ``LoadConfiguration`` and sums what they saw.
public enum LoadRunner {
    /// Connects every client, then has each fetch its rounds; returns when all are done (or failed).
    /// It always ends by itself: rounds are bounded by `rounds` or `duration`, each round by `roundTimeout`,
    /// each connection attempt by `connectTimeout`.
    public static func run(_ configuration: LoadConfiguration, logger: Logger = Logger(label: "edgeswap.load"))
        async throws -> LoadReport {
        guard !configuration.cids.isEmpty else { throw LoadError.noCIDs }
        guard configuration.clients > 0 else { throw LoadError.invalidConfiguration("clients must be positive") }
        guard configuration.rounds != nil || configuration.duration != nil else {
            throw LoadError.invalidConfiguration("give rounds or a duration")
        }
        let dialTLS: WebSocketClientTLS?
        if try WebSocketMultiaddr(configuration.target).isSecure || configuration.trustRootsFile != nil {
            dialTLS = try WebSocketClientTLS(trustRootsFile: configuration.trustRootsFile)
        } else {
            dialTLS = nil
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: min(System.coreCount, configuration.clients))
        var report = LoadReport()
        report.clients = configuration.clients

        let connectStart = monotonicNanoseconds()
        if configuration.resetAfterMessages != nil {
            report = await runResetting(configuration, dialTLS: dialTLS, group: group, logger: logger, report: report)
            try? await group.shutdownGracefully()
            return report
        }
        var clients: [LoadClient] = []
        await withTaskGroup(of: Result<LoadClient, ClientFailure>.self) { tasks in
            for index in 0..<configuration.clients {
                tasks.addTask {
                    await LoadClient.connect(index: index, configuration: configuration, dialTLS: dialTLS,
                                             group: group, logger: logger)
                }
            }
            for await result in tasks {
                switch result {
                case .success(let client): clients.append(client)
                case .failure(let failure): report.addError(failure.description)
                }
            }
        }
        let fetchStart = monotonicNanoseconds()
        report.connectSeconds = Double(fetchStart - connectStart) / 1e9
        let deadline = configuration.duration.map { fetchStart + nanoseconds($0) }

        var latencies: [UInt64] = []
        await withTaskGroup(of: ClientOutcome.self) { tasks in
            for client in clients {
                tasks.addTask { await client.fetch(configuration: configuration, deadline: deadline) }
            }
            for await outcome in tasks {
                report.rounds += outcome.rounds
                let s = outcome.statistics
                report.blocks += s.blocks
                report.bytes += s.bytes
                report.haves += s.haves
                report.dontHaves += s.dontHaves
                report.duplicates += s.duplicates
                report.messagesSent += s.messagesSent
                latencies.append(contentsOf: s.latencies)
                report.errors += s.failureCount
                for failure in s.failures where report.errorSamples.count < 8 { report.errorSamples.append(failure.description) }
                for error in outcome.errors { report.addError(error) }
            }
        }
        report.seconds = Double(monotonicNanoseconds() - fetchStart) / 1e9
        for client in clients { await client.close() }
        try? await group.shutdownGracefully()

        if !latencies.isEmpty {
            latencies.sort()
            func percentile(_ p: Double) -> Double {
                let index = min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)
                return Double(latencies[max(0, index)]) / 1e6
            }
            report.latencyP50Milliseconds = percentile(0.50)
            report.latencyP99Milliseconds = percentile(0.99)
            report.latencyMaxMilliseconds = Double(latencies[latencies.count - 1]) / 1e6
        }
        return report
    }
}

extension LoadRunner {
    /// The resetting mode: each client runs its rounds one after another, each on a fresh connection that it
    /// resets mid-transfer (see `LoadConfiguration.resetAfterMessages`). A round counts once the reset is made.
    static func runResetting(_ configuration: LoadConfiguration, dialTLS: WebSocketClientTLS?,
                             group: any EventLoopGroup, logger: Logger, report: LoadReport) async -> LoadReport {
        var report = report
        let fetchStart = monotonicNanoseconds()
        let deadline = configuration.duration.map { fetchStart + nanoseconds($0) }
        await withTaskGroup(of: ClientOutcome.self) { tasks in
            for index in 0..<configuration.clients {
                tasks.addTask {
                    var total = ClientOutcome()
                    while configuration.rounds.map({ total.rounds < $0 }) ?? true {
                        if let deadline, monotonicNanoseconds() >= deadline { break }
                        switch await LoadClient.connect(index: index, configuration: configuration, dialTLS: dialTLS,
                                                        group: group, logger: logger) {
                        case .success(let client):
                            let outcome = await client.fetch(configuration: configuration, deadline: deadline)
                            await client.close()
                            total.rounds += outcome.rounds
                            total.statistics.merge(outcome.statistics)
                            total.errors += outcome.errors
                            if !outcome.errors.isEmpty { return total }
                        case .failure(let failure):
                            total.errors.append(failure.description)
                            return total
                        }
                    }
                    return total
                }
            }
            for await outcome in tasks {
                report.rounds += outcome.rounds
                report.blocks += outcome.statistics.blocks
                report.bytes += outcome.statistics.bytes
                report.messagesSent += outcome.statistics.messagesSent
                for error in outcome.errors { report.addError(error) }
            }
        }
        report.seconds = Double(monotonicNanoseconds() - fetchStart) / 1e9
        return report
    }
}

extension LoadReport {
    mutating func addError(_ description: String) {
        errors += 1
        if errorSamples.count < 8 { errorSamples.append(description) }
    }
}

func monotonicNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

func nanoseconds(_ duration: Duration) -> UInt64 {
    let (seconds, attoseconds) = duration.components
    return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
}

struct ClientFailure: Error, CustomStringConvertible {
    let description: String
}

struct ClientOutcome: Sendable {
    var rounds = 0
    var statistics = BitswapFetchSession.Statistics()
    var errors: [String] = []
}

/// One client: its host (own identity), its connection, and the messages the server sends it.
final class LoadClient: Sendable {
    enum Event: Sendable {
        case message(BitswapMessage)
        /// An inbound Bitswap stream carried a message that does not decode.
        case badMessage(String)
        /// Wakes the fetch loop so it can check its deadline.
        case tick
        case closed
    }

    let index: Int
    let host: Libp2pHost
    let connection: Libp2pConnection
    let events: AsyncStream<Event>
    let sink: AsyncStream<Event>.Continuation

    private init(index: Int, host: Libp2pHost, connection: Libp2pConnection, events: AsyncStream<Event>,
                 sink: AsyncStream<Event>.Continuation) {
        self.index = index
        self.host = host
        self.connection = connection
        self.events = events
        self.sink = sink
    }

    /// Makes a host with the configured identity (or a fresh Ed25519 one) that reads Bitswap messages from the streams the server
    /// opens (a server "answers on a stream it opens itself"), and dials the target.
    static func connect(index: Int, configuration: LoadConfiguration, dialTLS: WebSocketClientTLS?,
                        group: any EventLoopGroup, logger: Logger) async -> Result<LoadClient, ClientFailure> {
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        var hostLogger = logger
        hostLogger[metadataKey: "client"] = "\(index)"
        let host: Libp2pHost
        do {
            host = try Libp2pHost(configuration: Libp2pHostConfiguration(
                identity: configuration.identity ?? .generateEd25519(), dialTLS: dialTLS, logger: hostLogger),
                group: group)
        } catch {
            return .failure(ClientFailure(description: "client \(index): cannot make host: \(error)"))
        }
        let maxMessageSize = BitswapLimits.maxMessageSize
        for (protocolID, _) in BitswapProtocolVersion.protocolIDs {
            host.register(protocol: protocolID) { stream in
                var decoder = BitswapFrameDecoder(maxMessageSize: maxMessageSize)
                do {
                    try await stream.executeThenClose { inbound, _ in
                        for try await chunk in inbound {
                            decoder.append(chunk)
                            while let body = try decoder.nextMessage() {
                                sink.yield(.message(try BitswapMessage(decoding: body)))
                            }
                        }
                    }
                } catch let error as BitswapDecodeError {
                    sink.yield(.badMessage("\(error)"))
                    stream.reset()
                }
            }
        }
        do {
            _ = try await host.start()
            let connection = try await withTimeout(configuration.connectTimeout) {
                try await host.dial(configuration.target)
            }
            connection.closeFuture.whenComplete { _ in sink.yield(.closed) }
            return .success(LoadClient(index: index, host: host, connection: connection, events: events, sink: sink))
        } catch {
            await host.shutdown()
            return .failure(ClientFailure(description: "client \(index): cannot connect to \(configuration.target): \(error)"))
        }
    }

    /// Fetches rounds until the configured count is reached or `deadline` passes (checked between rounds).
    func fetch(configuration: LoadConfiguration, deadline: UInt64?) async -> ClientOutcome {
        var outcome = ClientOutcome()
        let sink = self.sink
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                sink.yield(.tick)
            }
        }
        defer { ticker.cancel() }
        let roundTimeout = nanoseconds(configuration.roundTimeout)
        do {
            let wants = try await connection.openStream(configuration.protocolID)
            try await wants.executeThenClose { _, outbound in
                var iterator = self.events.makeAsyncIterator()
                var buffer = ByteBufferAllocator().buffer(capacity: 4096)
                func send(_ message: BitswapMessage) async throws {
                    buffer.clear()
                    message.encodeFrame(into: &buffer)
                    try await outbound.write(buffer)
                }
                var received = 0
                rounds: while configuration.rounds.map({ outcome.rounds < $0 }) ?? true {
                    if let deadline, monotonicNanoseconds() >= deadline { break }
                    var session = BitswapFetchSession(roots: configuration.cids, configuration: configuration.session)
                    let roundEnd = monotonicNanoseconds() + roundTimeout
                    if let message = session.start(now: monotonicNanoseconds()) { try await send(message) }
                    while !session.isComplete {
                        guard let event = await iterator.next() else {
                            throw ClientFailure(description: "client \(self.index): event stream ended")
                        }
                        switch event {
                        case .message(let message):
                            received += 1
                            if let limit = configuration.resetAfterMessages, received >= limit {
                                // Vanish mid-transfer, as a crashed or killed peer does: a TCP reset, no goodbye.
                                outcome.statistics.merge(session.statistics)
                                outcome.rounds += 1
                                await self.connection.abort()
                                break rounds
                            }
                            if let reply = session.receive(message, now: monotonicNanoseconds()) { try await send(reply) }
                        case .badMessage(let reason):
                            outcome.errors.append("client \(self.index): server sent a bad message: \(reason)")
                        case .tick:
                            if monotonicNanoseconds() > roundEnd {
                                outcome.statistics.merge(session.statistics)
                                throw ClientFailure(description: "client \(self.index): round \(outcome.rounds + 1) timed out with \(session.outstandingCount) wants outstanding")
                            }
                        case .closed:
                            outcome.statistics.merge(session.statistics)
                            throw ClientFailure(description: "client \(self.index): connection closed by the server")
                        }
                    }
                    outcome.statistics.merge(session.statistics)
                    outcome.rounds += 1
                }
                if configuration.resetAfterMessages == nil { outbound.finish() }
            }
        } catch {
            outcome.errors.append(error is ClientFailure ? "\(error)" : "client \(index): \(error)")
        }
        return outcome
    }

    func close() async {
        sink.finish()
        await connection.close()
        await host.shutdown()
    }
}

extension BitswapFetchSession.Statistics {
    mutating func merge(_ other: Self) {
        blocks += other.blocks
        bytes += other.bytes
        haves += other.haves
        dontHaves += other.dontHaves
        duplicates += other.duplicates
        messagesSent += other.messagesSent
        latencies.append(contentsOf: other.latencies)
        failureCount += other.failureCount
        for failure in other.failures where failures.count < Self.maxRecordedFailures { failures.append(failure) }
    }
}

/// Runs `body`, failing with a timeout error if it takes longer than `limit`.
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw ClientFailure(description: "timed out after \(limit)")
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw ClientFailure(description: "no result") }
        return first
    }
}
