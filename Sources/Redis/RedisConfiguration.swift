/// Where the Redis server is, how to log in, and every limit the client applies. Each limit is a named
/// setting with a default.
public struct RedisConfiguration: Sendable, Hashable {
    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    public var port: Int
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

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil,
                database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`. The port defaults to 6379 and the database to
    /// 0; user and password may be percent-encoded; an IPv6 host is written in brackets (`[::1]`).
    public init(url: String) throws(RedisError) {
        let scheme = "redis://"
        guard url.hasPrefix(scheme) else {
            throw .invalidURL("\(url.debugDescription) does not start with redis:// (rediss:// TLS is not supported)")
        }
        var rest = Substring(url.dropFirst(scheme.count))
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
        var database = 0
        if !path.isEmpty {
            guard let value = Int(path), value >= 0 else {
                throw .invalidURL("database \(path.debugDescription) is not a non-negative number")
            }
            database = value
        }
        self.init(host: String(host), port: port, username: username, password: password, database: database)
    }

    /// `host:port` for messages.
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

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
        return "redis://\(credentials)\(address)/\(database)"
    }
}
