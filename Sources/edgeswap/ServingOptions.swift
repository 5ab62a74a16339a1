import ArgumentParser
import Bitswap
import BlockStore

/// The Bitswap engine's and the block source's tunables, as `serve` options. Defaults are the library's.
struct ServingOptions: ParsableArguments {
    @Option(name: .customLong("max-wants-per-message"),
            help: "Wantlist entries kept from one message; past it the lowest priorities are dropped (boxo: 1024).")
    var maxWantsPerMessage: Int = BitswapEngine.Configuration().maxWantsPerMessage

    @Option(name: .customLong("max-wants-per-peer"),
            help: "Wants held per connection; past it the lowest priorities are dropped (boxo: 1024).")
    var maxWantsPerPeer: Int = BitswapEngine.Configuration().maxWantsPerPeer

    @Option(name: .customLong("have-as-block-max"),
            help: "A want-have for a block of at most this many bytes is answered with the block itself (boxo: 1024; 0: never).")
    var haveAsBlockMax: Int = BitswapEngine.Configuration().replaceHaveWithBlockSize

    @Option(name: .customLong("max-block-size"),
            help: "Largest block served, in bytes; larger ones are refused and counted (at most 2097152, the spec's bound).")
    var maxBlockSize: Int = BitswapEngine.Configuration().maxBlockSize

    @Option(name: .customLong("message-target-size"),
            help: "Bytes packed into one Bitswap response before a new message starts (the 4 MiB message cap always holds).")
    var messageTargetSize: Int = BitswapEngine.Configuration().targetMessageSize

    @Option(name: .customLong("lookup-batch"), help: "CIDs looked up together (adjacent blocks of one CAR become one read).")
    var lookupBatch: Int = BitswapEngine.Configuration().lookupBatchSize

    @Option(name: .customLong("lookup-concurrency"), help: "Lookup batches in flight per connection.")
    var lookupConcurrency: Int = BitswapEngine.Configuration().maxConcurrentLookups

    @Option(name: .customLong("max-buffered-bytes"),
            help: "Per connection byte budget of queued answers: no new lookups while this many looked-up block bytes wait to be sent (a peer that stops reading holds at most this, plus the batches in flight, one message and the stream's write buffer; then its wants wait).")
    var maxBufferedBytes: Int = BitswapEngine.Configuration().maxBufferedBytes

    @Option(name: .customLong("index-cache-mib"), help: "MiB of decoded CAR indexes kept in memory (least recently used evicted).")
    var indexCacheMiB: Int = IndexedCARBlockSourceSettings().indexCacheBytes >> 20

    @Option(name: .customLong("block-cache-mib"),
            help: "MiB of verified blocks kept in memory and served again without a storage read or a hash (least recently used evicted); 0 turns the cache off.")
    var blockCacheMiB: Int = IndexedCARBlockSourceSettings().blockCacheBytes >> 20

    @Option(name: .customLong("coalesce-gap"),
            help: "Wanted sections of one CAR at most this many bytes apart are read with one ranged read. Default 64 KiB, 512 KiB with S3.")
    var coalesceGap: Int?

    @Option(name: .customLong("max-coalesced-read"),
            help: "Largest single ranged read, in bytes (a block waits for its whole read: smaller means lower latency, more reads).")
    var maxCoalescedRead: Int = Int(IndexedCARBlockSourceSettings().maxCoalescedRead)

    @Option(name: .customLong("negative-cache-ttl"), help: "Seconds a block found nowhere is answered as missing without asking the store.")
    var negativeCacheTTL: Double = 5

    @Option(name: .customLong("location-cache-ttl"),
            help: "Seconds a root → CARs (dudewhere) or block → CARs (blockmap) listing is reused.")
    var locationCacheTTL: Double = 30

    func validateServing() throws {
        let positive: [(String, Int)] = [
            ("--max-wants-per-message", maxWantsPerMessage), ("--max-wants-per-peer", maxWantsPerPeer),
            ("--max-block-size", maxBlockSize), ("--message-target-size", messageTargetSize),
            ("--lookup-batch", lookupBatch), ("--lookup-concurrency", lookupConcurrency),
            ("--max-buffered-bytes", maxBufferedBytes), ("--index-cache-mib", indexCacheMiB),
            ("--max-coalesced-read", maxCoalescedRead),
        ]
        for (name, value) in positive where value <= 0 { throw ValidationError("\(name) must be positive") }
        guard blockCacheMiB >= 0 else { throw ValidationError("--block-cache-mib cannot be negative") }
        guard haveAsBlockMax >= 0, (coalesceGap ?? 0) >= 0, negativeCacheTTL >= 0, locationCacheTTL >= 0 else {
            throw ValidationError("--have-as-block-max, --coalesce-gap and the cache TTLs cannot be negative")
        }
        guard maxBlockSize <= BitswapLimits.maxBlockSize else {
            throw ValidationError("--max-block-size is at most \(BitswapLimits.maxBlockSize)")
        }
        guard messageTargetSize < BitswapLimits.maxMessageSize else {
            throw ValidationError("--message-target-size must be below the \(BitswapLimits.maxMessageSize)-byte message cap")
        }
    }

    var engine: BitswapEngine.Configuration {
        var configuration = BitswapEngine.Configuration()
        configuration.maxWantsPerMessage = maxWantsPerMessage
        configuration.maxWantsPerPeer = maxWantsPerPeer
        configuration.replaceHaveWithBlockSize = haveAsBlockMax
        configuration.maxBlockSize = maxBlockSize
        configuration.targetMessageSize = messageTargetSize
        configuration.lookupBatchSize = lookupBatch
        configuration.maxConcurrentLookups = lookupConcurrency
        configuration.maxBufferedBytes = maxBufferedBytes
        return configuration
    }

    /// The block source settings; `remote` (an S3 store) widens the default coalescing gap, since a round
    /// trip to S3 costs more than reading a few hundred KiB extra in the same GET.
    func source(remote: Bool) -> IndexedCARBlockSourceSettings {
        var settings = IndexedCARBlockSourceSettings()
        settings.indexCacheBytes = indexCacheMiB << 20
        settings.blockCacheBytes = blockCacheMiB << 20
        settings.coalesceGap = UInt64(coalesceGap ?? (remote ? 512 << 10 : 64 << 10))
        settings.maxCoalescedRead = UInt64(maxCoalescedRead)
        settings.maxBlockSize = maxBlockSize
        settings.negativeCacheTTL = .milliseconds(Int64(negativeCacheTTL * 1000))
        settings.locationCacheTTL = .milliseconds(Int64(locationCacheTTL * 1000))
        return settings
    }
}
