// edgeswap: libp2p keys. secp256k1 ECDSA over SHA-256, because swift-crypto has no secp256k1 curve.

import BigInt
import Crypto

/// secp256k1 (SEC 2 § 2.4.1) ECDSA, enough for libp2p identities of KeyType Secp256k1.
///
/// peer-ids.md: "We use the standard Bitcoin EC encoding for Secp256k1 public and private keys. To sign a
/// message, we hash the message with SHA 256, then sign it using the standard Bitcoin EC signature
/// algorithm (BIP0062), and then use standard Bitcoin encoding."
///
/// Verification is the job here (a remote peer's identity signature is checked once per handshake).
/// The arithmetic uses arbitrary-precision integers and is **not constant time**: fine for verifying
/// public data; signing is provided so tests (and anyone importing such a key) can exercise the path, but a
/// long-lived server identity should be Ed25519, RSA or ECDSA P-256, which swift-crypto signs with.
enum Secp256k1 {
    /// Field prime p = 2^256 − 2^32 − 977.
    static let p = BigUInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F", radix: 16)!
    /// Group order n.
    static let n = BigUInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", radix: 16)!
    /// Generator G.
    static let g = Point(
        x: BigUInt("79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", radix: 16)!,
        y: BigUInt("483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8", radix: 16)!)

    /// An affine point on y² = x³ + 7 (never the point at infinity).
    struct Point: Equatable, Sendable {
        var x: BigUInt
        var y: BigUInt

        /// Parses a SEC1 point: 33 bytes `02/03 ‖ x` (compressed) or 65 bytes `04 ‖ x ‖ y`.
        init(sec1 bytes: [UInt8]) throws(KeyError) {
            func fail(_ why: String) -> KeyError { .invalidKeyData(type: "secp256k1", reason: why) }
            guard let prefix = bytes.first else { throw fail("empty public key") }
            switch (prefix, bytes.count) {
            case (0x02, 33), (0x03, 33):
                let x = bytes[1...].withUnsafeBytes { BigUInt($0) }
                guard x < Secp256k1.p else { throw fail("x coordinate is not below p") }
                let ySquared = (x.power(3, modulus: Secp256k1.p) + 7) % Secp256k1.p
                // p ≡ 3 (mod 4), so a square root of a is a^((p+1)/4) when one exists.
                var y = ySquared.power((Secp256k1.p + 1) / 4, modulus: Secp256k1.p)
                guard (y * y) % Secp256k1.p == ySquared else { throw fail("x is not on the curve") }
                if y[bitAt: 0] != (prefix == 0x03) { y = Secp256k1.p - y }
                self.init(x: x, y: y)
            case (0x04, 65):
                let x = bytes[1..<33].withUnsafeBytes { BigUInt($0) }
                let y = bytes[33..<65].withUnsafeBytes { BigUInt($0) }
                guard x < Secp256k1.p, y < Secp256k1.p else { throw fail("coordinate is not below p") }
                self.init(x: x, y: y)
                guard self.isOnCurve else { throw fail("point is not on the curve") }
            default:
                throw fail("expected 33 bytes (02/03 prefix) or 65 bytes (04 prefix), got \(bytes.count)")
            }
        }

        init(x: BigUInt, y: BigUInt) {
            self.x = x
            self.y = y
        }

        var isOnCurve: Bool {
            (self.y * self.y) % Secp256k1.p == (self.x.power(3, modulus: Secp256k1.p) + 7) % Secp256k1.p
        }

        /// The 33-byte compressed SEC1 encoding (what go-libp2p and js-libp2p write).
        var compressed: [UInt8] {
            [self.y[bitAt: 0] ? 0x03 : 0x02] + Secp256k1.bytes32(self.x)
        }
    }

    /// A point in Jacobian coordinates (X/Z², Y/Z³) over fixed-width field elements; Z = 0 is the point at
    /// infinity.
    private struct Jacobian {
        typealias F = Secp256k1Field
        var x: F
        var y: F
        var z: F

        static let infinity = Jacobian(x: .one, y: .one, z: .zero)

        init(x: F, y: F, z: F) {
            self.x = x
            self.y = y
            self.z = z
        }

        init(_ point: Point) {
            self.init(x: F(point.x), y: F(point.y), z: .one)
        }

        var isInfinity: Bool { self.z.isZero }

        var affine: Point? {
            guard !self.isInfinity else { return nil }
            let zInverse = self.z.inverse
            let z2 = zInverse * zInverse
            return Point(x: (self.x * z2).bigUInt, y: (self.y * z2 * zInverse).bigUInt)
        }

        /// Doubling for a = 0 ("dbl-2009-l", hyperelliptic.org EFD).
        func doubled() -> Jacobian {
            if self.isInfinity || self.y.isZero { return .infinity }
            let a = self.x * self.x
            let b = self.y * self.y
            let c = b * b
            let xb = self.x + b
            let t = xb * xb - a - c
            let d = t + t
            let e = a + a + a
            let f = e * e
            let x3 = f - (d + d)
            let c2 = c + c
            let c4 = c2 + c2
            let y3 = e * (d - x3) - (c4 + c4)
            let yz = self.y * self.z
            return Jacobian(x: x3, y: y3, z: yz + yz)
        }

        /// General addition ("add-1998-cmo-2").
        func adding(_ other: Jacobian) -> Jacobian {
            if self.isInfinity { return other }
            if other.isInfinity { return self }
            let z1z1 = self.z * self.z
            let z2z2 = other.z * other.z
            let u1 = self.x * z2z2
            let u2 = other.x * z1z1
            let s1 = self.y * other.z * z2z2
            let s2 = other.y * self.z * z1z1
            if u1 == u2 { return s1 == s2 ? self.doubled() : .infinity }
            let h = u2 - u1
            let r = s2 - s1
            let hh = h * h
            let hhh = h * hh
            let v = u1 * hh
            let x3 = r * r - hhh - (v + v)
            let y3 = r * (v - x3) - s1 * hhh
            return Jacobian(x: x3, y: y3, z: h * self.z * other.z)
        }
    }

    /// a·P + b·Q with one shared doubling chain (Shamir's trick).
    private static func linearCombination(_ a: BigUInt, _ p1: Point, _ b: BigUInt, _ p2: Point) -> Point? {
        let j1 = Jacobian(p1)
        let j2 = Jacobian(p2)
        let both = j1.adding(j2)
        var acc = Jacobian.infinity
        let bits = max(a.bitWidth, b.bitWidth)
        var i = bits - 1
        while i >= 0 {
            acc = acc.doubled()
            switch (a[bitAt: i], b[bitAt: i]) {
            case (true, true): acc = acc.adding(both)
            case (true, false): acc = acc.adding(j1)
            case (false, true): acc = acc.adding(j2)
            case (false, false): break
            }
            i -= 1
        }
        return acc.affine
    }

    /// k·G.
    static func multiplyGenerator(_ k: BigUInt) -> Point? {
        linearCombination(k, g, 0, g)
    }

    /// Big-endian 32-byte encoding of a value below 2^256.
    static func bytes32(_ value: BigUInt) -> [UInt8] {
        let raw = [UInt8](value.serialize())
        return [UInt8](repeating: 0, count: max(0, 32 - raw.count)) + raw.suffix(32)
    }

    /// SHA-256 of `message` as an integer (the digest is exactly as wide as n, so no truncation applies).
    private static func messageScalar(_ message: [UInt8]) -> BigUInt {
        SHA256.hash(data: message).withUnsafeBytes { BigUInt($0) }
    }

    /// Verifies a DER-encoded ECDSA signature over SHA-256(`message`). High-S signatures are accepted, as
    /// plain ECDSA defines them valid (BIP 62's low-S rule is a malleability policy for transactions).
    static func isValidSignature(_ der: [UInt8], for message: [UInt8], publicKey: Point) -> Bool {
        guard let (r, s) = DER.parseECDSASignature(der) else { return false }
        guard !r.isZero, r < n, !s.isZero, s < n, let w = s.inverse(n) else { return false }
        let z = messageScalar(message) % n
        let u1 = (z * w) % n
        let u2 = (r * w) % n
        guard let point = linearCombination(u1, g, u2, publicKey) else { return false }
        return point.x % n == r
    }

    /// Signs SHA-256(`message`) with scalar `d`, returning a DER signature with low S (BIP 62). The nonce is
    /// drawn from the system CSPRNG. Not constant time: see the type's documentation.
    static func sign(_ message: [UInt8], privateScalar d: BigUInt) -> [UInt8] {
        let z = messageScalar(message) % n
        while true {
            let k = BigUInt.randomInteger(lessThan: n)
            guard !k.isZero, let point = multiplyGenerator(k), let kInverse = k.inverse(n) else { continue }
            let r = point.x % n
            guard !r.isZero else { continue }
            var s = (kInverse * ((z + r * d) % n)) % n
            guard !s.isZero else { continue }
            if s > n / 2 { s = n - s }
            return DER.encodeECDSASignature(r: bytes32(r), s: bytes32(s))
        }
    }
}
