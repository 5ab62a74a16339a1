/// Why a Redis call failed. The cases keep apart what a caller reacts to differently: the server cannot be
/// reached (back off, fall back), a reply took too long, credentials were refused (configuration), the
/// server answered with an error (the command was wrong), or the bytes on the wire made no sense.
public enum RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No connection could be made to `address` (refused, connect timeout, DNS, or the client is backing off
    /// after failed dials: `reason` says which).
    case unreachable(address: String, reason: String)
    /// `command` got no reply within `after`. The connection is closed (a late reply would be paired with
    /// the wrong caller), and the next call dials a new one.
    case timeout(command: String, after: Duration)
    /// AUTH was refused (wrong password or user), or the server wants a password and none is configured.
    case authenticationFailed(address: String, message: String)
    /// The server answered with an error reply (`-ERR ...`, `-WRONGTYPE ...`, `-NOSCRIPT ...`).
    case server(String)
    /// The server's bytes are not valid RESP, or a reply exceeds the configured size limit. The connection
    /// is closed.
    case protocolError(String)
    /// The connection closed (by the server, by a protocol error or timeout on another command, or by
    /// shutdown) before this command's reply arrived.
    case connectionClosed(String)
    /// The reply was valid RESP, but not the shape the typed helper expected.
    case unexpectedReply(expected: String, got: String)
    /// A `redis://` URL that cannot be used.
    case invalidURL(String)
    /// The client was shut down.
    case shutDown
    /// Cluster mode: `command` was redirected (MOVED / ASK) more often than `clusterMaxRedirects` allows;
    /// `last` is the last redirect. The nodes disagree about who serves the slot (a redirect loop).
    case tooManyRedirects(command: String, last: String)
    /// Cluster mode: the keys of one pipeline lie in different hash slots (a pipeline goes to one node;
    /// use one hash tag, `{...}`, for keys that travel together).
    case crossSlot(String)
    /// Cluster mode: no usable slot map (no node answered CLUSTER SLOTS, or its answer leaves the key's
    /// slot unserved).
    case clusterTopology(String)

    public var description: String {
        switch self {
        case .unreachable(let address, let reason): "Redis at \(address) unreachable: \(reason)"
        case .timeout(let command, let after): "Redis command \(command) timed out after \(after)"
        case .authenticationFailed(let address, let message):
            "Redis authentication failed at \(address): \(message)"
        case .server(let message): "Redis error reply: \(message)"
        case .protocolError(let message): "Redis protocol error: \(message)"
        case .connectionClosed(let reason): "Redis connection closed: \(reason)"
        case .unexpectedReply(let expected, let got): "unexpected Redis reply: expected \(expected), got \(got)"
        case .invalidURL(let reason): "invalid Redis URL: \(reason)"
        case .shutDown: "Redis client is shut down"
        case .tooManyRedirects(let command, let last):
            "Redis Cluster redirected \(command) too many times (a redirect loop?); last: \(last)"
        case .crossSlot(let reason): "Redis Cluster: keys of one pipeline in different slots: \(reason)"
        case .clusterTopology(let reason): "Redis Cluster slot map unusable: \(reason)"
        }
    }

    /// The leading word of a server error (`NOSCRIPT`, `WRONGTYPE`, `ERR`), nil for other cases.
    public var serverErrorCode: String? {
        guard case .server(let message) = self else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }
}
