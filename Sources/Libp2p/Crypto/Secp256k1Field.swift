// edgeswap: libp2p keys. Fixed-width arithmetic modulo the secp256k1 field prime, so that verifying a
// secp256k1 identity signature costs well under a millisecond instead of the tens of milliseconds that
// heap-allocated big integers take. Not constant time (verification handles public data only).

import BigInt

/// An element of GF(p), p = 2^256 − 2^32 − 977, as four little-endian 64-bit limbs, always fully reduced.
struct Secp256k1Field: Equatable, Sendable {
    var l0: UInt64
    var l1: UInt64
    var l2: UInt64
    var l3: UInt64

    /// 2^256 mod p = 2^32 + 977: multiplying the high half of a product by this folds it into the low half.
    static let c: UInt64 = 0x1_0000_03D1
    static let p0: UInt64 = 0xFFFF_FFFE_FFFF_FC2F
    static let zero = Secp256k1Field(0, 0, 0, 0)
    static let one = Secp256k1Field(1, 0, 0, 0)

    init(_ l0: UInt64, _ l1: UInt64, _ l2: UInt64, _ l3: UInt64) {
        self.l0 = l0
        self.l1 = l1
        self.l2 = l2
        self.l3 = l3
    }

    /// From an integer below p.
    init(_ value: BigUInt) {
        precondition(value < Secp256k1.p)
        let words = value.words
        func word(_ i: Int) -> UInt64 { i < words.count ? UInt64(words[i]) : 0 }
        self.init(word(0), word(1), word(2), word(3))
    }

    var bigUInt: BigUInt {
        BigUInt(words: [UInt(self.l0), UInt(self.l1), UInt(self.l2), UInt(self.l3)])
    }

    var isZero: Bool { (self.l0 | self.l1 | self.l2 | self.l3) == 0 }

    /// Whether a full-width value (limbs below 2^256) is ≥ p. Only values in [p, 2^256) qualify, and
    /// those have the top three limbs all ones.
    @inline(__always)
    private static func isAtLeastP(_ r0: UInt64, _ r1: UInt64, _ r2: UInt64, _ r3: UInt64) -> Bool {
        r3 == .max && r2 == .max && r1 == .max && r0 >= p0
    }

    /// acc + x·y + carry as (low, high); cannot overflow 128 bits.
    @inline(__always)
    private static func mac(_ acc: UInt64, _ x: UInt64, _ y: UInt64, _ carry: UInt64) -> (UInt64, UInt64) {
        let (hi, lo) = x.multipliedFullWidth(by: y)
        let (s1, o1) = lo.addingReportingOverflow(acc)
        let (s2, o2) = s1.addingReportingOverflow(carry)
        return (s2, hi &+ (o1 ? 1 : 0) &+ (o2 ? 1 : 0))
    }

    static func + (a: Secp256k1Field, b: Secp256k1Field) -> Secp256k1Field {
        let (r0, c0) = a.l0.addingReportingOverflow(b.l0)
        var (r1, c1) = a.l1.addingReportingOverflow(b.l1)
        var (r2, c2) = a.l2.addingReportingOverflow(b.l2)
        var (r3, c3) = a.l3.addingReportingOverflow(b.l3)
        var o: Bool
        if c0 { (r1, o) = r1.addingReportingOverflow(1); c1 = c1 || o }
        if c1 { (r2, o) = r2.addingReportingOverflow(1); c2 = c2 || o }
        if c2 { (r3, o) = r3.addingReportingOverflow(1); c3 = c3 || o }
        if c3 {
            // a + b − 2^256 < 2^256 − 2c, so adding c (≡ 2^256) cannot overflow again.
            return Self.addSmall(r0, r1, r2, r3, c)
        }
        if isAtLeastP(r0, r1, r2, r3) { return Secp256k1Field(r0 &- p0, 0, 0, 0) }
        return Secp256k1Field(r0, r1, r2, r3)
    }

    /// (r0..r3) + small, for results known not to overflow 2^256 and to stay below p afterwards.
    @inline(__always)
    private static func addSmall(_ r0: UInt64, _ r1: UInt64, _ r2: UInt64, _ r3: UInt64, _ small: UInt64)
        -> Secp256k1Field
    {
        var (s0, o) = r0.addingReportingOverflow(small)
        var s1 = r1, s2 = r2, s3 = r3
        if o { (s1, o) = s1.addingReportingOverflow(1) }
        if o { (s2, o) = s2.addingReportingOverflow(1) }
        if o { s3 &+= 1 }
        if isAtLeastP(s0, s1, s2, s3) { s0 = s0 &- p0; s1 = 0; s2 = 0; s3 = 0 }
        return Secp256k1Field(s0, s1, s2, s3)
    }

    static func - (a: Secp256k1Field, b: Secp256k1Field) -> Secp256k1Field {
        let (r0, b0) = a.l0.subtractingReportingOverflow(b.l0)
        var (r1, b1) = a.l1.subtractingReportingOverflow(b.l1)
        var (r2, b2) = a.l2.subtractingReportingOverflow(b.l2)
        var (r3, b3) = a.l3.subtractingReportingOverflow(b.l3)
        var o: Bool
        if b0 { (r1, o) = r1.subtractingReportingOverflow(1); b1 = b1 || o }
        if b1 { (r2, o) = r2.subtractingReportingOverflow(1); b2 = b2 || o }
        if b2 { (r3, o) = r3.subtractingReportingOverflow(1); b3 = b3 || o }
        guard b3 else { return Secp256k1Field(r0, r1, r2, r3) }
        // Wrapped to a − b + 2^256; adding p = 2^256 − c means subtracting c modulo 2^256.
        let (s0, borrow) = r0.subtractingReportingOverflow(c)
        var u = borrow
        if u { (r1, u) = r1.subtractingReportingOverflow(1) }
        if u { (r2, u) = r2.subtractingReportingOverflow(1) }
        if u { r3 &-= 1 }
        return Secp256k1Field(s0, r1, r2, r3)
    }

    static func * (a: Secp256k1Field, b: Secp256k1Field) -> Secp256k1Field {
        // 256 × 256 → 512-bit schoolbook product t0…t7.
        var carry: UInt64
        var t0, t1, t2, t3, t4, t5, t6, t7: UInt64
        (t0, carry) = mac(0, a.l0, b.l0, 0)
        (t1, carry) = mac(0, a.l0, b.l1, carry)
        (t2, carry) = mac(0, a.l0, b.l2, carry)
        (t3, carry) = mac(0, a.l0, b.l3, carry)
        t4 = carry
        (t1, carry) = mac(t1, a.l1, b.l0, 0)
        (t2, carry) = mac(t2, a.l1, b.l1, carry)
        (t3, carry) = mac(t3, a.l1, b.l2, carry)
        (t4, carry) = mac(t4, a.l1, b.l3, carry)
        t5 = carry
        (t2, carry) = mac(t2, a.l2, b.l0, 0)
        (t3, carry) = mac(t3, a.l2, b.l1, carry)
        (t4, carry) = mac(t4, a.l2, b.l2, carry)
        (t5, carry) = mac(t5, a.l2, b.l3, carry)
        t6 = carry
        (t3, carry) = mac(t3, a.l3, b.l0, 0)
        (t4, carry) = mac(t4, a.l3, b.l1, carry)
        (t5, carry) = mac(t5, a.l3, b.l2, carry)
        (t6, carry) = mac(t6, a.l3, b.l3, carry)
        t7 = carry
        return reduce(t0, t1, t2, t3, t4, t5, t6, t7)
    }

    /// Reduces a 512-bit value using 2^256 ≡ c (mod p), twice, then a final conditional subtraction.
    @inline(__always)
    private static func reduce(
        _ t0: UInt64, _ t1: UInt64, _ t2: UInt64, _ t3: UInt64,
        _ t4: UInt64, _ t5: UInt64, _ t6: UInt64, _ t7: UInt64
    ) -> Secp256k1Field {
        var carry: UInt64
        var r0, r1, r2, r3: UInt64
        (r0, carry) = mac(t0, t4, c, 0)
        (r1, carry) = mac(t1, t5, c, carry)
        (r2, carry) = mac(t2, t6, c, carry)
        (r3, carry) = mac(t3, t7, c, carry)
        // carry < 2^34 now; fold it in: carry·c < 2^67.
        let (hi, lo) = carry.multipliedFullWidth(by: c)
        var o: Bool
        (r0, o) = r0.addingReportingOverflow(lo)
        var add1 = hi &+ (o ? 1 : 0)
        (r1, o) = r1.addingReportingOverflow(add1)
        add1 = o ? 1 : 0
        (r2, o) = r2.addingReportingOverflow(add1)
        add1 = o ? 1 : 0
        (r3, o) = r3.addingReportingOverflow(add1)
        if o {
            // Overflowed 2^256 once more: the value is now tiny, so adding c cannot overflow.
            return addSmall(r0, r1, r2, r3, c)
        }
        if isAtLeastP(r0, r1, r2, r3) { return Secp256k1Field(r0 &- p0, 0, 0, 0) }
        return Secp256k1Field(r0, r1, r2, r3)
    }

    /// self^(p−2) = self⁻¹ (Fermat); zero maps to zero.
    var inverse: Secp256k1Field {
        // p − 2 = FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFE FFFFFC2D
        self.power([Self.p0 &- 2, .max, .max, .max])
    }

    /// self^e for a 256-bit exponent given as little-endian limbs (left-to-right square and multiply).
    func power(_ exponent: [UInt64]) -> Secp256k1Field {
        var result = Secp256k1Field.one
        for limb in exponent.reversed() {
            for bit in stride(from: 63, through: 0, by: -1) {
                result = result * result
                if (limb >> UInt64(bit)) & 1 == 1 { result = result * self }
            }
        }
        return result
    }
}
