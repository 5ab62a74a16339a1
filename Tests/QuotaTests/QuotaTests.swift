import Bitswap
import EdgeswapTestSupport
import Multiformats
import NIOConcurrencyHelpers
import NIOCore
import Quota
import Redis
import Testing

/// A ledger that is down.
private struct BrokenLedger: QuotaLedger {
    struct Down: Error {}
    func charge(peer: String, window: Int64, windowLength: Duration, subrequests: Int, bytes: Int) async throws
        -> QuotaUsage { throw Down() }
}

private func cid(_ n: Int) throws -> CID {
    let digest = try Array("block \(n)".utf8).withUnsafeBytes { try Multihash.compute(code: Multicodec.sha2_256, of: $0) }
    return CID(codec: Multicodec.raw, multihash: digest)
}

private func batch(_ cids: [CID], peer: UInt8 = 1) -> BlockLookupBatch {
    BlockLookupBatch(peer: PeerContext(peerID: [0x00, 0x02, 0x08, peer], connectionID: UInt64(peer), protocolVersion: .v1_2_0),
                     requests: cids.map { BlockRequest(cid: $0, wantType: .block, priority: 1) },
                     replaceHaveWithBlockSize: 0, maxBlockSize: 2 << 20)
}

/// A settable wall clock.
private final class TestClock: Sendable {
    let now = NIOLockedValueBox<Int64>(1_700_000_000_000)
    var read: @Sendable () -> Int64 { { [now] in now.withLockedValue { $0 } } }
}

@Suite struct QuotaPolicyTests {
    @Test func windowsAreAlignedToTheEpoch() {
        let policy = QuotaPolicy(window: .seconds(60), maxBytes: 10)
        #expect(policy.windowIndex(atUnixMilliseconds: 0) == 0)
        #expect(policy.windowIndex(atUnixMilliseconds: 59_999) == 0)
        #expect(policy.windowIndex(atUnixMilliseconds: 60_000) == 1)
        #expect(QuotaPolicy(window: .milliseconds(1500), maxBytes: 1).windowIndex(atUnixMilliseconds: 3_000) == 2)
    }

    @Test func exhaustionIsReachingEitherCap() {
        let policy = QuotaPolicy(maxSubrequests: 5, maxBytes: 100)
        #expect(!policy.isExhausted(QuotaUsage(subrequests: 4, bytes: 99)))
        #expect(policy.isExhausted(QuotaUsage(subrequests: 5, bytes: 0)))
        #expect(policy.isExhausted(QuotaUsage(subrequests: 0, bytes: 100)))
        #expect(!QuotaPolicy().isEnabled)
        #expect(!QuotaPolicy().isExhausted(QuotaUsage(subrequests: .max, bytes: .max)))
    }
}

@Suite struct QuotaGateTests {
    /// Admits `batch` and, when admitted, charges it as a lookup that cost `subrequests` and returned one block
    /// of `blockSize` bytes per CID: what the Bitswap service does around each lookup.
    private func serve(_ gate: QuotaGate, _ batch: BlockLookupBatch, subrequests: Int = 1, blockSize: Int = 1000)
        async -> BitswapEngine.Admission
    {
        let decision = await gate.admit(batch)
        if decision == .admit {
            await gate.charge(batch, subrequests: subrequests, bytes: blockSize * batch.requests.count)
        }
        return decision
    }

    private func isRefusal(_ decision: BitswapEngine.Admission) -> Bool {
        if case .refuse = decision { true } else { false }
    }

    @Test func bytesCapTurnsFurtherWantsIntoMissesUntilTheWindowEnds() async throws {
        let clock = TestClock()
        let gate = QuotaGate(policy: QuotaPolicy(window: .seconds(60), maxBytes: 2500), ledger: LocalQuotaLedger(),
                             unixMilliseconds: clock.read)
        // 1,000, 2,000, then 3,000 bytes: each batch started under the cap, so each is served.
        for n in 0..<3 { #expect(await serve(gate, batch([try cid(n)])) == .admit) }
        // Now over it: refused, so the engine answers every want as a miss (DONT_HAVE where asked).
        #expect(isRefusal(await serve(gate, batch([try cid(3), try cid(4)]))))
        #expect(gate.statistics.refusedBatches == 1)
        #expect(gate.statistics.refusedWants == 2)
        // Another peer has its own quota.
        #expect(await serve(gate, batch([try cid(3)], peer: 2)) == .admit)
        // The next window starts afresh.
        clock.now.withLockedValue { $0 += 60_000 }
        #expect(await serve(gate, batch([try cid(3)])) == .admit)
    }

    @Test func subrequestCapCountsWhatTheStorageLayerMetered() async throws {
        let gate = QuotaGate(policy: QuotaPolicy(maxSubrequests: 5), ledger: LocalQuotaLedger())
        #expect(await serve(gate, batch([try cid(0)]), subrequests: 3) == .admit)  // 3
        #expect(await serve(gate, batch([try cid(1)]), subrequests: 3) == .admit)  // 6
        #expect(isRefusal(await serve(gate, batch([try cid(2)]), subrequests: 3)))
    }

    @Test func closeActionIsAnAdmissionDecisionNotAnError() async throws {
        let gate = QuotaGate(policy: QuotaPolicy(maxBytes: 1, action: .close), ledger: LocalQuotaLedger())
        #expect(await serve(gate, batch([try cid(0)])) == .admit)
        guard case .close(let reason) = await serve(gate, batch([try cid(1)])) else {
            Issue.record("expected a close decision")
            return
        }
        #expect(reason.contains("quota exceeded"))
        #expect(gate.statistics.closedConnections == 1)
    }

    @Test func aLedgerOutageServesAndIsCounted() async throws {
        let gate = QuotaGate(policy: QuotaPolicy(maxBytes: 1), ledger: BrokenLedger())
        for n in 0..<3 { #expect(await serve(gate, batch([try cid(n)])) == .admit) }
        #expect(gate.statistics.ledgerFailures == 6)  // a read and a charge per batch
        #expect(gate.statistics.refusedBatches == 0)
    }

    @Test func theEngineTurnsACloseDecisionIntoACloseActionAndAnswersNothingMore() throws {
        var engine = BitswapEngine(peer: PeerContext(peerID: [1], connectionID: 1, protocolVersion: .v1_2_0))
        var message = BitswapMessage()
        message.wantlist = .init(entries: [.init(cid: try cid(0), priority: 1, wantType: .block, sendDontHave: true)])
        let actions = engine.receive(message)
        guard case .lookup(let id, _) = actions.first else {
            Issue.record("expected a lookup, got \(actions)")
            return
        }
        let closed = engine.admission(.close(reason: "over quota"), for: id)
        guard closed.count == 1, case .close(let reason) = closed[0] else {
            Issue.record("expected one close action, got \(closed)")
            return
        }
        #expect(reason == "over quota")
        #expect(engine.wantCount == 0)
        #expect(engine.receive(message).isEmpty)
        #expect(engine.lookupCompleted(id: id, results: [:]).isEmpty)
    }

    @Test func theEngineAnswersARefusedBatchAsMisses() throws {
        var engine = BitswapEngine(peer: PeerContext(peerID: [1], connectionID: 1, protocolVersion: .v1_2_0))
        var message = BitswapMessage()
        message.wantlist = .init(entries: [.init(cid: try cid(0), priority: 1, wantType: .block, sendDontHave: true)])
        guard case .lookup(let id, _) = engine.receive(message).first else {
            Issue.record("expected a lookup")
            return
        }
        let actions = engine.admission(.refuse(reason: "over quota"), for: id)
        guard case .send(let frame) = actions.last else {
            Issue.record("expected a DONT_HAVE frame, got \(actions)")
            return
        }
        var decoder = BitswapFrameDecoder(maxMessageSize: 1 << 20)
        decoder.append(frame.contiguous())
        let body = try #require(try decoder.nextMessage())
        let reply = try BitswapMessage(decoding: body)
        #expect(reply.blockPresences.map(\.type) == [.dontHave])
    }
}

@Suite struct RedisQuotaLedgerTests {
    @Test func instancesSharingRedisShareTheCountersWhichExpire() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let first = RedisClient(configuration: try RedisConfiguration(url: server.url))
        let second = RedisClient(configuration: try RedisConfiguration(url: server.url))
        let a = RedisQuotaLedger(client: first)
        let b = RedisQuotaLedger(client: second)
        let window: Duration = .seconds(60)
        #expect(try await a.charge(peer: "12D3KooWpeer", window: 7, windowLength: window, subrequests: 2, bytes: 100)
                == QuotaUsage(subrequests: 2, bytes: 100))
        #expect(try await b.charge(peer: "12D3KooWpeer", window: 7, windowLength: window, subrequests: 1, bytes: 50)
                == QuotaUsage(subrequests: 3, bytes: 150))
        // Another window, another peer: separate counters.
        #expect(try await b.charge(peer: "12D3KooWpeer", window: 8, windowLength: window, subrequests: 1, bytes: 1)
                == QuotaUsage(subrequests: 1, bytes: 1))
        #expect(try await a.charge(peer: "other", window: 7, windowLength: window, subrequests: 0, bytes: 0)
                == QuotaUsage())
        let key = a.key(peer: "12D3KooWpeer", window: 7)
        #expect(key == "es:q:{12D3KooWpeer}:7")
        let ttl = try #require(try await first.send(["PTTL", RedisArgument(key)]).integer)
        #expect(ttl > 60_000 && ttl <= 120_000, "two windows: \(ttl)")
        await first.shutdown()
        await second.shutdown()
    }
}
