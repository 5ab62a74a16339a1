/// BLAKE3 (placeholder: the full implementation lands with the Multiformats work).
public enum BLAKE3 {
    public static func hash(_ data: UnsafeRawBufferPointer, outputLength: Int = 32) -> [UInt8] {
        fatalError("BLAKE3 not implemented yet")
    }
}
