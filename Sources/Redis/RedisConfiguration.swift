/// Where the Redis server is, how to log in, and every limit the client applies. Each limit is a named
/// setting with a default.
///
/// Two modes (`mode`):
/// - `.standalone` (the default; `redis://host:port/db`): one server, everything goes to `host:port`.
/// - `.cluster(seeds:)` (`redis+cluster://[[user]:password@]host1:port1,host2:port2,...`): a Redis Cluster.
///   The slot map is read with CLUSTER SLOTS from any seed (the seeds need not be all nodes, nor stay up:
///   one reachable node is enough), each master gets a pool of `poolSize` connections, and every command
///   goes to the master serving its key's slot, following MOVED and ASK. The same password and user log
///   in to every node; the database is always 0 (the specification: "Redis Cluster does not support
///   multiple databases like the standalone version of Redis. We only support database 0"). `host` and `port` are the first seed.
public struct RedisConfiguration: Sendable, Hashable {
    /// One server or a cluster; see the type's documentation.
    public enum Mode: Sendable, Hashable {
        case standalone
        /// Nodes the slot map is first read from (afterwards from the masters it lists, then these again).
        case cluster(seeds: [RedisNode])
    }

    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    public var port: Int
    /// `.standalone` unless set, or parsed from a `redis+cluster://` URL.
    public var mode: Mode = .standalone
    /// ACL user for `AUTH user password` (Redis 6+); nil sends `AUTH password` (the `default` user).
    public var username: String?
    /// Password sent with AUTH on every new connection; nil sends no AUTH.
    public var password: String?
    /// Database selected with SELECT on every new connection (0 sends no SELECT).
    public var database: Int
    /// Connections kept open; commands from many callers pipeline on each of them.
    public var poolSize: Int = 4
    /// How long a command may wait for its reply before it fails with `RedisError.timeout`.
    public var commandTimeout: Duration = .seconds(2)
    /// How long a TCP connect may take (the AUTH / SELECT handshake then has `commandTimeout`).
    public var connectTimeout: Duration = .seconds(2)
    /// The largest reply accepted, in wire bytes; a larger one is a protocol error that closes the
    /// connection (bounds what a misbehaving server can make us buffer).
    public var maxReplyBytes: Int = 64 << 20
    /// The most array elements accepted in one reply, all nesting levels together.
    public var maxReplyElements: Int = 1 << 20
    /// The wait after the first failed dial; it doubles with every further failure, up to
    /// `reconnectBackoffMax`, and each wait is randomised to 50-100 % of its value (jitter) so instances do
    /// not redial in lock step. No dial is attempted during the wait: calls fail fast with the last error.
    public var reconnectBackoffBase: Duration = .milliseconds(100)
    public var reconnectBackoffMax: Duration = .seconds(10)

    // Cluster mode only.

    /// The most MOVED / ASK redirects one command (or pipeline) follows before it fails with
    /// `RedisError.tooManyRedirects` (a redirect loop: the nodes disagree about who owns a slot).
    public var clusterMaxRedirects: Int = 5
    /// How often a `TRYAGAIN` or `CLUSTERDOWN` reply is retried before it is returned as the reply; the waits
    /// start at `clusterRetryBackoff` and double (with 50-100 % jitter).
    public var clusterRetries: Int = 5
    public var clusterRetryBackoff: Duration = .milliseconds(25)
    /// The shortest time between two CLUSTER SLOTS reads (a burst of MOVED replies during a resharding
    /// refreshes the map once; the slot a MOVED names is updated from the redirect itself at once).
    public var clusterRefreshInterval: Duration = .milliseconds(250)

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil,
                database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`, or `redis+cluster://[[user]:password@]host[:port]
    /// [,host[:port]...][/0]` for a Redis Cluster (the hosts are seeds: see the type's documentation). The port
    /// defaults to 6379 and the database to 0 (a cluster only has database 0); user and password may be
    /// percent-encoded; an IPv6 host is written in brackets (`[::1]`).
    public init(url: String) throws(RedisError) {
        let standalone = "redis://"
        let cluster = "redis+cluster://"
        let isCluster = url.hasPrefix(cluster)
        guard isCluster || url.hasPrefix(standalone) else {
            throw .invalidURL("\(url.debugDescription) does not start with redis:// or redis+cluster:// (rediss:// TLS is not supported)")
        }
        var rest = Substring(url.dropFirst(isCluster ? cluster.count : standalone.count))
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let user = try Self.percentDecode(credentials[..<colon])
                username = user.isEmpty ? nil : user
                password = try Self.percentDecode(credentials[credentials.index(after: colon)...])
            } else {
                // `redis://secret@host`: a lone credential is the password, as redis-cli reads it.
                password = try Self.percentDecode(credentials)
            }
        }
        var database = 0
        if !path.isEmpty {
            guard let value = Int(path), value >= 0 else {
                throw .invalidURL("database \(path.debugDescription) is not a non-negative number")
            }
            database = value
        }
        guard isCluster else {
            let node = try Self.parseNode(rest, in: url)
            self.init(host: node.host, port: node.port, username: username, password: password, database: database)
            return
        }
        guard database == 0 else {
            throw .invalidURL("database \(database) in \(url): a Redis Cluster only has database 0")
        }
        let seeds = try rest.split(separator: ",", omittingEmptySubsequences: false).map {
            (part) throws(RedisError) -> RedisNode in try Self.parseNode(part, in: url)
        }
        self.init(host: seeds[0].host, port: seeds[0].port, username: username, password: password)
        mode = .cluster(seeds: seeds)
    }

    /// `host[:port]` or `[ipv6][:port]`, the port defaulting to 6379.
    private static func parseNode(_ rest: Substring, in url: String) throws(RedisError) -> RedisNode {
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw .invalidURL("unclosed [ in host of \(url)") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidURL("unexpected text after ] in \(url)") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw .invalidURL("no host in \(url)") }
        var port = 6379
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw .invalidURL("port \(portText.debugDescription) is not a number from 1 to 65535")
            }
            port = value
        }
        return RedisNode(host: String(host), port: port)
    }

    /// This configuration for one node of a cluster: the same credentials and limits, `node`'s address,
    /// database 0, standalone (a node is dialled like a single server).
    func forNode(_ node: RedisNode) -> RedisConfiguration {
        var configuration = self
        configuration.host = node.host
        configuration.port = node.port
        configuration.database = 0
        configuration.mode = .standalone
        return configuration
    }

    /// `host:port` for messages.
    public var address: String { RedisNode(host: host, port: port).address }

    private static func percentDecode(_ text: Substring) throws(RedisError) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(),
                  let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { throw .invalidURL("bad percent escape in credentials") }
            bytes.append(value)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension RedisConfiguration: CustomStringConvertible {
    /// The URL form with the password masked.
    public var description: String {
        var credentials = ""
        if let password {
            credentials = "\(username ?? ""):\(password.isEmpty ? "" : "***")@"
        }
        switch mode {
        case .standalone: return "redis://\(credentials)\(address)/\(database)"
        case .cluster(let seeds): return "redis+cluster://\(credentials)\(seeds.map(\.address).joined(separator: ","))"
        }
    }
}

/// One server: a standalone Redis, or a node of a cluster.
public struct RedisNode: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port` (`[v6]:port`), as in messages and MOVED / ASK redirects.
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public var description: String { address }
}
