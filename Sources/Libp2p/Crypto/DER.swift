// edgeswap: libp2p keys. The two tiny pieces of ASN.1 DER this folder builds by hand.

import BigInt

/// Hand-written DER for the structures swift-crypto does not produce in libp2p's form: ECDSA signatures
/// for secp256k1, and the SEC1 `ECPrivateKey` that go-libp2p stores for ECDSA P-256 identities
/// (`x509.MarshalECPrivateKey`; swift-crypto writes PKCS#8 instead).
enum DER {
    /// Parses `SEQUENCE { INTEGER r, INTEGER s }` strictly (definite short or long lengths, no trailing
    /// bytes, positive integers without needless leading zeros). Returns nil on any deviation.
    static func parseECDSASignature(_ der: [UInt8]) -> (BigUInt, BigUInt)? {
        var index = 0
        guard let sequence = readTLV(der, &index, tag: 0x30), index == der.count else { return nil }
        let content = Array(der[sequence])
        var inner = 0
        guard let rRange = readTLV(content, &inner, tag: 0x02),
              let sRange = readTLV(content, &inner, tag: 0x02),
              inner == content.count,
              let r = positiveInteger(content[rRange]),
              let s = positiveInteger(content[sRange])
        else { return nil }
        return (r, s)
    }

    /// `SEQUENCE { INTEGER r, INTEGER s }` from big-endian unsigned integers.
    static func encodeECDSASignature(r: [UInt8], s: [UInt8]) -> [UInt8] {
        let body = integer(r) + integer(s)
        return [0x30] + length(body.count) + body
    }

    /// SEC1 `ECPrivateKey` for P-256 with the named-curve parameters and the public key, as
    /// `x509.MarshalECPrivateKey` writes it: `30 77 02 01 01 04 20 ‖ d ‖ a0 0a 06 08 <prime256v1> ‖
    /// a1 44 03 42 00 ‖ 04 ‖ X ‖ Y`.
    static func sec1P256PrivateKey(scalar: [UInt8], x963PublicKey: [UInt8]) -> [UInt8] {
        precondition(scalar.count == 32 && x963PublicKey.count == 65)
        var out: [UInt8] = [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]
        out += scalar
        out += [0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        out += [0xa1, 0x44, 0x03, 0x42, 0x00]
        out += x963PublicKey
        return out
    }

    /// Reads one TLV with the expected tag at `index`; returns the content range and advances past it.
    private static func readTLV(_ bytes: [UInt8], _ index: inout Int, tag: UInt8) -> Range<Int>? {
        guard index + 2 <= bytes.count, bytes[index] == tag else { return nil }
        var i = index + 1
        let first = bytes[i]
        i += 1
        var length = 0
        if first < 0x80 {
            length = Int(first)
        } else {
            let count = Int(first & 0x7f)
            // DER: long form only for lengths ≥ 128, at most 2 length bytes are plausible here.
            guard count >= 1, count <= 2, i + count <= bytes.count, bytes[i] != 0 else { return nil }
            for _ in 0..<count {
                length = length << 8 | Int(bytes[i])
                i += 1
            }
            guard length >= 0x80 else { return nil }
        }
        guard length <= bytes.count - i else { return nil }
        index = i + length
        return i..<(i + length)
    }

    /// A DER INTEGER's content as a positive value (nil for negative or non-minimal encodings).
    private static func positiveInteger(_ content: ArraySlice<UInt8>) -> BigUInt? {
        guard let first = content.first, first & 0x80 == 0 else { return nil }
        if first == 0, content.count > 1, content[content.startIndex + 1] & 0x80 == 0 { return nil }
        return content.withUnsafeBytes { BigUInt($0) }
    }

    /// INTEGER TLV for a big-endian unsigned value (leading zeros stripped, a 0x00 added if the top bit is set).
    private static func integer(_ value: [UInt8]) -> [UInt8] {
        var v = Array(value.drop(while: { $0 == 0 }))
        if v.isEmpty { v = [0] }
        if v[0] & 0x80 != 0 { v.insert(0, at: 0) }
        return [0x02] + length(v.count) + v
    }

    private static func length(_ n: Int) -> [UInt8] {
        n < 0x80 ? [UInt8(n)] : (n < 0x100 ? [0x81, UInt8(n)] : [0x82, UInt8(n >> 8), UInt8(n & 0xff)])
    }
}
