import ArgumentParser
import Redis

/// `--redis URL` and its tunables: where the state shared by every instance lives (peer scopes, CAR indexes).
struct RedisOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Redis holding state shared by every instance: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or a Redis Cluster: redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...].",
        discussion: "Without it, peer scopes and the CAR index cache live in this process only (fine for one instance). When Redis is unreachable, lookups go on without it (logged, counted in /metrics) and use it again once it answers. With redis+cluster:// the listed nodes are seeds (one reachable node is enough): the slot map is read from them, each master gets --redis-pool connections, and MOVED / ASK redirects are followed."))
    var redis: String?

    @Option(name: .customLong("redis-pool"), help: "Connections to Redis (commands pipeline on each).")
    var redisPool: Int = 4

    @Option(name: .customLong("redis-timeout"), help: "Seconds a Redis command may take before the lookup goes on without it.")
    var redisTimeout: Double = 0.5

    @Option(name: .customLong("redis-prefix"), help: "Prefix of every Redis key (several deployments can share one Redis).")
    var redisPrefix: String = "es:"

    @Option(name: .customLong("scope-ttl"), help: "Seconds a peer's scope (the CARs its roots resolved to) lives after its last use.")
    var scopeTTL: Double = 600

    @Option(name: .customLong("index-ttl"), help: "Seconds a CAR index stays in Redis after it was cached.")
    var indexTTL: Double = 86_400

    /// `--scope-ttl` as a duration (the in-process scope and the Redis one live equally long).
    var scopeLifetime: Duration { .milliseconds(Int64(scopeTTL * 1000)) }

    func validateRedis() throws {
        if let redis {
            do {
                _ = try RedisConfiguration(url: redis)
            } catch {
                throw ValidationError("--redis \(redis): \(error)")
            }
        }
        guard redisPool > 0, redisTimeout > 0, scopeTTL > 0, indexTTL > 0 else {
            throw ValidationError("--redis-pool, --redis-timeout, --scope-ttl and --index-ttl must be positive")
        }
    }

    /// The client, or nil without --redis. Connections are made on first use.
    func makeClient() throws -> RedisClient? {
        guard let redis else { return nil }
        var configuration = try RedisConfiguration(url: redis)
        configuration.poolSize = redisPool
        configuration.commandTimeout = .milliseconds(Int64(redisTimeout * 1000))
        configuration.connectTimeout = .milliseconds(Int64(max(redisTimeout, 1) * 1000))
        return RedisClient(configuration: configuration)
    }
}
