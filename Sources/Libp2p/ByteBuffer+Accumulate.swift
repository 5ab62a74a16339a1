import NIOCore

extension ByteBuffer {
    /// Adds bytes received from the network to this accumulation buffer. When nothing is pending the
    /// received buffer is adopted as is (no copy), which is the common case for whole frames.
    mutating func accumulate(_ received: ByteBuffer) {
        if self.readableBytes == 0 {
            self = received
        } else {
            var received = received
            self.writeBuffer(&received)
        }
    }
}
