/// Multibase: a one-character prefix naming the base, then the encoded bytes (multiformats/multibase).
///
/// edgeswap reads and writes the bases IPFS peers use for CIDs, peer IDs and keys. Decoding follows the
/// multibase spec's rules per base: the base16, base32 and base36 families are case-insensitive on input
/// (`case_insensitivity.csv` in the spec's tests), base58 and base64 are case-sensitive; unpadded bases
/// refuse `=`, padded bases require RFC 4648 padding to a whole quantum; leftover bits must be zero.
public enum Multibase: Character, CaseIterable, Sendable {
    case base16 = "f"
    case base16upper = "F"
    case base32 = "b"
    case base32upper = "B"
    case base32pad = "c"
    case base32padupper = "C"
    case base32hex = "v"
    case base32hexupper = "V"
    case base32hexpad = "t"
    case base32hexpadupper = "T"
    case base36 = "k"
    case base36upper = "K"
    case base58btc = "z"
    case base64 = "m"
    case base64pad = "M"
    case base64url = "u"
    case base64urlpad = "U"

    /// The spec's name for this base (`base32`, `base64urlpad`, …).
    public var name: String {
        switch self {
        case .base16: return "base16"
        case .base16upper: return "base16upper"
        case .base32: return "base32"
        case .base32upper: return "base32upper"
        case .base32pad: return "base32pad"
        case .base32padupper: return "base32padupper"
        case .base32hex: return "base32hex"
        case .base32hexupper: return "base32hexupper"
        case .base32hexpad: return "base32hexpad"
        case .base32hexpadupper: return "base32hexpadupper"
        case .base36: return "base36"
        case .base36upper: return "base36upper"
        case .base58btc: return "base58btc"
        case .base64: return "base64"
        case .base64pad: return "base64pad"
        case .base64url: return "base64url"
        case .base64urlpad: return "base64urlpad"
        }
    }

    /// `prefix ‖ encoding` of `bytes`.
    public func encode(_ bytes: some Collection<UInt8>) -> String {
        String(rawValue) + encodeWithoutPrefix(bytes)
    }

    /// The encoding of `bytes` with no multibase prefix (CIDv0 and peer IDs print base58btc bare).
    public func encodeWithoutPrefix(_ bytes: some Collection<UInt8>) -> String {
        let codec = self.codec
        if let s = bytes.withContiguousStorageIfAvailable({ codec.encode(UnsafeRawBufferPointer($0)) }) {
            return s
        }
        return Array(bytes).withUnsafeBytes { codec.encode($0) }
    }

    /// Decodes text in this base with no prefix.
    public func decodeWithoutPrefix(_ text: some StringProtocol) throws(MultiformatsError) -> [UInt8] {
        var string = String(text)
        let codec = self.codec
        return try string.withUTF8 { utf8 in
            Result { () throws(MultiformatsError) in try codec.decode(UnsafeRawBufferPointer(utf8)) }
        }.get()
    }

    /// Decodes a multibase string: the first character picks the base.
    public static func decode(_ text: some StringProtocol) throws(MultiformatsError) -> (Multibase, [UInt8]) {
        guard let first = text.first else { throw .emptyInput }
        guard let base = Multibase(rawValue: first) else { throw .unknownMultibasePrefix(first) }
        return (base, try base.decodeWithoutPrefix(text.dropFirst()))
    }

    /// The codec for this base; the instances (and their 256-entry decode tables) are built once.
    var codec: BaseCodec {
        switch self {
        case .base16: return BaseCodec.base16
        case .base16upper: return BaseCodec.base16upper
        case .base32: return BaseCodec.base32
        case .base32upper: return BaseCodec.base32upper
        case .base32pad: return BaseCodec.base32pad
        case .base32padupper: return BaseCodec.base32padupper
        case .base32hex: return BaseCodec.base32hex
        case .base32hexupper: return BaseCodec.base32hexupper
        case .base32hexpad: return BaseCodec.base32hexpad
        case .base32hexpadupper: return BaseCodec.base32hexpadupper
        case .base36: return BaseCodec.base36
        case .base36upper: return BaseCodec.base36upper
        case .base58btc: return BaseCodec.base58btc
        case .base64: return BaseCodec.base64
        case .base64pad: return BaseCodec.base64pad
        case .base64url: return BaseCodec.base64url
        case .base64urlpad: return BaseCodec.base64urlpad
        }
    }
}

/// An alphabet-driven codec. RFC 4648 bases pack bits; base36 and base58 are big-number conversions that
/// keep leading zero bytes as leading zero digits ("leading_zero.csv" in the spec's tests).
struct BaseCodec: Sendable {
    enum Kind: Sendable {
        /// RFC 4648 bit packing, `bits` per character, optional `=` padding to `quantum` characters.
        case bits(Int, padded: Bool, quantum: Int)
        /// Big-number radix conversion.
        case radix
    }

    let name: String
    let kind: Kind
    let alphabet: [UInt8]
    /// Character → digit value, 0xFF for characters not in the alphabet.
    let table: [UInt8]

    /// The longest base36/base58 text accepted: those conversions are quadratic in the input length, so
    /// unbounded untrusted text could take seconds. A CID (at most 168 bytes) is under 240 characters.
    static let maxRadixTextLength = 8192

    init(name: String, alphabet: String, kind: Kind, caseInsensitive: Bool) {
        self.name = name
        self.kind = kind
        self.alphabet = Array(alphabet.utf8)
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in self.alphabet.enumerated() {
            table[Int(c)] = UInt8(i)
            if caseInsensitive {
                // "Decoders MUST be case-insensitive" for the case-insensitive bases: map both cases.
                if c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z") { table[Int(c - 32)] = UInt8(i) }
                if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { table[Int(c + 32)] = UInt8(i) }
            }
        }
        self.table = table
    }

    static let hexLower = "0123456789abcdef"
    static let b32 = "abcdefghijklmnopqrstuvwxyz234567"
    static let b32hex = "0123456789abcdefghijklmnopqrstuv"
    static let b36 = "0123456789abcdefghijklmnopqrstuvwxyz"
    static let b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    static let b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    static let base16 = BaseCodec(name: "base16", alphabet: hexLower, kind: .bits(4, padded: false, quantum: 2),
                                  caseInsensitive: true)
    static let base16upper = BaseCodec(name: "base16upper", alphabet: hexLower.uppercased(),
                                       kind: .bits(4, padded: false, quantum: 2), caseInsensitive: true)
    static let base32 = BaseCodec(name: "base32", alphabet: b32, kind: .bits(5, padded: false, quantum: 8),
                                  caseInsensitive: true)
    static let base32upper = BaseCodec(name: "base32upper", alphabet: b32.uppercased(),
                                       kind: .bits(5, padded: false, quantum: 8), caseInsensitive: true)
    static let base32pad = BaseCodec(name: "base32pad", alphabet: b32, kind: .bits(5, padded: true, quantum: 8),
                                     caseInsensitive: true)
    static let base32padupper = BaseCodec(name: "base32padupper", alphabet: b32.uppercased(),
                                          kind: .bits(5, padded: true, quantum: 8), caseInsensitive: true)
    static let base32hex = BaseCodec(name: "base32hex", alphabet: b32hex, kind: .bits(5, padded: false, quantum: 8),
                                     caseInsensitive: true)
    static let base32hexupper = BaseCodec(name: "base32hexupper", alphabet: b32hex.uppercased(),
                                          kind: .bits(5, padded: false, quantum: 8), caseInsensitive: true)
    static let base32hexpad = BaseCodec(name: "base32hexpad", alphabet: b32hex,
                                        kind: .bits(5, padded: true, quantum: 8), caseInsensitive: true)
    static let base32hexpadupper = BaseCodec(name: "base32hexpadupper", alphabet: b32hex.uppercased(),
                                             kind: .bits(5, padded: true, quantum: 8), caseInsensitive: true)
    static let base36 = BaseCodec(name: "base36", alphabet: b36, kind: .radix, caseInsensitive: true)
    static let base36upper = BaseCodec(name: "base36upper", alphabet: b36.uppercased(), kind: .radix,
                                       caseInsensitive: true)
    static let base58btc = BaseCodec(
        name: "base58btc", alphabet: "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", kind: .radix,
        caseInsensitive: false)
    static let base64 = BaseCodec(name: "base64", alphabet: b64, kind: .bits(6, padded: false, quantum: 4),
                                  caseInsensitive: false)
    static let base64pad = BaseCodec(name: "base64pad", alphabet: b64, kind: .bits(6, padded: true, quantum: 4),
                                     caseInsensitive: false)
    static let base64url = BaseCodec(name: "base64url", alphabet: b64url, kind: .bits(6, padded: false, quantum: 4),
                                     caseInsensitive: false)
    static let base64urlpad = BaseCodec(name: "base64urlpad", alphabet: b64url,
                                        kind: .bits(6, padded: true, quantum: 4), caseInsensitive: false)

    // MARK: Encoding

    func encode(_ input: UnsafeRawBufferPointer) -> String {
        switch kind {
        case .bits(let bits, let padded, let quantum): return encodeBits(input, bits: bits, padded: padded, quantum: quantum)
        case .radix: return encodeRadix(input)
        }
    }

    private func encodeBits(_ input: UnsafeRawBufferPointer, bits: Int, padded: Bool, quantum: Int) -> String {
        var count = (input.count * 8 + bits - 1) / bits
        let dataCount = count
        if padded { count = (count + quantum - 1) / quantum * quantum }
        return alphabet.withUnsafeBufferPointer { alpha in
            String(unsafeUninitializedCapacity: count) { out in
                var buffer: UInt32 = 0
                var bufferedBits = 0
                var o = 0
                let mask = UInt32((1 << bits) - 1)
                for byte in input {
                    buffer = (buffer << 8) | UInt32(byte)
                    bufferedBits += 8
                    while bufferedBits >= bits {
                        bufferedBits -= bits
                        out[o] = alpha[Int((buffer >> UInt32(bufferedBits)) & mask)]
                        o += 1
                    }
                }
                if bufferedBits > 0 {
                    out[o] = alpha[Int((buffer << UInt32(bits - bufferedBits)) & mask)]
                    o += 1
                }
                assert(o == dataCount)
                while o < count {
                    out[o] = UInt8(ascii: "=")
                    o += 1
                }
                return count
            }
        }
    }

    /// Radix encoding with 32-bit limbs: the number is divided by `radix^k` (the largest power under 2^32)
    /// per pass, which yields k digits per pass instead of one.
    private func encodeRadix(_ input: UnsafeRawBufferPointer) -> String {
        let radix = UInt64(alphabet.count)
        let zeros = input.prefix { $0 == 0 }.count
        let rest = UnsafeRawBufferPointer(rebasing: input[zeros...])
        // Big-endian 32-bit limbs of the number.
        var limbs = [UInt32](repeating: 0, count: (rest.count + 3) / 4)
        var shift = (4 - rest.count % 4) % 4
        var li = 0
        var acc: UInt32 = 0
        for byte in rest {
            acc = acc << 8 | UInt32(byte)
            shift += 1
            if shift == 4 {
                limbs[li] = acc
                li += 1
                acc = 0
                shift = 0
            }
        }
        var (power, perPass) = (radix, 1)
        while power * radix <= UInt64(UInt32.max) {
            power *= radix
            perPass += 1
        }
        var digits: [UInt8] = []  // least significant first
        digits.reserveCapacity(rest.count * 2 + 1)
        var start = 0
        while start < limbs.count {
            var remainder: UInt64 = 0
            for i in start..<limbs.count {
                let cur = remainder << 32 | UInt64(limbs[i])
                limbs[i] = UInt32(cur / power)
                remainder = cur % power
            }
            while start < limbs.count && limbs[start] == 0 { start += 1 }
            for _ in 0..<perPass {
                digits.append(UInt8(remainder % radix))
                remainder /= radix
                if start == limbs.count && remainder == 0 { break }
            }
        }
        // The last pass may have produced high zero digits; they are not part of the number.
        while digits.last == 0 { digits.removeLast() }
        var out = [UInt8](repeating: alphabet[0], count: zeros)
        out.reserveCapacity(zeros + digits.count)
        for d in digits.reversed() { out.append(alphabet[Int(d)]) }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Decoding

    func decode(_ text: UnsafeRawBufferPointer) throws(MultiformatsError) -> [UInt8] {
        switch kind {
        case .bits(let bits, let padded, let quantum):
            return try decodeBits(text, bits: bits, padded: padded, quantum: quantum)
        case .radix:
            return try decodeRadix(text)
        }
    }

    private func invalid(_ byte: UInt8) -> MultiformatsError {
        .invalidCharacter(base: name, character: Character(Unicode.Scalar(byte)))
    }

    private func decodeBits(
        _ text: UnsafeRawBufferPointer, bits: Int, padded: Bool, quantum: Int
    ) throws(MultiformatsError) -> [UInt8] {
        var dataCount = text.count
        if padded {
            // RFC 4648 §3.2: padded text is a whole number of quanta, the padding closes the last one.
            while dataCount > 0 && text[dataCount - 1] == UInt8(ascii: "=") { dataCount -= 1 }
            if text.count % quantum != 0 {
                throw .invalidEncoding(base: name, reason: "length \(text.count) is not a multiple of \(quantum)")
            }
            if text.count - dataCount >= quantum || (dataCount == 0 && text.count > 0) {
                throw .invalidEncoding(base: name, reason: "too much padding")
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(dataCount * bits / 8)
        var buffer: UInt32 = 0
        var bufferedBits = 0
        try table.withUnsafeBufferPointer { table throws(MultiformatsError) in
            for i in 0..<dataCount {
                let ch = text[i]
                let value = table[Int(ch)]
                // An unpadded base has no `=`; in a padded one `=` only appears at the end (handled above).
                guard value != 0xFF else { throw invalid(ch) }
                buffer = (buffer << UInt32(bits)) | UInt32(value)
                bufferedBits += bits
                if bufferedBits >= 8 {
                    bufferedBits -= 8
                    out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bufferedBits)))
                }
            }
        }
        // A final group of fewer than 8 bits that fills a whole symbol is a length no encoder produces
        // (e.g. one base64 character); the bits left over must be zero (RFC 4648 §3.5 canonical form).
        if bufferedBits >= bits {
            throw .invalidEncoding(base: name, reason: "\(dataCount) characters is not a valid length")
        }
        if buffer & ((1 << UInt32(bufferedBits)) - 1) != 0 {
            throw .invalidEncoding(base: name, reason: "non-zero padding bits in the last character")
        }
        if padded && (text.count - dataCount) != (quantum - dataCount % quantum) % quantum {
            throw .invalidEncoding(base: name, reason: "wrong amount of padding")
        }
        return out
    }

    /// Radix decoding with 32-bit limbs: k characters (radix^k < 2^32) are folded in per pass.
    private func decodeRadix(_ text: UnsafeRawBufferPointer) throws(MultiformatsError) -> [UInt8] {
        guard text.count <= Self.maxRadixTextLength else {
            throw .invalidEncoding(base: name, reason: "\(text.count) characters is over the \(Self.maxRadixTextLength) limit")
        }
        let radix = UInt64(alphabet.count)
        var zeros = 0
        while zeros < text.count && table[Int(text[zeros])] == 0 { zeros += 1 }
        var limbs: [UInt32] = []  // least significant first
        limbs.reserveCapacity(text.count / 5 + 1)
        var i = zeros
        while i < text.count {
            var chunk: UInt64 = 0
            var multiplier: UInt64 = 1
            while i < text.count && multiplier * radix <= UInt64(UInt32.max) {
                let value = table[Int(text[i])]
                guard value != 0xFF else { throw invalid(text[i]) }
                chunk = chunk * radix + UInt64(value)
                multiplier *= radix
                i += 1
            }
            var carry = chunk
            for j in limbs.indices {
                let cur = UInt64(limbs[j]) * multiplier + carry
                limbs[j] = UInt32(truncatingIfNeeded: cur)
                carry = cur >> 32
            }
            while carry > 0 {
                limbs.append(UInt32(truncatingIfNeeded: carry))
                carry >>= 32
            }
        }
        var out = [UInt8](repeating: 0, count: zeros)
        out.reserveCapacity(zeros + limbs.count * 4)
        var leading = true
        for limb in limbs.reversed() {
            for s in stride(from: 24, through: 0, by: -8) {
                let byte = UInt8(truncatingIfNeeded: limb >> UInt32(s))
                if leading && byte == 0 { continue }
                leading = false
                out.append(byte)
            }
        }
        return out
    }
}
