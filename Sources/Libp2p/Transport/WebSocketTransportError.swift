import NIOCore

/// Errors raised by the WebSocket transport. Each names what went wrong and, where the peer is at
/// fault, which RFC 6455 rule it broke.
public enum WebSocketTransportError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer announced a frame longer than the configured `maxFrameSize`; we closed with 1009.
    case frameTooLarge(limit: Int)
    /// The peer broke RFC 6455 framing rules; we closed with 1002. The string says which rule.
    case protocolViolation(String)
    /// The peer closed with a status other than 1000 (normal) or 1005 (no status).
    case closedByPeer(code: UInt16, reason: String)
    /// The TLS handshake and HTTP upgrade did not finish within the configured timeout.
    case handshakeTimedOut
    /// The connection closed before the HTTP upgrade finished.
    case closedDuringHandshake
    /// The server answered the upgrade request with something other than a valid `101`.
    case upgradeRejected(String)
    /// A write was attempted after the WebSocket close handshake started.
    case writeAfterClose

    public var description: String {
        switch self {
        case .frameTooLarge(let limit): "WebSocket frame larger than the \(limit)-byte limit (closed with 1009)"
        case .protocolViolation(let rule): "WebSocket protocol violation: \(rule) (closed with 1002)"
        case .closedByPeer(let code, let reason): "WebSocket closed by peer with status \(code) \"\(reason)\""
        case .handshakeTimedOut: "WebSocket TLS/upgrade handshake timed out"
        case .closedDuringHandshake: "connection closed before the WebSocket upgrade completed"
        case .upgradeRejected(let why): "WebSocket upgrade rejected: \(why)"
        case .writeAfterClose: "write on a WebSocket connection that is closing"
        }
    }
}
