import NIOCore
import NIOWebSocket

/// RFC 6455 frame masking, done eight bytes at a time.
///
/// RFC 6455 § 5.3: "Octet i of the transformed data ("transformed-octet-i") is the XOR of octet i of the
/// original data ("original-octet-i") with octet at index i modulo 4 of the masking key
/// ("masking-key-octet-j")". swift-nio's `ByteBuffer.webSocketMask` does this one byte at a time with a
/// modulo per byte and needs a uniquely owned buffer (otherwise it copies first, then masks: two passes).
/// Here copying and masking are fused into one pass over 64-bit words, which is what both the client's
/// outbound path and the server's inbound unmasking need anyway.
enum WebSocketMasking {
    /// Copies `source` into `destination` XOR-ing it with `key`; `destination.count` must be at least
    /// `source.count`. Masking and unmasking are the same operation.
    static func copyMasking(
        _ source: UnsafeRawBufferPointer,
        into destination: UnsafeMutableRawBufferPointer,
        key: WebSocketMaskingKey
    ) {
        precondition(destination.count >= source.count, "mask destination too small")
        let count = source.count
        guard count > 0, let src = source.baseAddress, let dst = destination.baseAddress else { return }
        let k0 = key[key.startIndex]
        let k1 = key[key.index(key.startIndex, offsetBy: 1)]
        let k2 = key[key.index(key.startIndex, offsetBy: 2)]
        let k3 = key[key.index(key.startIndex, offsetBy: 3)]
        // A word whose in-memory bytes are k0 k1 k2 k3 k0 k1 k2 k3 on any host byte order.
        let key32 = UInt32(k0) | UInt32(k1) << 8 | UInt32(k2) << 16 | UInt32(k3) << 24
        let key64 = UInt64(littleEndian: UInt64(key32) | UInt64(key32) << 32)
        var offset = 0
        while offset + 8 <= count {
            let word = src.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            dst.storeBytes(of: word ^ key64, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        // Tail: offset is a multiple of 8, hence of 4, so the key restarts at k0.
        let keyBytes = (k0, k1, k2, k3)
        while offset < count {
            let k: UInt8
            switch offset & 3 {
            case 0: k = keyBytes.0
            case 1: k = keyBytes.1
            case 2: k = keyBytes.2
            default: k = keyBytes.3
            }
            dst.storeBytes(of: src.load(fromByteOffset: offset, as: UInt8.self) ^ k, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }
    }

    /// Appends `payload` masked with `key` to `buffer` (one pass, no intermediate copy).
    static func appendMasked(_ payload: ByteBuffer, key: WebSocketMaskingKey, to buffer: inout ByteBuffer) {
        let count = payload.readableBytes
        guard count > 0 else { return }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { destination in
            payload.withUnsafeReadableBytes { source in
                Self.copyMasking(source, into: destination, key: key)
            }
            return count
        }
    }
}
