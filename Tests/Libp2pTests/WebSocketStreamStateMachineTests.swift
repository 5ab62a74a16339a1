import NIOCore
import NIOWebSocket
import Testing

@testable import Libp2p

/// Event-by-event tests of the sans-IO WebSocket stream logic (RFC 6455 rules), no sockets.
@Suite("WebSocket stream state machine")
struct WebSocketStreamStateMachineTests {
    private func server() -> WebSocketStreamStateMachine {
        WebSocketStreamStateMachine(role: .server, maxFrameSize: 1 << 20)
    }

    private func closeBody(_ code: UInt16?, _ reason: String = "") -> ByteBuffer {
        var body = ByteBuffer()
        if let code {
            body.writeInteger(code)
            body.writeString(reason)
        }
        return body
    }

    @Test func dataOfAnyOpcodeIsDeliveredAcrossFragments() {
        var sm = self.server()
        #expect(sm.receivedFrame(opcode: .text, fin: false, reservedBitsSet: false, masked: true, closePayload: nil) == .deliver)
        #expect(sm.receivedFrame(opcode: .ping, fin: true, reservedBitsSet: false, masked: true, closePayload: nil) == .sendPong)
        #expect(sm.receivedFrame(opcode: .continuation, fin: false, reservedBitsSet: false, masked: true, closePayload: nil) == .deliver)
        #expect(sm.receivedFrame(opcode: .continuation, fin: true, reservedBitsSet: false, masked: true, closePayload: nil) == .deliver)
        #expect(sm.receivedFrame(opcode: .binary, fin: true, reservedBitsSet: false, masked: true, closePayload: nil) == .deliver)
        #expect(sm.receivedFrame(opcode: .pong, fin: true, reservedBitsSet: false, masked: true, closePayload: nil) == .ignore)
        #expect(sm.write() == .sendBinary)
    }

    @Test func continuationWithoutMessageFails() {
        var sm = self.server()
        let action = sm.receivedFrame(opcode: .continuation, fin: true, reservedBitsSet: false, masked: true, closePayload: nil)
        guard case .failConnection(let code, .protocolViolation) = action else {
            Issue.record("expected a protocol failure, got \(action)")
            return
        }
        #expect(code == 1002)
        #expect(sm.write() == .fail(.writeAfterClose))
    }

    @Test func interleavedMessagesFail() {
        var sm = self.server()
        _ = sm.receivedFrame(opcode: .binary, fin: false, reservedBitsSet: false, masked: true, closePayload: nil)
        let action = sm.receivedFrame(opcode: .text, fin: true, reservedBitsSet: false, masked: true, closePayload: nil)
        guard case .failConnection(1002, _) = action else {
            Issue.record("expected 1002, got \(action)")
            return
        }
    }

    @Test func maskingDirectionIsEnforced() {
        var sm = self.server()
        guard case .failConnection(1002, _) = sm.receivedFrame(opcode: .binary, fin: true, reservedBitsSet: false, masked: false, closePayload: nil) else {
            Issue.record("server accepted an unmasked frame")
            return
        }
        var client = WebSocketStreamStateMachine(role: .client, maxFrameSize: 1 << 20)
        guard case .failConnection(1002, _) = client.receivedFrame(opcode: .binary, fin: true, reservedBitsSet: false, masked: true, closePayload: nil) else {
            Issue.record("client accepted a masked frame")
            return
        }
    }

    @Test func reservedBitsAndUnknownOpcodesFail() {
        var sm = self.server()
        guard case .failConnection(1002, _) = sm.receivedFrame(opcode: .binary, fin: true, reservedBitsSet: true, masked: true, closePayload: nil) else {
            Issue.record("RSV bit accepted")
            return
        }
        var other = self.server()
        let opcode = WebSocketOpcode(encodedWebSocketOpcode: 0x3)!
        guard case .failConnection(1002, .protocolViolation(let rule)) = other.receivedFrame(opcode: opcode, fin: true, reservedBitsSet: false, masked: true, closePayload: nil) else {
            Issue.record("opcode 3 accepted")
            return
        }
        #expect(rule.contains("unknown opcode 3"))
    }

    @Test func cleanClosesAreEOF() {
        var normal = self.server()
        #expect(normal.receivedFrame(opcode: .connectionClose, fin: true, reservedBitsSet: false, masked: true, closePayload: self.closeBody(1000)) == .replyCloseAndClose(replyCode: 1000, error: nil))
        #expect(!normal.isOpen)
        var empty = self.server()
        #expect(empty.receivedFrame(opcode: .connectionClose, fin: true, reservedBitsSet: false, masked: true, closePayload: self.closeBody(nil)) == .replyCloseAndClose(replyCode: nil, error: nil))
    }

    @Test func otherClosesAreReportedAndEchoed() {
        var sm = self.server()
        let action = sm.receivedFrame(opcode: .connectionClose, fin: true, reservedBitsSet: false, masked: true, closePayload: self.closeBody(1001, "going away"))
        #expect(action == .replyCloseAndClose(replyCode: 1001, error: .closedByPeer(code: 1001, reason: "going away")))
        var oneByte = self.server()
        var body = ByteBuffer()
        body.writeInteger(UInt8(3))
        guard case .failConnection(1002, _) = oneByte.receivedFrame(opcode: .connectionClose, fin: true, reservedBitsSet: false, masked: true, closePayload: body) else {
            Issue.record("1-byte close body accepted")
            return
        }
    }

    @Test func oversizeFrameClosesWith1009() {
        var sm = WebSocketStreamStateMachine(role: .server, maxFrameSize: 4096)
        #expect(sm.decoderFailed(.invalidFrameLength) == .failConnection(code: 1009, error: .frameTooLarge(limit: 4096)))
        #expect(sm.decoderFailed(.invalidFrameLength) == .ignore)
    }

    @Test func localCloseSendsCloseOnce() {
        var sm = self.server()
        #expect(sm.closeRequested() == .sendCloseThenClose)
        #expect(sm.closeRequested() == .close)
        #expect(sm.receivedFrame(opcode: .binary, fin: true, reservedBitsSet: false, masked: true, closePayload: nil) == .ignore)
    }
}

@Suite("WebSocket framing helpers")
struct WebSocketFramingHelperTests {
    /// RFC 6455 § 1.3 worked example.
    @Test func acceptValueMatchesRFCExample() {
        #expect(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    /// The fused 64-bit masking must equal swift-nio's byte-wise reference for every length and key.
    @Test func fusedMaskingMatchesNIOReference() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt8 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        for length in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 65_537] {
            let key = WebSocketMaskingKey([next(), next(), next(), next()])!
            let payload = ByteBuffer(bytes: (0..<length).map { _ in next() })
            var reference = payload
            reference.webSocketMask(key)
            var ours = ByteBuffer()
            WebSocketMasking.appendMasked(payload, key: key, to: &ours)
            #expect(ours == reference, "length \(length)")
            var back = ByteBuffer()
            WebSocketMasking.appendMasked(ours, key: key, to: &back)
            #expect(back == payload)
        }
    }

    @Test func headerLengthEncodings() {
        for (length, expected) in [(0, [0x82, 0x00]), (125, [0x82, 125]), (126, [0x82, 126, 0x00, 126]), (65_535, [0x82, 126, 0xFF, 0xFF]), (65_536, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0])] {
            var buffer = ByteBuffer()
            WebSocketFrameHeader.write(opcode: .binary, payloadLength: length, maskKey: nil, into: &buffer)
            #expect(Array(buffer.readableBytesView) == expected.map { UInt8($0) }, "length \(length)")
            #expect(WebSocketFrameHeader.length(payloadLength: length, masked: false) == expected.count)
        }
        var masked = ByteBuffer()
        WebSocketFrameHeader.write(opcode: .pong, payloadLength: 3, maskKey: [1, 2, 3, 4], into: &masked)
        #expect(Array(masked.readableBytesView) == [0x8A, 0x83, 1, 2, 3, 4])
    }
}
