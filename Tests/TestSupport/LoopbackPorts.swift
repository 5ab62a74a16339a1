import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Free TCP ports on 127.0.0.1 for peers started by tests.
///
/// Ports are drawn below the kernel's ephemeral range (32768-60999 by default): a port handed out is free
/// only until the server binds it, and in that window an outgoing connection (kubo, a client, a test) could
/// take an ephemeral port as its source port. A process-wide set makes sure two tests in this process never
/// get the same one. Single ports come from 10000..<15000; pairs from 15000..<22000 (with p + 10000 also below
/// the ephemeral range).
public enum LoopbackPorts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handedOut: Set<UInt16> = []

    /// A port on 127.0.0.1 that was free a moment ago and that no other caller here has received.
    ///
    /// The probe (a bind) runs under the lock and only on ports nobody here has received: probing a port
    /// already handed out would hold it for a moment, and the server it was handed to could fail to bind
    /// it ("Address already in use") just then.
    public static func allocate() throws -> UInt16 {
        for _ in 0..<256 {
            let port = UInt16.random(in: 10_000..<15_000)
            let fresh = lock.withLock { () -> Bool in
                guard !handedOut.contains(port), isFree(port) else { return false }
                handedOut.insert(port)
                return true
            }
            if fresh {
                return port
            }
        }
        throw InteropHarnessError("could not find a free loopback port in 10000..<15000")
    }
}

extension LoopbackPorts {
    /// A port `p` on 127.0.0.1 such that `p` and `p + offset` are both free now and were handed out by
    /// nobody else here, for servers that derive a second port from the first (SeaweedFS opens its gRPC
    /// port at HTTP port + 10000 in places that ignore the explicit flag). Drawn from 15000..<22000, so both
    /// lie below the kernel's ephemeral range and outgoing connections do not take them in the meantime.
    public static func allocatePair(offset: UInt16 = 10_000) throws -> UInt16 {
        for _ in 0..<256 {
            let port = UInt16.random(in: 15_000..<22_000)
            // As in `allocate()`: probe under the lock, and never a port already handed out.
            let fresh = lock.withLock { () -> Bool in
                guard !handedOut.contains(port), !handedOut.contains(port + offset),
                      isFree(port), isFree(port + offset) else { return false }
                handedOut.insert(port)
                handedOut.insert(port + offset)
                return true
            }
            if fresh { return port }
        }
        throw InteropHarnessError("could not find a free loopback port pair (p, p + \(offset))")
    }

    /// Whether a TCP socket can bind 127.0.0.1:`port` right now.
    public static func isFree(_ port: UInt16) -> Bool {
        withSocket(port: port) { fd, address in
            withUnsafePointer(to: address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            } == 0
        } ?? false
    }

    /// Connects to 127.0.0.1:`port`, sends `request`, and returns the first bytes of the answer (up to
    /// `maxReply`), or nil when nothing accepts or answers within about a second. For readiness probes.
    public static func exchange(port: UInt16, request: [UInt8], maxReply: Int = 64) -> [UInt8]? {
        withSocket(port: port) { fd, address -> [UInt8]? in
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let connected = withUnsafePointer(to: address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { return nil }
            let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard sent == request.count else { return nil }
            var reply = [UInt8](repeating: 0, count: maxReply)
            let count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return count > 0 ? Array(reply[0..<count]) : nil
        } ?? nil
    }

    /// A fresh TCP socket and the address 127.0.0.1:`port`, closed after `body`; nil if no socket.
    private static func withSocket<T>(port: UInt16, _ body: (Int32, sockaddr_in) -> T) -> T? {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return body(fd, address)
    }
}
