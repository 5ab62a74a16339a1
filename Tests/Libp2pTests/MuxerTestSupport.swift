import Libp2p
import NIOCore

// Helpers shared by the multistream, yamux and mplex byte-fixture tests.

/// Bytes from a hex string, as the specs print frames; white space is ignored.
func hexBuffer(_ hex: String) -> ByteBuffer {
    let digits = Array(hex.filter { !$0.isWhitespace })
    precondition(digits.count % 2 == 0, "odd number of hex digits in \(hex)")
    var out = ByteBuffer()
    var index = 0
    while index < digits.count {
        out.writeInteger(UInt8(String(digits[index...index + 1]), radix: 16)!)
        index += 2
    }
    return out
}

/// Every event the session has queued, in order.
func drainEvents(_ session: inout some StreamMuxerStateMachine) -> [StreamMuxerEvent] {
    var events: [StreamMuxerEvent] = []
    while let event = session.nextEvent() { events.append(event) }
    return events
}
