/// A content identifier (multiformats/cid).
///
/// - CIDv0 is a bare 34-byte sha2-256 multihash (`12 20 ‖ digest`), printed base58btc with no prefix.
/// - CIDv1 is `0x01 ‖ uvarint codec ‖ multihash`, printed with a multibase prefix (base32 by default).
///
/// `bytes` is kept exactly as parsed so a CID can be echoed byte for byte (Bitswap answers must
/// name the CID as the peer asked for it: a v0 stays v0).
public struct CID: Hashable, Sendable, CustomStringConvertible {
    public enum Version: UInt64, Sendable { case v0 = 0, v1 = 1 }

    /// boxo's `MaximumAllowedCid`: 4 varints of at most 10 bytes plus a 128-byte digest.
    public static let maxByteLength = 168

    public let version: Version
    /// The content codec (dag-pb 0x70 for every CIDv0).
    public let codec: UInt64
    public let multihash: Multihash
    /// The binary CID.
    public let bytes: [UInt8]

    /// A CIDv1.
    public init(codec: UInt64, multihash: Multihash) {
        self.version = .v1
        self.codec = codec
        self.multihash = multihash
        var out: [UInt8] = [0x01]
        Varint.encode(codec, into: &out)
        multihash.write(into: &out)
        self.bytes = out
    }

    /// A CIDv0 (dag-pb over a 32-byte sha2-256 digest).
    public init(v0 multihash: Multihash) throws(MultiformatsError) {
        guard multihash.code == Multicodec.sha2_256, multihash.digest.count == 32 else {
            throw .invalidCIDv0("a CIDv0 is a sha2-256 multihash with a 32-byte digest")
        }
        self.version = .v0
        self.codec = Multicodec.dagPB
        self.multihash = multihash
        self.bytes = multihash.bytes
    }

    /// Parses a whole binary CID; trailing bytes are an error.
    public init(bytes: some Collection<UInt8>) throws(MultiformatsError) {
        let array = Array(bytes)
        let (cid, used) = try array.withUnsafeBytes { raw in
            Result { () throws(MultiformatsError) in try CID.parse(raw) }
        }.get()
        guard used == array.count else { throw .trailingBytes(what: "CID", count: array.count - used) }
        self = cid
    }

    private init(version: Version, codec: UInt64, multihash: Multihash, bytes: [UInt8]) {
        self.version = version
        self.codec = codec
        self.multihash = multihash
        self.bytes = bytes
    }

    /// Parses a binary CID at the start of `raw`, as CAR sections and Bitswap entries hold them;
    /// returns it and the number of bytes it used.
    public static func parse(_ raw: UnsafeRawBufferPointer) throws(MultiformatsError) -> (CID, Int) {
        guard raw.count >= 2 else { throw .truncated(what: "CID") }
        // multiformats/cid: "If the first decoded byte is 0x12, return an error. CIDv0 CIDs may not be
        // multibase encoded" applies to strings; in binary, 0x12 0x20 starts a CIDv0.
        if raw[0] == 0x12 && raw[1] == 0x20 {
            guard raw.count >= 34 else { throw .truncated(what: "CIDv0") }
            let mh = Multihash(code: Multicodec.sha2_256, digest: Array(raw[2..<34]))
            return (CID(version: .v0, codec: Multicodec.dagPB, multihash: mh, bytes: Array(raw[0..<34])), 34)
        }
        let version: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) { version = try Varint.decode(raw) } catch { throw .varint(error) }
        guard version.value == 1 else { throw .unsupportedCIDVersion(version.value) }
        let codec: (value: UInt64, length: Int)
        do throws(Varint.DecodeError) {
            codec = try Varint.decode(UnsafeRawBufferPointer(rebasing: raw[version.length...]))
        } catch { throw .varint(error) }
        let mhStart = version.length + codec.length
        let (mh, mhLength) = try Multihash.parse(UnsafeRawBufferPointer(rebasing: raw[mhStart...]))
        let total = mhStart + mhLength
        guard total <= maxByteLength else { throw .cidTooLong(total) }
        return (CID(version: .v1, codec: codec.value, multihash: mh, bytes: Array(raw[0..<total])), total)
    }

    /// Parses a CID string: a 46-character `Qm…` CIDv0, or a multibase CIDv1.
    public init(string: some StringProtocol) throws(MultiformatsError) {
        if string.utf8.count == 46 && string.hasPrefix("Qm") {
            let raw = try Multibase.base58btc.decodeWithoutPrefix(string)
            self = try CID(bytes: raw)
            return
        }
        let (_, raw) = try Multibase.decode(string)
        // multiformats/cid: a multibase string whose first decoded byte is 0x12 is an error (v0 is never
        // multibase-prefixed).
        if raw.first == 0x12 { throw .invalidCIDv0("a CIDv0 cannot carry a multibase prefix") }
        self = try CID(bytes: raw)
    }

    /// The canonical string: base58btc (bare) for v0, base32 for v1.
    public var description: String {
        switch version {
        case .v0: return Multibase.base58btc.encodeWithoutPrefix(bytes)
        case .v1: return Multibase.base32.encode(bytes)
        }
    }

    /// The string form in a chosen base; v0 has only its base58btc form.
    public func string(base: Multibase) -> String {
        version == .v0 ? description : base.encode(bytes)
    }

    /// This CID as v1 (same codec and multihash); v1 CIDs return themselves.
    public var v1: CID {
        version == .v1 ? self : CID(codec: codec, multihash: multihash)
    }

    /// Bitswap 1.1.0 block prefix: `uvarint version ‖ uvarint codec ‖ uvarint mh code ‖ uvarint digest length`.
    public var prefix: [UInt8] {
        var out: [UInt8] = []
        Varint.encode(version.rawValue, into: &out)
        Varint.encode(codec, into: &out)
        Varint.encode(multihash.code, into: &out)
        Varint.encode(UInt64(multihash.digest.count), into: &out)
        return out
    }
}
