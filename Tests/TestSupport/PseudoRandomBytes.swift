/// Deterministic pseudo-random bytes (xorshift64*): the same seed gives the same bytes, so a failing run can be
/// reproduced, and different seeds give inputs unlike any vector pattern. Not for anything secret.
public func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var bytes = [UInt8](repeating: 0, count: count)
    for index in 0..<count {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        bytes[index] = UInt8(truncatingIfNeeded: (state &* 0x2545_F491_4F6C_DD1D) >> 56)
    }
    return bytes
}
