/// Multibase: a one-character prefix naming the base, then the encoded bytes (multiformats/multibase).
///
/// edgeswap reads and writes the bases IPFS peers use for CIDs, peer IDs and keys.
public enum Multibase: Character, CaseIterable, Sendable {
    case base16 = "f"
    case base16upper = "F"
    case base32 = "b"
    case base32upper = "B"
    case base36 = "k"
    case base58btc = "z"
    case base64 = "m"
    case base64url = "u"

    /// `prefix ‖ encoding` of `bytes`.
    public func encode(_ bytes: some Collection<UInt8>) -> String {
        String(rawValue) + encodeWithoutPrefix(bytes)
    }

    /// The encoding of `bytes` with no multibase prefix (CIDv0 and peer IDs print base58btc bare).
    public func encodeWithoutPrefix(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        switch self {
        case .base16: return BaseCodec.hexLower.encode(input)
        case .base16upper: return BaseCodec.hexUpper.encode(input)
        case .base32: return BaseCodec.rfc4648(alphabet: BaseCodec.base32Lower, bitsPerChar: 5).encode(input)
        case .base32upper: return BaseCodec.rfc4648(alphabet: BaseCodec.base32Upper, bitsPerChar: 5).encode(input)
        case .base36: return BaseCodec.bigRadix(alphabet: BaseCodec.base36Lower).encode(input)
        case .base58btc: return BaseCodec.bigRadix(alphabet: BaseCodec.base58btc).encode(input)
        case .base64: return BaseCodec.rfc4648(alphabet: BaseCodec.base64Std, bitsPerChar: 6).encode(input)
        case .base64url: return BaseCodec.rfc4648(alphabet: BaseCodec.base64URL, bitsPerChar: 6).encode(input)
        }
    }

    /// Decodes text in this base with no prefix.
    public func decodeWithoutPrefix(_ text: some StringProtocol) throws(MultiformatsError) -> [UInt8] {
        switch self {
        case .base16, .base16upper:
            return try BaseCodec.rfc4648(alphabet: BaseCodec.hexLowerAlphabet, bitsPerChar: 4)
                .decode(text.lowercased(), name: "base16")
        case .base32, .base32upper:
            // multibase: base32 decoding is case-insensitive ("b" and "B" name the same alphabet).
            return try BaseCodec.rfc4648(alphabet: BaseCodec.base32Lower, bitsPerChar: 5)
                .decode(text.lowercased(), name: "base32")
        case .base36:
            return try BaseCodec.bigRadix(alphabet: BaseCodec.base36Lower).decode(text.lowercased(), name: "base36")
        case .base58btc:
            return try BaseCodec.bigRadix(alphabet: BaseCodec.base58btc).decode(text, name: "base58btc")
        case .base64:
            return try BaseCodec.rfc4648(alphabet: BaseCodec.base64Std, bitsPerChar: 6)
                .decode(text, name: "base64")
        case .base64url:
            return try BaseCodec.rfc4648(alphabet: BaseCodec.base64URL, bitsPerChar: 6)
                .decode(text, name: "base64url")
        }
    }

    /// Decodes a multibase string: the first character picks the base.
    public static func decode(_ text: some StringProtocol) throws(MultiformatsError) -> (Multibase, [UInt8]) {
        guard let first = text.first else { throw .emptyInput }
        // "K" (base36upper) is the same alphabet as "k" read case-insensitively.
        let base: Multibase
        if first == "K" {
            base = .base36
        } else if let b = Multibase(rawValue: first) {
            base = b
        } else {
            throw .unknownMultibasePrefix(first)
        }
        return (base, try base.decodeWithoutPrefix(text.dropFirst()))
    }
}

/// Alphabet-driven encoders. RFC 4648 bases pack bits; base36 and base58 are big-number conversions
/// that keep leading zero bytes as leading zero digits.
enum BaseCodec {
    static let hexLowerAlphabet = Array("0123456789abcdef".utf8)
    static let base32Lower = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
    static let base32Upper = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)
    static let base36Lower = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
    static let base58btc = Array("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz".utf8)
    static let base64Std = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let base64URL = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    case hexLower
    case hexUpper
    case rfc4648(alphabet: [UInt8], bitsPerChar: Int)
    case bigRadix(alphabet: [UInt8])

    func encode(_ input: [UInt8]) -> String {
        switch self {
        case .hexLower: return BaseCodec.rfc4648(alphabet: BaseCodec.hexLowerAlphabet, bitsPerChar: 4).encode(input)
        case .hexUpper:
            return BaseCodec.rfc4648(alphabet: Array("0123456789ABCDEF".utf8), bitsPerChar: 4).encode(input)
        case .rfc4648(let alphabet, let bits):
            var out: [UInt8] = []
            out.reserveCapacity((input.count * 8 + bits - 1) / bits)
            var buffer: UInt32 = 0
            var bufferedBits = 0
            let mask = UInt32((1 << bits) - 1)
            for byte in input {
                buffer = (buffer << 8) | UInt32(byte)
                bufferedBits += 8
                while bufferedBits >= bits {
                    bufferedBits -= bits
                    out.append(alphabet[Int((buffer >> UInt32(bufferedBits)) & mask)])
                }
            }
            if bufferedBits > 0 {
                out.append(alphabet[Int((buffer << UInt32(bits - bufferedBits)) & mask)])
            }
            return String(decoding: out, as: UTF8.self)
        case .bigRadix(let alphabet):
            let radix = UInt32(alphabet.count)
            let zeros = input.prefix { $0 == 0 }.count
            // Little-endian digits in `radix`, grown as bytes are folded in.
            var digits: [UInt8] = []
            digits.reserveCapacity(input.count * 138 / 100 + 1)
            for byte in input[zeros...] {
                var carry = UInt32(byte)
                for i in digits.indices {
                    carry += UInt32(digits[i]) << 8
                    digits[i] = UInt8(carry % radix)
                    carry /= radix
                }
                while carry > 0 {
                    digits.append(UInt8(carry % radix))
                    carry /= radix
                }
            }
            var out = [UInt8](repeating: alphabet[0], count: zeros)
            out.reserveCapacity(zeros + digits.count)
            for d in digits.reversed() { out.append(alphabet[Int(d)]) }
            return String(decoding: out, as: UTF8.self)
        }
    }

    func decode(_ text: some StringProtocol, name: String) throws(MultiformatsError) -> [UInt8] {
        switch self {
        case .hexLower, .hexUpper:
            return try BaseCodec.rfc4648(alphabet: BaseCodec.hexLowerAlphabet, bitsPerChar: 4)
                .decode(text.lowercased(), name: name)
        case .rfc4648(let alphabet, let bits):
            let table = Self.reverse(alphabet)
            var out: [UInt8] = []
            out.reserveCapacity(text.utf8.count * bits / 8)
            var buffer: UInt32 = 0
            var bufferedBits = 0
            var sawPadding = false
            for ch in text.utf8 {
                if ch == UInt8(ascii: "=") {
                    // Padded forms are accepted on input; nothing may follow the padding.
                    sawPadding = true
                    continue
                }
                guard !sawPadding, let value = table[Int(ch)] else {
                    throw .invalidCharacter(base: name, character: Character(Unicode.Scalar(ch)))
                }
                buffer = (buffer << UInt32(bits)) | UInt32(value)
                bufferedBits += bits
                if bufferedBits >= 8 {
                    bufferedBits -= 8
                    out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bufferedBits)))
                }
            }
            // Leftover bits must be zero padding shorter than one symbol (RFC 4648 canonical form).
            if bufferedBits >= bits || buffer & ((1 << UInt32(bufferedBits)) - 1) != 0 {
                throw .invalidCharacter(base: name, character: text.last ?? " ")
            }
            return out
        case .bigRadix(let alphabet):
            let table = Self.reverse(alphabet)
            let radix = UInt32(alphabet.count)
            let utf8 = Array(text.utf8)
            let zeros = utf8.prefix { $0 == alphabet[0] }.count
            var bytes: [UInt8] = []  // little-endian base-256
            bytes.reserveCapacity(utf8.count)
            for ch in utf8[zeros...] {
                guard let value = table[Int(ch)] else {
                    throw .invalidCharacter(base: name, character: Character(Unicode.Scalar(ch)))
                }
                var carry = UInt32(value)
                for i in bytes.indices {
                    carry += UInt32(bytes[i]) * radix
                    bytes[i] = UInt8(truncatingIfNeeded: carry)
                    carry >>= 8
                }
                while carry > 0 {
                    bytes.append(UInt8(truncatingIfNeeded: carry))
                    carry >>= 8
                }
            }
            return [UInt8](repeating: 0, count: zeros) + bytes.reversed()
        }
    }

    private static func reverse(_ alphabet: [UInt8]) -> [UInt8?] {
        var table = [UInt8?](repeating: nil, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }
}
