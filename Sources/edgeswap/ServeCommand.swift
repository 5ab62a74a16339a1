import ArgumentParser
import Bitswap
import BlockStore
import Denylist
import Dispatch
import EdgeswapServer
import Foundation
import Libp2p
import Logging
import Multiformats
import NIOCore
import ObjectStorage
import Quota
import Redis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `edgeswap serve`: runs the libp2p host (WebSocket + Noise + yamux/mplex, identify, ping).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the server: listen on WebSocket addresses and serve the store's blocks over Bitswap.",
        discussion: """
            Prints one line `listening <multiaddr>/p2p/<peer id>` on stdout per listener once it is bound (port 0 \
            is replaced by the real port), logs to stderr, and shuts down gracefully on SIGTERM or SIGINT (GoAway \
            to every peer, running streams get --shutdown-grace seconds).

            Identity: --key FILE (a libp2p PrivateKey protobuf, as `ipfs key export` or `edgeswap key` write), \
            or else the environment variable EDGESWAP_PRIVATE_KEY (base64 of that protobuf), or else \
            PEER_ID_JSON (Hoverboard's {"id","privKey","pubKey"} JSON). Every instance given the same key \
            announces the same peer id.

            Bitswap (/ipfs/bitswap/1.2.0, 1.1.0, 1.0.0 and /ipfs/bitswap) serves every block of every CAR in \
            --store; answers go out on a stream the server opens to the peer, as kubo expects.

            --print-roots FILE (a fixtures.json from `edgeswap fixtures`) adds a banner after the listening \
            lines: the roots served with their names, the multiaddr to dial, and the kubo commands that fetch \
            them (`make run` uses it).
            """)

    @OptionGroup(title: "Store")
    var storeOptions: StoreOptions

    @OptionGroup(title: "Shared state (Redis)")
    var redisOptions: RedisOptions

    @OptionGroup(title: "Bitswap and block lookups")
    var servingOptions: ServingOptions

    @OptionGroup(title: "Per-peer quotas")
    var quotaOptions: QuotaOptions

    @Option(name: .long, help: "Private key file (libp2p PrivateKey protobuf). Default: $EDGESWAP_PRIVATE_KEY, then $PEER_ID_JSON.")
    var key: String?

    @Option(name: .long, help: ArgumentHelp(
        "Address to listen on; repeat for several.",
        discussion: "/ip4|ip6|dns4/HOST/tcp/PORT/ws, /…/tcp/PORT/wss or /…/tcp/PORT/tls/ws (TLS needs --tls-cert and --tls-key). PORT 0 picks a free port."))
    var listen: [String] = []

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain (leaf first) for wss listeners.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key for wss listeners.")
    var tlsKey: String?

    @Option(name: .long, help: ArgumentHelp(
        "Public address to announce in identify instead of the bound ones; repeat for several.",
        discussion: "For example /dns4/edge.example.com/tcp/443/wss when a load balancer fronts the server."))
    var announce: [String] = []

    @Option(name: .customLong("handshake-timeout"),
            help: "Seconds from the WebSocket upgrade until a connection is ready (multistream-select, Noise, muxer); slower peers are dropped.")
    var handshakeTimeout: Double = 10

    @Option(name: .customLong("max-connections"),
            help: "Connections open at once; further ones are closed right after the WebSocket upgrade.")
    var maxConnections: Int = 4096

    @Option(name: .customLong("max-streams-per-connection"),
            help: "Streams open at once per connection and direction; further inbound streams are reset.")
    var maxStreamsPerConnection: Int = 256

    @Option(name: .customLong("yamux-window"),
            help: "Bytes a peer may send on one stream before we grant more (yamux receive window, at least 262144).")
    var yamuxWindow: UInt32 = 256 * 1024

    @Option(name: .customLong("ws-max-frame"),
            help: "Largest WebSocket frame accepted, in bytes; larger frames close the connection (go-libp2p sends up to 65537).")
    var wsMaxFrame: Int = 1 << 20

    @Option(name: .customLong("idle-timeout"),
            help: "Seconds a connection may stay open with no stream before it is closed.")
    var idleTimeout: Double = 120

    @Option(name: .customLong("tcp-keepalive"),
            help: "Seconds of silence before TCP keepalive probes a peer (dead peers are dropped about 30 s later); 0 turns it off.")
    var tcpKeepalive: Double = 60

    @Option(name: .customLong("shutdown-grace"),
            help: "Seconds running streams get to finish on shutdown before connections are closed.")
    var shutdownGrace: Double = 5

    @Option(name: .customLong("admin-listen"), help: ArgumentHelp(
        "HOST:PORT of the admin HTTP endpoint: /livez, /readyz (503 while storage is unreachable), /metrics (Prometheus).",
        discussion: "Off unless given. Keep it on a private interface, e.g. 127.0.0.1:9090; PORT 0 picks a free port (printed as `admin http://HOST:PORT`)."))
    var adminListen: String?

    @Option(name: .customLong("denylist"), help: ArgumentHelp(
        "An IPIP-383 compact denylist (*.deny) whose blocks are never served; repeat for several (a later file's rules win over an earlier one's).",
        discussion: "Every new want is checked before any storage or cache access; a denied want is answered as a miss (DONT_HAVE where asked) and counted by rule kind (edgeswap_bitswap_denied_wants_total). /ipfs/CID rules match by multihash (every CID form of the same bytes), //hash rules are the double-hashed and legacy badbits forms, ! rules allow. Path and /ipns/ rules do not apply to Bitswap: they are counted and logged at load, not enforced. A list that does not parse stops the start; while serving, files are reloaded on SIGHUP and when they change (see --denylist-poll), and a reload that fails keeps the previous rules."))
    var denylist: [String] = []

    @Option(name: .customLong("denylist-poll"),
            help: "Seconds between checks of the --denylist files for changes (a changed file is reloaded); 0 turns polling off (SIGHUP still reloads).")
    var denylistPoll: Double = 10

    @Option(name: .customLong("print-roots"),
            help: "A fixtures.json (from `edgeswap fixtures`): after listening, print its roots and the kubo commands that fetch them.")
    var printRoots: String?

    @Option(name: .customLong("log-level"),
            help: "Minimum level logged to stderr: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard !self.listen.isEmpty else {
            throw ValidationError("no --listen address, e.g. --listen /ip4/0.0.0.0/tcp/4001/ws")
        }
        try self.storeOptions.validateStore()
        if let store = self.storeOptions.store {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: store, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--store \(store) is not an existing directory")
            }
        }
        try self.redisOptions.validateRedis()
        try self.servingOptions.validateServing()
        try self.quotaOptions.validateQuota()
        guard self.denylistPoll >= 0 else { throw ValidationError("--denylist-poll cannot be negative") }
        for text in self.listen + self.announce {
            do {
                _ = try WebSocketMultiaddr(try Multiaddr(text))
            } catch {
                throw ValidationError("\(text): \(error)")
            }
        }
        guard (self.tlsCert == nil) == (self.tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        if let adminListen, Self.hostAndPort(adminListen) == nil {
            throw ValidationError("--admin-listen \(adminListen): expected HOST:PORT, e.g. 127.0.0.1:9090")
        }
        if let printRoots {
            do {
                _ = try Self.loadManifest(printRoots)
            } catch {
                throw ValidationError("--print-roots \(printRoots): \(error)")
            }
        }
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError("--log-level \(self.logLevel): use trace, debug, info, notice, warning, error or critical")
        }
        guard self.handshakeTimeout > 0, self.idleTimeout > 0, self.shutdownGrace >= 0, self.tcpKeepalive >= 0 else {
            throw ValidationError("timeouts must be positive")
        }
        guard self.maxConnections > 0, self.maxStreamsPerConnection > 0 else {
            throw ValidationError("--max-connections and --max-streams-per-connection must be positive")
        }
        guard self.yamuxWindow >= 256 * 1024 else { throw ValidationError("--yamux-window must be at least 262144") }
        guard self.wsMaxFrame >= 65537 else {
            throw ValidationError("--ws-max-frame must be at least 65537 (one Noise frame)")
        }
    }

    /// `HOST:PORT` (an IPv6 host in brackets) split, or nil.
    static func hostAndPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    /// The identity from --key, $EDGESWAP_PRIVATE_KEY or $PEER_ID_JSON.
    static func loadIdentity(keyFile: String?, environment: [String: String]) throws -> PrivateKey {
        if let keyFile {
            return try PrivateKey(contentsOfFile: keyFile)
        }
        if let base64 = environment["EDGESWAP_PRIVATE_KEY"] {
            guard let bytes = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw ValidationError("EDGESWAP_PRIVATE_KEY is not base64")
            }
            return try PrivateKey(protobuf: [UInt8](bytes))
        }
        if let json = environment["PEER_ID_JSON"] {
            return try PrivateKey(peerIDJSON: Array(json.utf8))
        }
        throw ValidationError("no identity: pass --key FILE or set EDGESWAP_PRIVATE_KEY or PEER_ID_JSON")
    }

    /// A `fixtures.json` as `edgeswap fixtures` writes it.
    static func loadManifest(_ path: String) throws -> FixtureManifest {
        try JSONDecoder().decode(FixtureManifest.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func run() async throws {
        let level = Logger.Level(rawValue: self.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let identity = try Self.loadIdentity(keyFile: self.key, environment: ProcessInfo.processInfo.environment)
        var limits = Libp2pHostLimits()
        limits.handshakeTimeout = .nanoseconds(Int64(self.handshakeTimeout * 1e9))
        limits.maxConnections = self.maxConnections
        limits.maxStreamsPerConnection = self.maxStreamsPerConnection
        limits.yamuxStreamWindow = self.yamuxWindow
        limits.webSocketMaxFrameSize = self.wsMaxFrame
        limits.idleTimeout = .nanoseconds(Int64(self.idleTimeout * 1e9))
        limits.shutdownGracePeriod = .nanoseconds(Int64(self.shutdownGrace * 1e9))
        limits.tcpKeepaliveIdle = self.tcpKeepalive > 0 ? .seconds(Int64(max(1, self.tcpKeepalive.rounded()))) : nil
        let configuration = Libp2pHostConfiguration(
            identity: identity,
            listenAddresses: try self.listen.map { try Multiaddr($0) },
            announceAddresses: try self.announce.map { try Multiaddr($0) },
            tlsCertificateChainFile: self.tlsCert, tlsPrivateKeyFile: self.tlsKey,
            limits: limits, logger: Logger(label: "edgeswap"))
        let host = try Libp2pHost(configuration: configuration)
        let store = try await self.storeOptions.open(create: false)
        let redis = try self.redisOptions.makeClient()
        var settings = self.servingOptions.source(remote: store.client != nil)
        settings.peerScopeTTL = self.redisOptions.scopeLifetime
        let source = IndexedCARBlockSource(
            buckets: store.buckets, settings: settings,
            sharedScopes: redis.map { RedisPeerScopes(client: $0, keyPrefix: self.redisOptions.redisPrefix,
                                                      ttl: self.redisOptions.scopeLifetime) },
            sharedIndexes: redis.map { RedisIndexCache(client: $0, keyPrefix: self.redisOptions.redisPrefix,
                                                       ttl: .milliseconds(Int64(self.redisOptions.indexTTL * 1000))) },
            logger: Logger(label: "edgeswap.blockstore"))
        var quota: QuotaGate?
        if let policy = self.quotaOptions.policy {
            let ledger: any QuotaLedger = redis.map { RedisQuotaLedger(client: $0, keyPrefix: self.redisOptions.redisPrefix) }
                ?? LocalQuotaLedger()
            quota = QuotaGate(policy: policy, ledger: ledger, logger: Logger(label: "edgeswap.quota"))
        }
        var engine = self.servingOptions.engine
        var denylists: DenylistStore?
        if !self.denylist.isEmpty {
            do {
                denylists = try DenylistStore(paths: self.denylist, logger: Logger(label: "edgeswap.denylist"))
            } catch {
                throw ValidationError("--denylist: \(error)")
            }
            engine.wantFilter = denylists.map { DenylistFilter(store: $0) }
        }
        let service = BitswapService(source: source, configuration: engine, gate: quota,
                                     logger: Logger(label: "edgeswap.bitswap"))
        service.register(on: host)
        let signals = SignalWaiter(signals: [SIGTERM, SIGINT, SIGHUP])
        let poll = self.denylistPoll
        let denylistWatcher = denylists.flatMap { store in
            poll > 0 ? Task { await store.watch(every: .milliseconds(Int64(poll * 1000))) } : nil
        }
        defer { denylistWatcher?.cancel() }
        let addresses: [Multiaddr]
        do {
            addresses = try await host.start()
        } catch {
            await host.shutdown()
            try? await store.client?.shutdown()
            await redis?.shutdown()
            throw error
        }
        var admin: AdminServer?
        if let adminListen, let (adminHost, adminPort) = Self.hostAndPort(adminListen) {
            var checks: [HealthCheck] = store.named.map { name, bucket in
                HealthCheck(name: name, critical: true) {
                    _ = try await bucket.list(prefix: "", after: nil, limit: 1)
                }
            }
            if let redis {
                // Not critical: without Redis, lookups go on through S3 (no shared scopes or index cache).
                checks.append(HealthCheck(name: "redis", critical: false) {
                    _ = try await redis.send(["PING"])
                })
            }
            let endpoints = AdminEndpoints(health: HealthMonitor(checks: checks), source: source, service: service,
                                           host: host, s3: store.client, quota: quota)
            do {
                admin = try await AdminServer.start(host: adminHost, port: adminPort, logger: Logger(label: "edgeswap.admin"),
                                                    respond: endpoints.respond)
            } catch {
                await host.shutdown()
                throw ValidationError("--admin-listen \(adminListen): \(error)")
            }
            writeStandardOutput("admin http://\(adminHost):\(admin?.localAddress.port ?? adminPort)")
        }
        for address in addresses {
            writeStandardOutput("listening \(address)")
        }
        if let printRoots {
            let manifest = try Self.loadManifest(printRoots)
            for line in ServeBanner.lines(manifest: manifest, manifestPath: printRoots,
                                          addresses: addresses.map { "\($0)" }) {
                writeStandardOutput(line)
            }
        }
        var signal = await signals.next()
        while signal == SIGHUP {
            // SIGHUP reloads the denylists (a reload that fails is logged and keeps the rules in force).
            if let denylists { _ = try? denylists.reload() }
            signal = await signals.next()
        }
        Logger(label: "edgeswap").info("signal received; shutting down", metadata: ["signal": "\(signal)"])
        await host.shutdown()
        await admin?.shutdown()
        try? await store.client?.shutdown()
        await redis?.shutdown()
    }
}

/// One line to stdout (fd 1), written whole and unbuffered, so a supervisor reading the pipe sees it at once.
func writeStandardOutput(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + done, $0.count - done) }
        if n <= 0 { return }
        done += n
    }
}

/// Turns SIGTERM/SIGINT into an awaitable event (the default actions are disabled while it exists).
final class SignalWaiter: @unchecked Sendable {
    // @unchecked: the sources are only touched in init; the stream is Sendable.
    private var sources: [any DispatchSourceSignal] = []
    private let stream: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation

    init(signals: [Int32]) {
        (self.stream, self.continuation) = AsyncStream.makeStream(of: Int32.self)
        let queue = DispatchQueue(label: "edgeswap.signals")
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            let continuation = self.continuation
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            self.sources.append(source)
        }
    }

    /// Waits for the next signal.
    func next() async -> Int32 {
        for await number in self.stream { return number }
        return 0
    }
}
