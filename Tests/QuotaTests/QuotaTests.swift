import Bitswap
import BlockStore
import EdgeswapTestSupport
import Multiformats
import NIOConcurrencyHelpers
import NIOCore
import Quota
import Redis
import Testing

/// A source whose every lookup costs `subrequestsPerLookup` storage subrequests and returns every CID as a
/// block of `blockSize` bytes.
private struct CostlySource: BlockSource {
    var subrequestsPerLookup = 1
    var blockSize = 1000

    func lookup(_ batch: BlockLookupBatch) async throws -> [CID: BlockLookupResult] {
        StorageMeter.current?.add(subrequestsPerLookup)
        var out: [CID: BlockLookupResult] = [:]
        for request in batch.requests { out[request.cid] = .block(ByteBuffer(repeating: 7, count: blockSize)) }
        return out
    }

    func missingBlocks(under root: CID, have: Set<Multihash>, peer: PeerContext) async throws -> [Multihash] { [] }
}

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

@Suite struct QuotaLimitedBlockSourceTests {
    @Test func bytesCapTurnsFurtherWantsIntoMissesUntilTheWindowEnds() async throws {
        let clock = TestClock()
        let gate = QuotaLimitedBlockSource(base: CostlySource(blockSize: 1000),
                                           policy: QuotaPolicy(window: .seconds(60), maxBytes: 2500),
                                           ledger: LocalQuotaLedger(), unixMilliseconds: clock.read)
        // 1,000, 2,000, then 3,000 bytes: each batch started under the cap, so each is served.
        for n in 0..<3 { #expect(try await gate.lookup(batch([try cid(n)])).count == 1) }
        // Now over it: a miss for everything (the engine sends DONT_HAVE where asked).
        #expect(try await gate.lookup(batch([try cid(3), try cid(4)])).isEmpty)
        #expect(gate.statistics.refusedBatches == 1)
        #expect(gate.statistics.refusedWants == 2)
        // Another peer has its own quota.
        #expect(try await gate.lookup(batch([try cid(3)], peer: 2)).count == 1)
        // The next window starts afresh.
        clock.now.withLockedValue { $0 += 60_000 }
        #expect(try await gate.lookup(batch([try cid(3)])).count == 1)
    }

    @Test func subrequestCapCountsWhatTheSourceMetered() async throws {
        let gate = QuotaLimitedBlockSource(base: CostlySource(subrequestsPerLookup: 3),
                                           policy: QuotaPolicy(maxSubrequests: 5), ledger: LocalQuotaLedger())
        #expect(try await gate.lookup(batch([try cid(0)])).count == 1)  // 3
        #expect(try await gate.lookup(batch([try cid(1)])).count == 1)  // 6
        #expect(try await gate.lookup(batch([try cid(2)])).isEmpty)
    }

    @Test func closeActionThrowsAConnectionClosingError() async throws {
        let gate = QuotaLimitedBlockSource(base: CostlySource(), policy: QuotaPolicy(maxBytes: 1, action: .close),
                                           ledger: LocalQuotaLedger())
        _ = try await gate.lookup(batch([try cid(0)]))
        await #expect(throws: QuotaExceeded.self) { _ = try await gate.lookup(batch([try cid(1)])) }
        do {
            _ = try await gate.lookup(batch([try cid(1)]))
        } catch {
            #expect(error is any ConnectionClosingError)
        }
        #expect(gate.statistics.closedConnections == 2)
    }

    @Test func aLedgerOutageServesAndIsCounted() async throws {
        let gate = QuotaLimitedBlockSource(base: CostlySource(), policy: QuotaPolicy(maxBytes: 1), ledger: BrokenLedger())
        for n in 0..<3 { #expect(try await gate.lookup(batch([try cid(n)])).count == 1) }
        #expect(gate.statistics.ledgerFailures == 6)  // a read and a charge per batch
        #expect(gate.statistics.refusedBatches == 0)
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
