import Bitswap
import Multiformats
import NIOCore
import Testing

@Suite("Bitswap engine")
struct EngineTests {
    let small: [UInt8] = Array("hello".utf8)
    let large: [UInt8] = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) }

    /// kubo's sequence (real-peers.md): WANT_HAVE sendDontHave=false priority 2147483647 → HAVE;
    /// WANT_BLOCK sendDontHave=true → the block; CANCEL → nothing more.
    @Test func kuboSequence() throws {
        var source = MemoryBlockSource()
        let root = try source.add(large)
        var h = Harness(source: source)
        try h.receive([.init(cid: root, priority: .max, wantType: .have, sendDontHave: false)])
        #expect(h.sent.count == 1)
        #expect(h.sent[0].blockPresences == [.init(cid: root, type: .have)])
        #expect(h.sent[0].payload.isEmpty)
        #expect(h.lookupBatches.first?.requests == [BlockRequest(cid: root, wantType: .have, priority: .max)])
        try h.drain()
        try h.receive([.init(cid: root, priority: .max - 1, wantType: .block, sendDontHave: true)])
        try h.drain()
        #expect(h.sent.count == 2)
        #expect(h.sent[1].payload.count == 1)
        #expect(h.sent[1].payload[0].prefix == root.prefix)
        #expect(bytes(h.sent[1].payload[0].data) == large)
        #expect(h.sent[1].pendingBytes == 0)
        try h.receive([.init(cid: root, priority: 0, cancel: true)])
        try h.drain()
        #expect(h.sent.count == 2)
        #expect(h.engine.wantCount == 0)
        #expect(h.refusals.isEmpty)
    }

    @Test func smallBlockReplacesHave() throws {
        var source = MemoryBlockSource()
        let cid = try source.add(small)
        var h = Harness(source: source)
        try h.receive([.init(cid: cid, priority: 1, wantType: .have)])
        #expect(h.sent.count == 1)
        #expect(h.sent[0].blockPresences.isEmpty)
        #expect(bytes(h.sent[0].payload[0].data) == small)
        // With replacement off, a HAVE.
        var config = BitswapEngine.Configuration()
        config.replaceHaveWithBlockSize = 0
        var h2 = Harness(source: source, configuration: config)
        try h2.receive([.init(cid: cid, priority: 1, wantType: .have)])
        #expect(h2.sent[0].blockPresences == [.init(cid: cid, type: .have)])
    }

    @Test func missesWithAndWithoutSendDontHave() throws {
        let missing = try rawCID(Array("nobody has this".utf8))
        var h = Harness(source: MemoryBlockSource())
        try h.receive([.init(cid: missing, priority: 1, wantType: .have, sendDontHave: false)])
        #expect(h.sent.isEmpty)
        #expect(h.engine.wantCount == 0)
        try h.receive([.init(cid: missing, priority: 1, wantType: .block, sendDontHave: true)])
        #expect(h.sent.count == 1)
        #expect(h.sent[0].blockPresences == [.init(cid: missing, type: .dontHave)])
        // The exact DONT_HAVE bytes of c.7 (`22 28 0a24 <cid> 10 01` inside the frame).
        var out = ByteBuffer()
        BitswapMessage(blockPresences: h.sent[0].blockPresences).encodeFrame(into: &out)
        #expect(bytes(out) == hex("2a 22 28 0a24") + missing.bytes + hex("10 01"))
    }

    @Test func cancelBeforeLookupReturns() throws {
        var source = MemoryBlockSource()
        let cid = try source.add(large)
        var h = Harness(source: source)
        h.autoComplete = false
        try h.receive([.init(cid: cid, priority: 1, wantType: .block, sendDontHave: true)])
        #expect(h.pendingLookups.count == 1)
        try h.receive([.init(cid: cid, cancel: true)])
        try h.completeLookups()
        try h.drain()
        #expect(h.sent.isEmpty)
        #expect(h.engine.statistics.staleResults == 1)
    }

    @Test func cancelRemovesUnsentAnswer() throws {
        var source = MemoryBlockSource()
        let a = try source.add(large)
        let b = try source.add(large + [1])
        var h = Harness(source: source, configuration: {
            var c = BitswapEngine.Configuration()
            c.targetMessageSize = 1 // one block per message
            return c
        }())
        // Both resolve; only one message may be outstanding, so b waits in the ready queue.
        try h.receive([.init(cid: a, priority: 2), .init(cid: b, priority: 1)])
        #expect(h.sent.count == 1)
        #expect(h.sent[0].pendingBytes == Int32(large.count + 1))
        try h.receive([.init(cid: b, cancel: true)])
        try h.drain()
        #expect(h.sent.count == 1)
    }

    @Test func fullReplacesWantlist() throws {
        var source = MemoryBlockSource()
        let a = try source.add(large)
        let b = try source.add(large + [2])
        var h = Harness(source: source)
        h.autoComplete = false
        try h.receive([.init(cid: a, priority: 5)])
        #expect(h.engine.wantCount == 1)
        try h.receive([.init(cid: b, priority: 5)], full: true)
        #expect(h.engine.wantCount == 1)
        try h.completeLookups()
        try h.drain()
        let delivered = h.sent.flatMap { $0.payload.map { bytes($0.data) } }
        #expect(delivered == [large + [2]])
        #expect(h.engine.statistics.staleResults == 1)
    }

    @Test func priorityOrderFIFOAmongEquals() throws {
        var source = MemoryBlockSource()
        var cids: [CID] = []
        for i in 0..<6 { cids.append(try source.add(large + [UInt8(i)])) }
        var config = BitswapEngine.Configuration()
        config.targetMessageSize = 1
        var h = Harness(source: source, configuration: config)
        h.autoComplete = false
        let priorities: [Int32] = [1, 5, 3, 5, 1, 9]
        try h.receive(zip(cids, priorities).map { .init(cid: $0, priority: $1) })
        // Lookups are issued in priority order too.
        #expect(h.lookupBatches[0].requests.map(\.cid) == [cids[5], cids[1], cids[3], cids[2], cids[0], cids[4]])
        try h.completeLookups()
        try h.drain()
        let order = h.sent.flatMap { $0.payload.map { bytes($0.data).last! } }
        #expect(order == [5, 1, 3, 2, 0, 4])
    }

    @Test func identityCIDAnsweredWithoutStorage() throws {
        let cid = CID(codec: Multicodec.raw, multihash: Multihash(code: Multicodec.identity, digest: Array("inline".utf8)))
        var h = Harness(source: MemoryBlockSource())
        try h.receive([.init(cid: cid, priority: 1, wantType: .block)])
        #expect(h.lookupBatches.isEmpty)
        #expect(h.sent.count == 1)
        #expect(bytes(h.sent[0].payload[0].data) == Array("inline".utf8))
        #expect(h.sent[0].payload[0].prefix == hex("01 55 00 06"))
    }

    @Test func disallowedHashAndBadDigestRefused() throws {
        // sha3-256 (0x16) is not in Hashing.supported.
        let sha3 = CID(codec: Multicodec.raw, multihash: Multihash(code: 0x16, digest: [UInt8](repeating: 1, count: 32)))
        let shortDigest = CID(codec: Multicodec.raw, multihash: Multihash(code: Multicodec.sha2_256, digest: [1, 2, 3]))
        var h = Harness(source: MemoryBlockSource())
        try h.receive([.init(cid: sha3, priority: 1, sendDontHave: true), .init(cid: shortDigest, priority: 1)])
        #expect(h.refusals == [.hashNotAllowed(sha3), .badDigestLength(shortDigest)])
        #expect(h.lookupBatches.isEmpty && h.sent.isEmpty)
        #expect(h.engine.statistics.refusals == 2)
    }

    @Test func overLongCIDAndUnknownWantTypeCounted() throws {
        let long = hex("01 55 00 c801") + [UInt8](repeating: 0x61, count: 200)
        let body = hex("0a d3 01 0a d0 01 0a cd 01") + long
        let message = try BitswapMessage(decoding: buffer(body))
        var h = Harness(source: MemoryBlockSource())
        try h.receive(message)
        #expect(h.refusals == [.rejectedEntry(.cidTooLong(205))])
        #expect(h.lookupBatches.isEmpty)
    }

    @Test func blockOver2MiBRefused() throws {
        var source = MemoryBlockSource()
        let cid = try source.add([UInt8](repeating: 7, count: (2 << 20) + 1))
        var h = Harness(source: source)
        try h.receive([.init(cid: cid, priority: 1, sendDontHave: true)])
        #expect(h.refusals == [.blockTooLarge(cid, size: (2 << 20) + 1)])
        #expect(h.sent.first?.blockPresences == [.init(cid: cid, type: .dontHave)])
    }

    @Test func version110UsesPayloadWithoutPresences() throws {
        var source = MemoryBlockSource()
        let cid = try source.add(large)
        let missing = try rawCID([9, 9])
        var h = Harness(version: .v1_1_0, source: source)
        // Want types and sendDontHave do not exist in 1.1.0: both are treated as want-block, no DONT_HAVE.
        try h.receive([.init(cid: cid, priority: 1, wantType: .have), .init(cid: missing, priority: 1, sendDontHave: true)])
        try h.drain()
        #expect(h.sent.count == 1)
        #expect(h.sent[0].blockPresences.isEmpty && h.sent[0].blocks.isEmpty)
        #expect(h.sent[0].payload.map(\.prefix) == [cid.prefix])
        #expect(h.sent[0].pendingBytes == 0)
    }

    @Test func version100UsesBlocksField() throws {
        var source = MemoryBlockSource()
        let v1 = try source.add(large)
        let v0 = try CID(v0: v1.multihash)
        var h = Harness(version: .v1_0_0, source: source)
        try h.receive([.init(cid: v0, priority: 1)])
        #expect(h.sent.count == 1)
        #expect(h.sent[0].payload.isEmpty)
        #expect(h.sent[0].blocks.map(bytes) == [large])
        // The raw body is just `12 varint(len) data`.
        var out = ByteBuffer()
        h.sent[0].encodeBody(into: &out)
        #expect(Array(bytes(out).prefix(3)) == [0x12, 0x88, 0x27])
    }

    @Test func v0WantEchoedAsV0() throws {
        var source = MemoryBlockSource()
        let v1 = try source.add(large)
        let v0 = try CID(v0: v1.multihash)
        var h = Harness(source: source)
        try h.receive([.init(cid: v0, priority: 1, wantType: .have)])
        #expect(h.sent[0].blockPresences.first?.cid.bytes == v0.bytes)
        try h.drain()
        try h.receive([.init(cid: v0, priority: 1, wantType: .block)])
        try h.drain()
        #expect(h.sent[1].payload[0].prefix == hex("00 70 12 20"))
    }

    @Test func v0AndV1OfOneMultihashAreTwoWantsEachEchoedAsSent() throws {
        var source = MemoryBlockSource()
        let raw = try source.add(large)
        let v0 = try CID(v0: raw.multihash)
        let v1 = CID(codec: Multicodec.dagPB, multihash: raw.multihash)
        var h = Harness(source: source)
        try h.receive([.init(cid: v0, priority: 2, wantType: .have), .init(cid: v1, priority: 1, wantType: .have)])
        try h.drain()
        let echoed = h.sent.flatMap(\.blockPresences).map(\.cid.bytes)
        #expect(echoed.count == 2)
        #expect(Set(echoed) == Set([v0.bytes, v1.bytes]))
        // Want-blocks for both forms: the block twice, each with the prefix of the CID it answers.
        let before = h.sent.count
        try h.receive([.init(cid: v1, priority: 1, wantType: .block), .init(cid: v0, priority: 1, wantType: .block)])
        try h.drain()
        let prefixes = h.sent[before...].flatMap(\.payload).map(\.prefix)
        #expect(Set(prefixes) == Set([hex("00 70 12 20"), hex("01 70 12 20")]), "\(prefixes)")
    }

    @Test func packingHonoursTargetAndHardCap() throws {
        var source = MemoryBlockSource()
        var cids: [CID] = []
        // 45 blocks of 100 KiB: 4.6 MB in all, more than one 4 MiB message.
        for i in 0..<45 { cids.append(try source.add([UInt8](repeating: UInt8(i), count: 100 << 10))) }
        var config = BitswapEngine.Configuration()
        config.maxBufferedBytes = 64 << 20
        config.lookupBatchSize = 64
        config.targetMessageSize = 64 << 20 // only the hard cap applies
        var h = Harness(source: source, configuration: config)
        try h.receive(cids.enumerated().map { .init(cid: $1, priority: Int32(100 - $0)) })
        try h.drain()
        #expect(h.sent.flatMap(\.payload).count == 45)
        for m in h.sent { #expect(m.encodedSize + 4 <= 4 << 20) }
        #expect(h.sent.count == 2)
        #expect(h.sent[0].payload.count == 40)
        #expect(h.sent[0].pendingBytes == Int32(h.sent[1].payload.count * (100 << 10)))

        // With the default 256 KiB target: 100 KiB blocks go two per message.
        var h2 = Harness(source: source)
        try h2.receive(cids.prefix(6).map { .init(cid: $0, priority: 1) })
        try h2.drain()
        #expect(h2.sent.map { $0.payload.count } == [2, 2, 2])
    }

    @Test func manySmallBlocksBatchedInOneMessage() throws {
        var source = MemoryBlockSource()
        var cids: [CID] = []
        for i in 0..<20 { cids.append(try source.add([UInt8(i), 1, 2, 3])) }
        var h = Harness(source: source)
        try h.receive(cids.map { .init(cid: $0, priority: 1) })
        try h.drain()
        // Before any block is seen, a want-block is budgeted at 256 KiB (`initialBlockSizeEstimate`), so the 2 MiB
        // budget starts 8 of them; once the engine has seen that the blocks are tiny, the other 12 are looked up
        // together and travel in one message.
        #expect(h.sent.map { $0.payload.count } == [8, 12])

        // A budget that fits them all from the start: one message.
        var config = BitswapEngine.Configuration()
        config.maxBufferedBytes = 64 << 20
        var h2 = Harness(source: source, configuration: config)
        try h2.receive(cids.map { .init(cid: $0, priority: 1) })
        #expect(h2.sent.count == 1)
        #expect(h2.sent[0].payload.count == 20)
    }

    @Test func lookupsStopAtTheByteBudgetAndResumeAsAnswersAreSent() throws {
        var source = MemoryBlockSource()
        var cids: [CID] = []
        for i in 0..<16 { cids.append(try source.add([UInt8](repeating: UInt8(i), count: 256 << 10))) }
        var config = BitswapEngine.Configuration()
        config.maxBufferedBytes = 1 << 20
        var h = Harness(source: source, configuration: config)
        h.autoComplete = false
        try h.receive(cids.map { .init(cid: $0, priority: 1) })
        // 1 MiB at 256 KiB a block: four wants start, the other twelve wait.
        #expect(h.lookupBatches.flatMap(\.requests).count == 4)
        #expect(h.engine.wantCount == 16)
        try h.completeLookups()
        // Their answers are sent one message at a time (the writer has not taken the first), and the budget
        // is still full, so nothing more starts until the writer takes them.
        #expect(h.lookupBatches.flatMap(\.requests).count <= 8)
        h.autoComplete = true
        try h.completeLookups()
        try h.drain()
        #expect(h.sent.flatMap(\.payload).count == 16)
    }

    @Test func perPeerCapDropsLowestPriorities() throws {
        var config = BitswapEngine.Configuration()
        config.maxWantsPerPeer = 10
        // A budget that fits every want at once: this test is about which wants are kept, not about the budget.
        config.maxBufferedBytes = 64 << 20
        var h = Harness(source: MemoryBlockSource(), configuration: config)
        h.autoComplete = false
        var entries: [BitswapMessage.Entry] = []
        for i in 0..<15 { entries.append(.init(cid: try rawCID([UInt8(i)]), priority: Int32(i))) }
        try h.receive(entries)
        #expect(h.engine.wantCount == 10)
        #expect(h.refusals == [.peerWantlistFull(dropped: 5)])
        let asked = Set(h.lookupBatches.flatMap { $0.requests.map(\.priority) })
        #expect(asked == Set(5..<15))
    }

    @Test func perMessageCapInEngine() throws {
        var config = BitswapEngine.Configuration()
        config.maxWantsPerMessage = 3
        var h = Harness(source: MemoryBlockSource(), configuration: config)
        h.autoComplete = false
        var entries: [BitswapMessage.Entry] = []
        for i in 0..<5 { entries.append(.init(cid: try rawCID([UInt8(i), 7]), priority: Int32(10 - i))) }
        var body = ByteBuffer()
        BitswapMessage(wantlist: .init(entries: entries)).encodeBody(into: &body)
        let actions = try h.engine.receive(encoded: body)
        try h.handle(actions)
        #expect(h.refusals == [.rejectedEntry(.overCap(count: 2))])
        #expect(h.lookupBatches.flatMap { $0.requests.map(\.priority) } == [10, 9, 8])
        // Already-decoded messages get the same cap.
        var h2 = Harness(source: MemoryBlockSource(), configuration: config)
        h2.autoComplete = false
        try h2.receive(entries)
        #expect(h2.refusals == [.rejectedEntry(.overCap(count: 2))])
        #expect(h2.engine.wantCount == 3)
    }

    @Test func sourceFailureIsCountedAndTreatedAsMiss() throws {
        let cid = try rawCID([4, 5, 6])
        var h = Harness(source: MemoryBlockSource())
        h.autoComplete = false
        try h.receive([.init(cid: cid, priority: 1, sendDontHave: true)])
        let (id, _) = h.pendingLookups.removeFirst()
        let actions = h.engine.lookupFailed(id: id, reason: "redis down")
        try h.handle(actions)
        #expect(h.refusals == [.lookupFailed(cid, reason: "redis down")])
        #expect(h.sent.first?.blockPresences == [.init(cid: cid, type: .dontHave)])
    }

    @Test func memorySourceConformsAsync() async throws {
        var source = MemoryBlockSource()
        let cid = try source.add(small)
        let batch = BlockLookupBatch(peer: PeerContext(peerID: [1], connectionID: 2, protocolVersion: .v1_2_0),
                                     requests: [BlockRequest(cid: cid, wantType: .block, priority: 1)],
                                     replaceHaveWithBlockSize: 1024, maxBlockSize: 2 << 20)
        let any: any BlockSource = source
        let results = try await any.lookup(batch)
        guard case .block(let data)? = results[cid] else { Issue.record("expected a block"); return }
        #expect(bytes(data) == small)
    }
}
