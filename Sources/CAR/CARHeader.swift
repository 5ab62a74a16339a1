import Multiformats

/// The CARv1 header: the DAG-CBOR map `{roots: [CID…], version: 1}` (ipld/ipld `specs/transport/car/carv1`).
///
/// The same shape with `version: 2` and no `roots` is the CARv2 pragma. Only this one shape is decoded: the
/// codec is a small strict reader, not a general CBOR decoder, so anything else is an `invalidHeader` error
/// naming what was wrong.
public struct CARHeader: Hashable, Sendable {
    /// The root CIDs, in file order (may be empty: go-car's `Inspect` and index generation accept that).
    public var roots: [CID]
    /// 1 for a CARv1 header, 2 for the CARv2 pragma.
    public var version: UInt64

    public init(roots: [CID], version: UInt64 = 1) {
        self.roots = roots
        self.version = version
    }

    /// go-car `DefaultMaxAllowedHeaderSize`: 32 MiB.
    public static let defaultMaxHeaderLength: UInt64 = 32 << 20

    /// The CBOR tag for a CID in DAG-CBOR (multicodec "cid" tag 42), written `d8 2a`.
    static let cidTag: UInt64 = 42

    // MARK: Encoding

    /// The DAG-CBOR bytes of this header, without the length varint.
    ///
    /// Byte-identical to go-car (`cbor.DumpObject(CarHeader)`): DAG-CBOR sorts map keys length-first, so
    /// `roots` (5 bytes) precedes `version` (7 bytes); each CID is `tag(42) bytes(00 ‖ CID)`.
    public func encodeBody() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(20 + roots.reduce(0) { $0 + $1.bytes.count + 5 })
        if roots.isEmpty && version != 1 {
            // The CARv2 pragma form `{version: 2}`: go-car's pragma has no roots key.
            Self.appendHead(major: 5, 1, into: &out)
        } else {
            Self.appendHead(major: 5, 2, into: &out)
            Self.appendText("roots", into: &out)
            Self.appendHead(major: 4, UInt64(roots.count), into: &out)
            for root in roots {
                Self.appendHead(major: 6, Self.cidTag, into: &out)
                Self.appendHead(major: 2, UInt64(root.bytes.count + 1), into: &out)
                // DAG-CBOR: "the CID bytes are prefixed with a 0x00 multibase identity prefix".
                out.append(0x00)
                out.append(contentsOf: root.bytes)
            }
        }
        Self.appendText("version", into: &out)
        Self.appendHead(major: 0, version, into: &out)
        return out
    }

    /// The header as it starts a CAR file: `uvarint(length) ‖ DAG-CBOR`.
    public func encode() -> [UInt8] {
        let body = encodeBody()
        var out: [UInt8] = []
        out.reserveCapacity(body.count + Varint.maxLength)
        Varint.encode(UInt64(body.count), into: &out)
        out.append(contentsOf: body)
        return out
    }

    static func appendHead(major: UInt8, _ value: UInt64, into out: inout [UInt8]) {
        // RFC 8949 §3: the argument is encoded in the shortest form (DAG-CBOR requires it).
        let m = major << 5
        switch value {
        case 0..<24: out.append(m | UInt8(value))
        case 24...0xff: out.append(m | 24); out.append(UInt8(value))
        case 0x100...0xffff:
            out.append(m | 25)
            out.append(UInt8(value >> 8)); out.append(UInt8(truncatingIfNeeded: value))
        case 0x1_0000...0xffff_ffff:
            out.append(m | 26)
            for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        default:
            out.append(m | 27)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
    }

    static func appendText(_ s: StaticString, into out: inout [UInt8]) {
        appendHead(major: 3, UInt64(s.utf8CodeUnitCount), into: &out)
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    // MARK: Decoding

    /// Decodes the DAG-CBOR body of a header (the bytes after the length varint); all bytes must be used.
    public static func decodeBody(_ raw: UnsafeRawBufferPointer) throws(CARError) -> CARHeader {
        var cursor = CBORCursor(raw: raw)
        let (major, pairs) = try cursor.head()
        guard major == 5 else { throw .invalidHeader("expected a map, found CBOR major type \(major)") }
        guard pairs <= 2 else { throw .invalidHeader("map has \(pairs) keys; only roots and version are allowed") }
        var roots: [CID]? = nil
        var version: UInt64? = nil
        for _ in 0..<pairs {
            let key = try cursor.text()
            switch key {
            case .roots:
                guard roots == nil else { throw .invalidHeader("duplicate key roots") }
                let (m, count) = try cursor.head()
                guard m == 4 else { throw .invalidHeader("roots must be an array, found CBOR major type \(m)") }
                // Each root takes at least 3 bytes, so a count past the remaining bytes is a lie: refuse it
                // before reserving memory for it.
                guard count <= UInt64(cursor.remaining) else { throw .truncatedHeader }
                var list: [CID] = []
                list.reserveCapacity(Int(count))
                for _ in 0..<count { list.append(try cursor.cid()) }
                roots = list
            case .version:
                guard version == nil else { throw .invalidHeader("duplicate key version") }
                let (m, v) = try cursor.head()
                guard m == 0 else { throw .invalidHeader("version must be an unsigned integer, found CBOR major type \(m)") }
                version = v
            }
        }
        guard cursor.remaining == 0 else { throw .invalidHeader("\(cursor.remaining) bytes after the header map") }
        guard let version else { throw .invalidHeader("missing version") }
        if version == 1 && roots == nil { throw .invalidHeader("missing roots") }
        return CARHeader(roots: roots ?? [], version: version)
    }

    /// Decodes a length-prefixed header at the start of `raw`; returns it and the bytes used (varint + body).
    public static func decode(_ raw: UnsafeRawBufferPointer, maxLength: UInt64 = defaultMaxHeaderLength)
        throws(CARError) -> (header: CARHeader, length: Int)
    {
        let length: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) { length = try Varint.decode(raw) } catch {
            if error == .truncated { throw .truncatedHeader }
            throw .invalidHeaderLengthVarint(error)
        }
        try checkLength(length.value, maxLength: maxLength)
        guard length.value <= UInt64(raw.count - length.length) else { throw .truncatedHeader }
        let end = length.length + Int(length.value)
        let header = try decodeBody(UnsafeRawBufferPointer(rebasing: raw[length.length..<end]))
        return (header, end)
    }

    /// The checks go-car's `LdReadSize` makes on a header length before reading it.
    static func checkLength(_ length: UInt64, maxLength: UInt64) throws(CARError) {
        guard length != 0 else { throw .emptyHeader }
        guard length <= maxLength else { throw .headerTooLarge(length: length, limit: maxLength) }
    }
}

/// A bounds-checked reader over the few CBOR items a CAR header holds.
struct CBORCursor {
    let raw: UnsafeRawBufferPointer
    var position = 0

    enum Key { case roots, version }

    var remaining: Int { raw.count - position }

    mutating func byte() throws(CARError) -> UInt8 {
        guard position < raw.count else { throw .truncatedHeader }
        defer { position += 1 }
        return raw[position]
    }

    /// Reads an item head: major type and argument. Indefinite lengths (additional info 31) and the
    /// reserved values 28–30 are not DAG-CBOR and are refused.
    mutating func head() throws(CARError) -> (major: UInt8, argument: UInt64) {
        let first = try byte()
        let major = first >> 5
        let info = first & 0x1f
        switch info {
        case 0..<24: return (major, UInt64(info))
        case 24...27:
            let n = 1 << Int(info - 24)
            var value: UInt64 = 0
            for _ in 0..<n { value = value << 8 | UInt64(try byte()) }
            return (major, value)
        default:
            throw .invalidHeader("CBOR additional info \(info) (indefinite length or reserved) is not DAG-CBOR")
        }
    }

    mutating func text() throws(CARError) -> Key {
        let (major, length) = try head()
        guard major == 3 else { throw .invalidHeader("map key must be a text string, found CBOR major type \(major)") }
        guard length <= UInt64(remaining) else { throw .truncatedHeader }
        let bytes = UnsafeRawBufferPointer(rebasing: raw[position..<position + Int(length)])
        position += Int(length)
        if bytes.elementsEqual("roots".utf8) { return .roots }
        if bytes.elementsEqual("version".utf8) { return .version }
        throw .invalidHeader("unknown key \"\(String(decoding: bytes, as: UTF8.self))\"")
    }

    mutating func cid() throws(CARError) -> CID {
        let (major, tag) = try head()
        guard major == 6, tag == CARHeader.cidTag else {
            throw .invalidHeader("root must be tag 42 (CID), found CBOR major type \(major)")
        }
        let (m, length) = try head()
        guard m == 2 else { throw .invalidHeader("tag 42 must wrap a byte string, found CBOR major type \(m)") }
        guard length <= UInt64(remaining) else { throw .truncatedHeader }
        guard length >= 1, raw[position] == 0x00 else {
            throw .invalidHeader("CID bytes must start with the 0x00 multibase identity prefix")
        }
        let cidBytes = UnsafeRawBufferPointer(rebasing: raw[position + 1..<position + Int(length)])
        position += Int(length)
        do throws(MultiformatsError) {
            let (cid, used) = try CID.parse(cidBytes)
            guard used == cidBytes.count else {
                throw MultiformatsError.trailingBytes(what: "CID", count: cidBytes.count - used)
            }
            return cid
        } catch { throw .invalidRootCID(error) }
    }
}
