import Libp2p
import NIOCore
import Testing

private func ascii(_ string: String) -> ByteBuffer {
    ByteBuffer(string: string)
}

private func concat(_ parts: ByteBuffer...) -> ByteBuffer {
    var out = ByteBuffer()
    for var part in parts { out.writeBuffer(&part) }
    return out
}

private func message(_ token: String) -> ByteBuffer {
    var out = ByteBuffer()
    Multistream.writeMessage(token, into: &out)
    return out
}

@Suite struct MultistreamMessageTests {
    // Fixtures from anchors-and-specs c.2 (multiformats/multistream-select README).
    @Test func headerEncoding() {
        #expect(message("/multistream/1.0.0") == hexBuffer("13 2f6d756c746973747265616d2f312e302e30 0a"))
    }

    @Test func noiseEncoding() {
        #expect(message("/noise") == hexBuffer("07 2f6e6f697365 0a"))
    }

    @Test func naAndLsEncoding() {
        #expect(message("na") == hexBuffer("03 6e 61 0a"))
        #expect(message("ls") == hexBuffer("03 6c 73 0a"))
    }

    @Test func muxerAndBitswapLengthPrefixes() {
        let yamux = message("/yamux/1.0.0")
        #expect(yamux.readableBytes == 14)
        #expect(yamux.getInteger(at: 0, as: UInt8.self) == 0x0d)
        #expect(yamux.getInteger(at: 13, as: UInt8.self) == 0x0a)
        let bitswap = message("/ipfs/bitswap/1.2.0")
        #expect(bitswap.getInteger(at: 0, as: UInt8.self) == 0x14)
        #expect(bitswap.readableBytes == 21)
    }
}

@Suite struct MultistreamListenerTests {
    /// kubo's dialer writes header, simultaneous-connect and /noise in one write
    /// (real-peers.md); the listener must answer header, na, /noise.
    @Test func kuboSecurityNegotiationInOneRead() throws {
        var listener = MultistreamListener(protocols: ["/noise"])
        let header = listener.start()
        #expect(header == message("/multistream/1.0.0"))
        let input = concat(message("/multistream/1.0.0"), message("/libp2p/simultaneous-connect"), message("/noise"))
        let action = try listener.receive(input)
        #expect(action == .selected(protocol: "/noise", write: concat(hexBuffer("03 6e 61 0a"), hexBuffer("07 2f6e6f697365 0a")),
                                    leftover: ByteBuffer()))
    }

    @Test func headerPrependedWhenStartWasNotCalled() throws {
        var listener = MultistreamListener(protocols: ["/noise"])
        let action = try listener.receive(concat(message("/multistream/1.0.0"), message("/noise")))
        #expect(action == .selected(protocol: "/noise", write: concat(message("/multistream/1.0.0"), message("/noise")),
                                    leftover: ByteBuffer()))
    }

    @Test func pipelinedApplicationDataIsLeftOverUntouched() throws {
        var listener = MultistreamListener(protocols: ["/ipfs/bitswap/1.2.0"])
        _ = listener.start()
        let payload = hexBuffer("2c 0a2a 0a28 ff00 0a 13")  // bytes that look like tokens must not be parsed
        let action = try listener.receive(concat(message("/multistream/1.0.0"), message("/ipfs/bitswap/1.2.0"), payload))
        guard case .selected(let proto, let write, let leftover) = action else {
            Issue.record("not selected: \(action)")
            return
        }
        #expect(proto == "/ipfs/bitswap/1.2.0")
        #expect(write == message("/ipfs/bitswap/1.2.0"))
        #expect(leftover == payload)
    }

    @Test func byteByByteFeedingGivesTheSameAnswer() throws {
        var listener = MultistreamListener(protocols: ["/yamux/1.0.0"])
        _ = listener.start()
        var input = concat(message("/multistream/1.0.0"), message("/mplex/6.7.0"), message("/yamux/1.0.0"), ascii("xy"))
        var written = ByteBuffer()
        var result: MultistreamAction?
        while input.readableBytes > 0 {
            let byte = input.readSlice(length: 1)!
            let action = try listener.receive(byte)
            switch action {
            case .needMoreData(let write):
                if var write { written.writeBuffer(&write) }
            case .selected(_, let write, let leftover):
                if var write { written.writeBuffer(&write) }
                result = action
                // Bytes after the final token: whatever this call returned plus what was not fed yet.
                var rest = leftover
                rest.writeBuffer(&input)
                #expect(rest == ascii("xy"))
            }
        }
        guard case .selected(let proto, _, _) = result else {
            Issue.record("never selected")
            return
        }
        #expect(proto == "/yamux/1.0.0")
        #expect(written == concat(message("na"), message("/yamux/1.0.0")))
    }

    @Test func firstMessageMustBeTheHeader() {
        var listener = MultistreamListener(protocols: ["/noise"])
        #expect(throws: MultistreamError.unexpectedHeader("/noise")) {
            try listener.receive(message("/noise"))
        }
        // After a failure the machine refuses further input.
        #expect(throws: MultistreamError.negotiationFinished) {
            try listener.receive(message("/multistream/1.0.0"))
        }
    }

    @Test func tokenCapIsCheckedFromTheLengthPrefixAlone() throws {
        var listener = MultistreamListener(protocols: ["/noise"])
        // 0x81 0x08 = 1025: rejected before any body byte arrives.
        #expect(throws: MultistreamError.tokenTooLarge(length: 1025, limit: 1024)) {
            try listener.receive(hexBuffer("81 08"))
        }
        // An unfinished prefix (continuation bit still set) that already exceeds the cap: the
        // reader does not wait for the rest of the varint.
        var other = MultistreamListener(protocols: ["/noise"])
        #expect(throws: MultistreamError.tokenTooLarge(length: 16383, limit: 1024)) {
            try other.receive(hexBuffer("ff ff"))
        }
        // 0x80 0x03 = 384 is within the cap: the reader waits for the body.
        var third = MultistreamListener(protocols: ["/noise"])
        #expect(try third.receive(hexBuffer("80 03")) == .needMoreData(write: message("/multistream/1.0.0")))
    }

    @Test func exactly1024ByteTokenIsAccepted() throws {
        let long = "/" + String(repeating: "a", count: 1022)  // 1023 + newline = 1024
        var listener = MultistreamListener(protocols: [long])
        _ = listener.start()
        let action = try listener.receive(concat(message("/multistream/1.0.0"), message(long)))
        guard case .selected(let proto, _, _) = action else {
            Issue.record("not selected")
            return
        }
        #expect(proto == long)
    }

    @Test func missingTrailingNewlineIsAnError() {
        var listener = MultistreamListener(protocols: ["/noise"])
        #expect(throws: MultistreamError.missingTrailingNewline) {
            try listener.receive(concat(hexBuffer("13"), ascii("/multistream/1.0.0 ")))
        }
    }

    @Test func emptyTokenIsAnError() {
        var listener = MultistreamListener(protocols: ["/noise"])
        #expect(throws: MultistreamError.emptyToken) {
            try listener.receive(hexBuffer("00"))
        }
    }

    @Test func lsListsProtocolsAsTheSpecDescribes() throws {
        var listener = MultistreamListener(protocols: ["/yamux/1.0.0", "/mplex/6.7.0"])
        _ = listener.start()
        let action = try listener.receive(concat(message("/multistream/1.0.0"), message("ls")))
        // uvarint(total) ‖ 0d "/yamux/1.0.0\n" ‖ 0d "/mplex/6.7.0\n" ‖ "\n"  → total 14 + 14 + 1 = 29 = 0x1d
        let expected = concat(hexBuffer("1d"), message("/yamux/1.0.0"), message("/mplex/6.7.0"), hexBuffer("0a"))
        #expect(action == .needMoreData(write: expected))
    }

    @Test func lsAnsweredWithNaLikeGoMultistream() throws {
        var listener = MultistreamListener(protocols: ["/yamux/1.0.0"], lsPolicy: .notAvailable)
        _ = listener.start()
        let action = try listener.receive(concat(message("/multistream/1.0.0"), message("ls")))
        #expect(action == .needMoreData(write: hexBuffer("03 6e 61 0a")))
    }
}

@Suite struct MultistreamDialerTests {
    @Test func firstWriteIsHeaderAndProposal() throws {
        var dialer = try MultistreamDialer(proposals: ["/noise"])
        #expect(dialer.start() == concat(message("/multistream/1.0.0"), hexBuffer("07 2f6e6f697365 0a")))
    }

    @Test func fallsBackAfterNaAgainstARealListener() throws {
        var dialer = try MultistreamDialer(proposals: ["/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0"])
        var listener = MultistreamListener(protocols: ["/ipfs/bitswap/1.1.0"])
        let toListener = dialer.start()
        let listenerAction = try listener.receive(concat(toListener))
        guard case .needMoreData(let answer?) = listenerAction else {
            Issue.record("listener: \(listenerAction)")
            return
        }
        #expect(answer == concat(message("/multistream/1.0.0"), message("na")))
        let dialerAction = try dialer.receive(answer)
        #expect(dialerAction == .needMoreData(write: message("/ipfs/bitswap/1.1.0")))
        let listenerFinal = try listener.receive(message("/ipfs/bitswap/1.1.0"))
        guard case .selected("/ipfs/bitswap/1.1.0", let echo?, _) = listenerFinal else {
            Issue.record("listener: \(listenerFinal)")
            return
        }
        var echoAndData = echo
        echoAndData.writeString("DATA")
        let final = try dialer.receive(echoAndData)
        #expect(final == .selected(protocol: "/ipfs/bitswap/1.1.0", write: nil, leftover: ascii("DATA")))
    }

    @Test func lazyDialerSendsDataWithTheProposal() throws {
        var dialer = try MultistreamDialer(proposals: ["/ipfs/bitswap/1.2.0"], lazy: true)
        let first = dialer.start(initialData: ascii("want"))
        #expect(first == concat(message("/multistream/1.0.0"), message("/ipfs/bitswap/1.2.0"), ascii("want")))
        var listener = MultistreamListener(protocols: ["/ipfs/bitswap/1.2.0"])
        let action = try listener.receive(first)
        guard case .selected(_, let write?, let leftover) = action else {
            Issue.record("listener: \(action)")
            return
        }
        #expect(leftover == ascii("want"))
        #expect(try dialer.receive(write) == .selected(protocol: "/ipfs/bitswap/1.2.0", write: nil, leftover: ByteBuffer()))
    }

    @Test func lazyDialerCannotFallBack() throws {
        var dialer = try MultistreamDialer(proposals: ["/a", "/b"], lazy: true)
        _ = dialer.start(initialData: ascii("x"))
        #expect(throws: MultistreamError.lazyProtocolRejected("/a")) {
            try dialer.receive(concat(message("/multistream/1.0.0"), message("na")))
        }
    }

    @Test func allRejected() throws {
        var dialer = try MultistreamDialer(proposals: ["/a", "/b"])
        _ = dialer.start()
        #expect(throws: MultistreamError.allProtocolsRejected(["/a", "/b"])) {
            try dialer.receive(concat(message("/multistream/1.0.0"), message("na"), message("na")))
        }
    }

    @Test func unexpectedAnswer() throws {
        var dialer = try MultistreamDialer(proposals: ["/a"])
        _ = dialer.start()
        #expect(throws: MultistreamError.unexpectedResponse(proposed: "/a", received: "/b")) {
            try dialer.receive(concat(message("/multistream/1.0.0"), message("/b")))
        }
    }

    @Test func listenerHeaderMustComeFirst() throws {
        var dialer = try MultistreamDialer(proposals: ["/a"])
        _ = dialer.start()
        #expect(throws: MultistreamError.unexpectedHeader("/a")) {
            try dialer.receive(message("/a"))
        }
    }

    @Test func emptyProposalListIsRejected() {
        #expect(throws: MultistreamError.noProtocolsToPropose) {
            _ = try MultistreamDialer(proposals: [])
        }
    }
}
