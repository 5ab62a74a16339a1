/// BLAKE2b (placeholder: the full implementation lands with the Multiformats work).
public enum BLAKE2b {
    public static func hash(_ data: UnsafeRawBufferPointer, outputLength: Int) -> [UInt8] {
        fatalError("BLAKE2b not implemented yet")
    }
}
