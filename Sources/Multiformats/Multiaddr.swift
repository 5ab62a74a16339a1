/// A multiaddr (multiformats/multiaddr): a path of self-describing address components, such as
/// `/ip4/127.0.0.1/tcp/4001/ws/p2p/12D3KooW…`.
///
/// Binary form: each component is `uvarint protocol code ‖ value`, where the value is fixed-size for
/// `ip4` (4 bytes), `ip6` (16) and `tcp` (2, big-endian), empty for `ws`, `wss` and `tls`, and
/// "a varint-prefixed length followed by the value" for the variable-size protocols (`dns*`, `sni`,
/// `p2p`). edgeswap handles the protocols a WebSocket libp2p endpoint needs; others are refused with a
/// reason rather than carried opaquely.
public struct Multiaddr: Hashable, Sendable, CustomStringConvertible {
    /// One protocol component with its value.
    public enum Component: Hashable, Sendable {
        case ip4(IPv4Address)
        case ip6(IPv6Address)
        case dns(String)
        case dns4(String)
        case dns6(String)
        case dnsaddr(String)
        case tcp(UInt16)
        case ws
        case wss
        case tls
        case sni(String)
        /// A peer ID, as the multihash of its public key.
        case p2p(Multihash)

        /// The multicodec code of the protocol.
        public var code: UInt64 {
            switch self {
            case .ip4: return 4
            case .ip6: return 41
            case .dns: return 53
            case .dns4: return 54
            case .dns6: return 55
            case .dnsaddr: return 56
            case .tcp: return 6
            case .ws: return 477
            case .wss: return 478
            case .tls: return 448
            case .sni: return 449
            case .p2p: return 421
            }
        }

        /// The protocol's name in the text form.
        public var name: String {
            switch self {
            case .ip4: return "ip4"
            case .ip6: return "ip6"
            case .dns: return "dns"
            case .dns4: return "dns4"
            case .dns6: return "dns6"
            case .dnsaddr: return "dnsaddr"
            case .tcp: return "tcp"
            case .ws: return "ws"
            case .wss: return "wss"
            case .tls: return "tls"
            case .sni: return "sni"
            case .p2p: return "p2p"
            }
        }

        /// The value's text form, nil for protocols without a value.
        public var valueText: String? {
            switch self {
            case .ip4(let a): return a.description
            case .ip6(let a): return a.description
            case .dns(let s), .dns4(let s), .dns6(let s), .dnsaddr(let s), .sni(let s): return s
            case .tcp(let port): return String(port)
            case .ws, .wss, .tls: return nil
            // Peer IDs print as bare base58btc multihashes, the form every libp2p implementation reads.
            case .p2p(let mh): return Multibase.base58btc.encodeWithoutPrefix(mh.bytes)
            }
        }
    }

    /// The components, outermost first.
    public let components: [Component]

    /// A multiaddr of the given components.
    public init(_ components: [Component]) {
        self.components = components
    }

    /// The longest multiaddr accepted, text or binary. Listen addresses are tens of bytes; the limit
    /// keeps a hostile identify message from making us build huge values.
    public static let maxLength = 1024

    /// The longest DNS name: RFC 1035 §2.3.4, "names … 255 octets or less".
    public static let maxNameLength = 255

    // MARK: Text form

    /// Parses the text form, e.g. `/dns4/example.com/tcp/443/wss/p2p/12D3KooW…`.
    public init(_ text: some StringProtocol) throws(MultiformatsError) {
        guard text.utf8.count <= Self.maxLength else {
            throw .invalidMultiaddr("text of \(text.utf8.count) bytes is over the \(Self.maxLength)-byte limit")
        }
        guard text.first == "/" else { throw .invalidMultiaddr("must start with '/'") }
        var parts = text.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        // A trailing "/" is tolerated (go-multiaddr trims it); empty components elsewhere are not.
        if parts.count > 1 && parts.last == "" { parts = parts.dropLast() }
        guard !(parts.count == 1 && parts.first == "") else { throw .invalidMultiaddr("empty multiaddr") }
        var components: [Component] = []
        var iterator = parts.makeIterator()
        while let name = iterator.next() {
            func value() throws(MultiformatsError) -> Substring {
                guard let v = iterator.next(), !v.isEmpty else {
                    throw .invalidMultiaddr("/\(name) needs a value")
                }
                return Substring(v)
            }
            switch name {
            case "ip4":
                let v = try value()
                guard let a = IPv4Address(v) else { throw .invalidMultiaddr("'\(v)' is not an IPv4 address") }
                components.append(.ip4(a))
            case "ip6":
                let v = try value()
                guard let a = IPv6Address(v) else { throw .invalidMultiaddr("'\(v)' is not an IPv6 address") }
                components.append(.ip6(a))
            case "dns", "dns4", "dns6", "dnsaddr", "sni":
                let v = String(try value())
                try Self.checkName(v, protocol: String(name))
                switch name {
                case "dns": components.append(.dns(v))
                case "dns4": components.append(.dns4(v))
                case "dns6": components.append(.dns6(v))
                case "dnsaddr": components.append(.dnsaddr(v))
                default: components.append(.sni(v))
                }
            case "tcp":
                let v = try value()
                // Decimal digits only: UInt16("+80") would accept a sign.
                guard v.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                    let port = UInt16(v)
                else { throw .invalidMultiaddr("'\(v)' is not a TCP port (0-65535)") }
                components.append(.tcp(port))
            case "ws": components.append(.ws)
            case "wss": components.append(.wss)
            case "tls": components.append(.tls)
            case "p2p", "ipfs":  // "/ipfs/" is the legacy name of "/p2p/"; it still appears in configs.
                components.append(.p2p(try Self.parsePeerID(try value())))
            case "":
                throw .invalidMultiaddr("empty component")
            default:
                throw .invalidMultiaddr("unsupported protocol '\(name)'")
            }
        }
        self.components = components
    }

    /// The text form.
    public var description: String {
        var out = ""
        for c in components {
            out += "/" + c.name
            if let v = c.valueText { out += "/" + v }
        }
        return out
    }

    /// The multiaddr spec's p2p value: "the peer ID … legacy base58btc-encoded multihash or CIDv1 with
    /// the libp2p-key multicodec" (libp2p/specs peer-ids.md, "String representation").
    ///
    /// Public because peer IDs appear outside multiaddrs too (configuration, logs); errors are
    /// `invalidMultiaddr` with the reason.
    public static func parsePeerID(_ peerID: some StringProtocol) throws(MultiformatsError) -> Multihash {
        let text = Substring(peerID)
        let bytes: [UInt8]
        if text.hasPrefix("Qm") || text.hasPrefix("1") {
            // peer-ids.md: "If it starts with 1 or Qm, it's a bare base58btc encoded multihash."
            do throws(MultiformatsError) {
                bytes = try Multibase.base58btc.decodeWithoutPrefix(text)
            } catch { throw .invalidMultiaddr("peer ID '\(text)' is not base58btc: \(error)") }
        } else {
            // "Otherwise, decode it as a multibase-encoded CID" whose codec must be libp2p-key.
            let cid: CID
            do throws(MultiformatsError) {
                cid = try CID(string: text)
            } catch { throw .invalidMultiaddr("peer ID '\(text)' is neither base58btc nor a CID: \(error)") }
            guard cid.version == .v1, cid.codec == Multicodec.libp2pKey else {
                throw .invalidMultiaddr("CID '\(text)' is not a libp2p-key CIDv1")
            }
            return cid.multihash
        }
        return try peerMultihash(bytes)
    }

    /// A peer ID multihash: sha2-256 of the key, or identity of a key of at most 42 bytes (peer-ids.md).
    static func peerMultihash(_ bytes: [UInt8]) throws(MultiformatsError) -> Multihash {
        let mh: Multihash
        do throws(MultiformatsError) {
            mh = try Multihash(bytes: bytes)
        } catch { throw .invalidMultiaddr("peer ID is not a multihash: \(error)") }
        switch mh.code {
        case Multicodec.sha2_256 where mh.digest.count == 32: return mh
        case Multicodec.identity where mh.digest.count <= 42: return mh
        default:
            throw .invalidMultiaddr("peer ID multihash must be sha2-256 (32 bytes) or identity (<= 42 bytes)")
        }
    }

    static func checkName(_ name: String, protocol: String) throws(MultiformatsError) {
        guard !name.isEmpty else { throw .invalidMultiaddr("/\(`protocol`) needs a value") }
        guard name.utf8.count <= maxNameLength else {
            throw .invalidMultiaddr("/\(`protocol`) name of \(name.utf8.count) bytes is over \(maxNameLength)")
        }
        // The text form cannot carry '/' inside a value; control characters never belong in a host name.
        guard !name.utf8.contains(where: { $0 == UInt8(ascii: "/") || $0 < 0x20 || $0 == 0x7F }) else {
            throw .invalidMultiaddr("/\(`protocol`) name '\(name)' has a '/' or a control character")
        }
    }

    // MARK: Binary form

    /// The binary form.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        for c in components {
            Varint.encode(c.code, into: &out)
            switch c {
            case .ip4(let a): a.write(into: &out)
            case .ip6(let a): a.write(into: &out)
            case .dns(let s), .dns4(let s), .dns6(let s), .dnsaddr(let s), .sni(let s):
                Varint.encode(UInt64(s.utf8.count), into: &out)
                out.append(contentsOf: s.utf8)
            case .tcp(let port):
                out.append(UInt8(port >> 8))
                out.append(UInt8(port & 0xFF))
            case .ws, .wss, .tls:
                break
            case .p2p(let mh):
                Varint.encode(UInt64(mh.encodedLength), into: &out)
                mh.write(into: &out)
            }
        }
        return out
    }

    /// Parses the binary form (as identify's `listenAddrs` and `observedAddr` carry it).
    public init(bytes: some Collection<UInt8>) throws(MultiformatsError) {
        let array = Array(bytes)
        self = try array.withUnsafeBytes { raw in
            Result { () throws(MultiformatsError) in try Multiaddr.parse(raw) }
        }.get()
    }

    /// Parses a whole binary multiaddr from raw bytes.
    public static func parse(_ raw: UnsafeRawBufferPointer) throws(MultiformatsError) -> Multiaddr {
        guard !raw.isEmpty else { throw .invalidMultiaddr("empty multiaddr") }
        guard raw.count <= maxLength else {
            throw .invalidMultiaddr("\(raw.count) bytes is over the \(maxLength)-byte limit")
        }
        var components: [Component] = []
        var i = 0
        func varint(_ what: String) throws(MultiformatsError) -> UInt64 {
            do throws(Varint.DecodeError) {
                let (v, n) = try Varint.decode(UnsafeRawBufferPointer(rebasing: raw[i...]))
                i += n
                return v
            } catch { throw .invalidMultiaddr("bad \(what) varint at byte \(i): \(error)") }
        }
        func take(_ n: Int, _ what: String) throws(MultiformatsError) -> UnsafeRawBufferPointer {
            guard n <= raw.count - i else {
                throw .invalidMultiaddr("\(what) needs \(n) bytes at byte \(i), \(raw.count - i) left")
            }
            defer { i += n }
            return UnsafeRawBufferPointer(rebasing: raw[i..<(i + n)])
        }
        func lengthPrefixed(_ what: String) throws(MultiformatsError) -> UnsafeRawBufferPointer {
            let n = try varint("\(what) length")
            guard n <= UInt64(raw.count - i) else {
                throw .invalidMultiaddr("\(what) length \(n) at byte \(i) runs past the end")
            }
            return try take(Int(n), what)
        }
        func name(_ what: String) throws(MultiformatsError) -> String {
            let v = try lengthPrefixed(what)
            guard let s = String(validating: v, as: UTF8.self) else {
                throw .invalidMultiaddr("/\(what) value is not UTF-8")
            }
            try checkName(s, protocol: what)
            return s
        }
        while i < raw.count {
            let code = try varint("protocol code")
            switch code {
            case 4:
                let v = try take(4, "ip4")
                components.append(.ip4(IPv4Address(v[0], v[1], v[2], v[3])))
            case 41:
                components.append(.ip6(IPv6Address(bytes: try take(16, "ip6"))))
            case 6:
                let v = try take(2, "tcp")
                components.append(.tcp(UInt16(v[0]) << 8 | UInt16(v[1])))
            case 53: components.append(.dns(try name("dns")))
            case 54: components.append(.dns4(try name("dns4")))
            case 55: components.append(.dns6(try name("dns6")))
            case 56: components.append(.dnsaddr(try name("dnsaddr")))
            case 449: components.append(.sni(try name("sni")))
            case 477: components.append(.ws)
            case 478: components.append(.wss)
            case 448: components.append(.tls)
            case 421:
                let v = try lengthPrefixed("p2p")
                components.append(.p2p(try peerMultihash(Array(v))))
            default:
                throw .invalidMultiaddr("unsupported protocol code \(code) at byte \(i)")
            }
        }
        return Multiaddr(components)
    }

    // MARK: Conveniences

    /// This multiaddr with `component` appended.
    public func appending(_ component: Component) -> Multiaddr {
        Multiaddr(components + [component])
    }

    /// This multiaddr with all of `other`'s components appended (encapsulation).
    public func appending(_ other: Multiaddr) -> Multiaddr {
        Multiaddr(components + other.components)
    }

    /// The peer ID multihash of the last `/p2p` component, if any.
    public var peerIDMultihash: Multihash? {
        for c in components.reversed() { if case .p2p(let mh) = c { return mh } }
        return nil
    }

    /// The port of the first `/tcp` component, if any.
    public var tcpPort: UInt16? {
        for c in components { if case .tcp(let port) = c { return port } }
        return nil
    }

    /// The first IPv4 address, if any.
    public var ip4Address: IPv4Address? {
        for c in components { if case .ip4(let a) = c { return a } }
        return nil
    }

    /// The first IPv6 address, if any.
    public var ip6Address: IPv6Address? {
        for c in components { if case .ip6(let a) = c { return a } }
        return nil
    }

    /// The first DNS name (`dns`, `dns4`, `dns6` or `dnsaddr`), if any.
    public var dnsName: String? {
        for c in components {
            switch c {
            case .dns(let s), .dns4(let s), .dns6(let s), .dnsaddr(let s): return s
            default: continue
            }
        }
        return nil
    }

    /// The host of the first address component as text (an IP address or a DNS name), if any.
    public var host: String? {
        for c in components {
            switch c {
            case .ip4(let a): return a.description
            case .ip6(let a): return a.description
            case .dns(let s), .dns4(let s), .dns6(let s), .dnsaddr(let s): return s
            default: continue
            }
        }
        return nil
    }

    /// This multiaddr without its trailing `/p2p` component, if it has one.
    public var withoutPeerID: Multiaddr {
        if case .p2p = components.last { return Multiaddr(Array(components.dropLast())) }
        return self
    }
}

/// An IPv4 address.
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// The address as a big-endian number (127.0.0.1 is 0x7F00_0001).
    public let value: UInt32

    /// The address `a.b.c.d`.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-decimal text: four decimal numbers 0-255 without leading zeros (a leading zero
    /// means octal to some parsers, so it is refused, as Go's net.ParseIP does).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.utf8.count <= 3,
                part.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                part == "0" || part.first != "0",
                let n = UInt8(part)
            else { return nil }
            value = value << 8 | UInt32(n)
        }
        self.value = value
    }

    /// The four bytes in network order.
    public var bytes: [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    func write(into out: inout [UInt8]) { out.append(contentsOf: bytes) }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }
}

/// An IPv6 address.
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    /// The eight 16-bit groups, most significant first.
    public let groups: [UInt16]

    /// From 16 bytes in network order.
    ///
    /// - Precondition: `bytes.count == 16`.
    public init(bytes: some Collection<UInt8>) {
        let b = Array(bytes)
        precondition(b.count == 16, "an IPv6 address is 16 bytes")
        groups = (0..<8).map { UInt16(b[2 * $0]) << 8 | UInt16(b[2 * $0 + 1]) }
    }

    /// From eight 16-bit groups.
    ///
    /// - Precondition: `groups.count == 8`.
    public init(groups: [UInt16]) {
        precondition(groups.count == 8, "an IPv6 address is 8 groups")
        self.groups = groups
    }

    /// Parses RFC 4291 §2.2 text: eight hex groups, at most one `::`, optionally ending in a dotted IPv4
    /// address. Zone identifiers (`%eth0`) are not part of an `/ip6` value (multiaddr has `/ip6zone`).
    public init?(_ text: some StringProtocol) {
        let s = String(text)
        guard !s.isEmpty, s.utf8.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        let halves = s.components(separatedByDoubleColon: ())
        guard halves.count <= 2 else { return nil }
        sawDoubleColon = halves.count == 2
        func parseGroups(_ part: Substring, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if allowIPv4Tail && index == pieces.count - 1 && piece.contains(".") {
                    guard let v4 = IPv4Address(piece) else { return nil }
                    out.append(UInt16(v4.value >> 16))
                    out.append(UInt16(v4.value & 0xFFFF))
                    continue
                }
                guard !piece.isEmpty, piece.utf8.count <= 4, let g = UInt16(piece, radix: 16),
                    piece.utf8.allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "-") })
                else { return nil }
                out.append(g)
            }
            return out
        }
        guard let h = parseGroups(halves[0], allowIPv4Tail: !sawDoubleColon) else { return nil }
        head = h
        if sawDoubleColon {
            guard let t = parseGroups(halves[1], allowIPv4Tail: true) else { return nil }
            tail = t
            // "::" stands for one or more groups of zeros.
            guard head.count + tail.count <= 7 else { return nil }
            groups = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard head.count == 8 else { return nil }
            groups = head
        }
    }

    /// The sixteen bytes in network order.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        write(into: &out)
        return out
    }

    func write(into out: inout [UInt8]) {
        for g in groups {
            out.append(UInt8(g >> 8))
            out.append(UInt8(g & 0xFF))
        }
    }

    /// RFC 5952 canonical text: lowercase hex without leading zeros (§4.1, §4.3); "::" replaces the longest
    /// run of two or more zero groups, the first such run on a tie (§4.2.1–§4.2.3); IPv4-mapped addresses
    /// end in dotted decimal (§5, "::ffff:192.0.2.1").
    public var description: String {
        let mapped = groups[0..<5].allSatisfy { $0 == 0 } && groups[5] == 0xFFFF
        if mapped {
            let v4 = IPv4Address(
                UInt8(groups[6] >> 8), UInt8(groups[6] & 0xFF), UInt8(groups[7] >> 8), UInt8(groups[7] & 0xFF))
            return "::ffff:" + v4.description
        }
        var bestStart = -1
        var bestLength = 0
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                // "The symbol '::' MUST NOT be used to shorten just one 16-bit 0 field."
                if j - i > bestLength && j - i >= 2 {
                    bestStart = i
                    bestLength = j - i
                }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

extension String {
    /// Splits at "::" (at most the first two occurrences matter: a third part means an invalid address).
    fileprivate func components(separatedByDoubleColon: Void) -> [Substring] {
        var parts: [Substring] = []
        var start = startIndex
        var i = startIndex
        while i < endIndex {
            let next = index(after: i)
            if self[i] == ":" && next < endIndex && self[next] == ":" {
                parts.append(self[start..<i])
                start = index(after: next)
                i = start
                // ":::" leaves a ":" at the start of the next part, which group parsing rejects.
            } else {
                i = next
            }
        }
        parts.append(self[start..<endIndex])
        return parts
    }
}
