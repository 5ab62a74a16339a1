import Bitswap
import BlockStore
import EdgeswapServer
import Libp2p
import NIOHTTP1
import ObjectStorage
import Quota

/// The admin port's three endpoints over the parts of a running server.
struct AdminEndpoints: Sendable {
    let health: HealthMonitor
    let source: IndexedCARBlockSource
    let service: BitswapService
    let host: Libp2pHost
    /// The S3 client when the store is in S3 (its request counters are exported).
    let s3: S3Client?
    /// The quota gate when quotas are on.
    let quota: QuotaGate?

    func respond(_ method: HTTPMethod, _ path: String) async -> AdminResponse {
        guard method == .GET || method == .HEAD else {
            return AdminResponse(status: .methodNotAllowed, body: "only GET and HEAD\n")
        }
        switch path {
        case "/livez":
            return AdminResponse(body: "ok\n")
        case "/readyz":
            let report = await health.report()
            return AdminResponse(status: report.ready ? .ok : .serviceUnavailable, body: report.text)
        case "/metrics":
            return AdminResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: await metrics())
        default:
            return AdminResponse(status: .notFound, body: "unknown path \(path): use /livez, /readyz or /metrics\n")
        }
    }

    private func metrics() async -> String {
        let store = await source.statistics()
        let bitswap = service.statistics
        let ready = await health.report().ready
        var out = PrometheusText()
        out.add("edgeswap_ready", "gauge", "1 when every critical dependency answers (as /readyz).", ready ? 1 : 0)
        out.add("edgeswap_connections", "gauge", "Open libp2p connections.", host.connections.count)
        out.add("edgeswap_bitswap_sessions", "gauge", "Connections with a Bitswap engine.",
                await service.activeConnections())
        out.add("edgeswap_bitswap_messages_sent_total", "counter", "Bitswap messages sent.", bitswap.messagesSent)
        out.add("edgeswap_bitswap_blocks_sent_total", "counter", "Blocks sent.", bitswap.blocksSent)
        out.add("edgeswap_bitswap_block_bytes_sent_total", "counter", "Block bytes sent.", bitswap.blockBytesSent)
        out.add("edgeswap_bitswap_presences_sent_total", "counter", "HAVE and DONT_HAVE presences sent.",
                label: "type", [("have", bitswap.havesSent), ("dont_have", bitswap.dontHavesSent)])
        out.add("edgeswap_bitswap_refusals_total", "counter",
                "Wants refused (CID too long, hash not allowed, block too large, over a cap).", bitswap.refusals)
        out.add("edgeswap_store_index_loads_total", "counter", "CAR indexes read from satnav.", store.indexLoads)
        out.add("edgeswap_store_index_evictions_total", "counter", "CAR indexes evicted from memory.",
                store.indexEvictions)
        out.add("edgeswap_store_shared_index_hits_total", "counter", "CAR indexes found in the shared cache (Redis).",
                store.sharedIndexHits)
        out.add("edgeswap_store_shared_scope_reads_total", "counter", "Peer scopes read from Redis.",
                store.sharedScopeReads)
        out.add("edgeswap_store_shared_failures_total", "counter",
                "Redis calls that failed (lookups went on without the cache).", store.sharedStoreFailures)
        out.add("edgeswap_store_block_reads_total", "counter", "Ranged reads of CAR bytes (coalesced runs).",
                store.blockReads)
        out.add("edgeswap_store_bytes_read_total", "counter", "Bytes those reads returned.", store.bytesRead)
        out.add("edgeswap_store_blocks_served_total", "counter", "Blocks read and verified.", store.blocksServed)
        out.add("edgeswap_store_corrupt_blocks_total", "counter", "Blocks whose bytes did not match their CID.",
                store.corruptBlocks)
        out.add("edgeswap_store_negative_cache_hits_total", "counter", "Wants answered from the negative cache.",
                store.negativeCacheHits)
        out.add("edgeswap_store_listings_total", "counter", "dudewhere and blockmap listings.", store.listings)
        let cache = store.blockCache
        out.add("edgeswap_block_cache_requests_total", "counter",
                "Verified block cache look-ups (a hit costs no storage request and no hash).",
                label: "result", [("hit", cache.hits), ("miss", cache.misses)])
        out.add("edgeswap_block_cache_evictions_total", "counter", "Blocks evicted from the verified block cache.",
                cache.evictions)
        out.add("edgeswap_block_cache_bytes", "gauge", "Bytes held by the verified block cache.", cache.bytes)
        out.add("edgeswap_block_cache_blocks", "gauge", "Blocks held by the verified block cache.", cache.entries)
        out.add("edgeswap_bitswap_lookup_tasks", "gauge", "Lookup batches running, over every connection.",
                service.lookupTasks)
        let denials = service.denials.sorted { $0.key < $1.key }
        if !denials.isEmpty {
            out.add("edgeswap_bitswap_denied_wants_total", "counter",
                    "Wants denied by a denylist rule (answered as misses), by rule kind.",
                    label: "reason", denials.map { ($0.key, $0.value) })
        }
        if let quota {
            let q = quota.statistics
            out.add("edgeswap_quota_refused_batches_total", "counter", "Lookup batches refused: the peer was over its quota.",
                    q.refusedBatches)
            out.add("edgeswap_quota_refused_wants_total", "counter", "Wants in those batches.", q.refusedWants)
            out.add("edgeswap_quota_closed_connections_total", "counter", "Connections closed for a quota.",
                    q.closedConnections)
            out.add("edgeswap_quota_ledger_failures_total", "counter", "Quota ledger calls that failed (served anyway).",
                    q.ledgerFailures)
        }
        if let s3 {
            let counters = s3.statistics
            out.add("edgeswap_s3_requests_total", "counter", "HTTP requests sent to S3, retries included.",
                    counters.attempts)
            out.add("edgeswap_s3_retries_total", "counter", "S3 requests sent again after a 5xx, timeout or connection error.",
                    counters.retries)
        }
        return out.text
    }
}
