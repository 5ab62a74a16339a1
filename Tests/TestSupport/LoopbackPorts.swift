import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Free TCP ports on 127.0.0.1 for peers started by tests.
///
/// The kernel picks a free ephemeral port (bind to port 0); the port is closed again before the peer binds
/// it, so a process-wide set makes sure two tests in this process never get the same one.
public enum LoopbackPorts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handedOut: Set<UInt16> = []

    /// A port on 127.0.0.1 that was free a moment ago and that no other caller here has received.
    public static func allocate() throws -> UInt16 {
        for _ in 0..<64 {
            let port = try kernelChosenPort()
            let fresh = lock.withLock { handedOut.insert(port).inserted }
            if fresh {
                return port
            }
        }
        throw InteropHarnessError("could not find a free loopback port")
    }

    private static func kernelChosenPort() throws -> UInt16 {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw InteropHarnessError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw InteropHarnessError("bind(127.0.0.1:0) failed: errno \(errno)") }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw InteropHarnessError("getsockname failed: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }
}

extension LoopbackPorts {
    /// A port `p` on 127.0.0.1 such that `p` and `p + offset` are both free now and were handed out by
    /// nobody else here, for servers that derive a second port from the first (SeaweedFS opens its gRPC
    /// port at HTTP port + 10000 in places that ignore the explicit flag). Drawn from 20000..<30000, below
    /// the kernel's ephemeral range, so outgoing connections do not take it in the meantime.
    public static func allocatePair(offset: UInt16 = 10_000) throws -> UInt16 {
        for _ in 0..<256 {
            let port = UInt16.random(in: 20_000..<30_000)
            guard isFree(port), isFree(port + offset) else { continue }
            let fresh = lock.withLock { () -> Bool in
                guard !handedOut.contains(port), !handedOut.contains(port + offset) else { return false }
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
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        return bound == 0
    }
}
