import Foundation

// `make bench` (release build): each area prints its own figures. Name areas to run a subset:
//   edgeswap-bench multihash car
// The list of areas is the single place a new benchmark is registered.

let areas: [(name: String, run: () -> Void)] = [
    ("multihash", runMultihashBenchmarks),
    ("car", runCARBenchmarks),
    ("noise", runNoiseBenchmarks),
    ("mux", runMuxBenchmarks),
    ("websocket", runWebSocketBenchmarks),
    ("host", runHostBenchmarks),
    ("protocols", runProtocolsBenchmarks),
    ("bitswap", runBitswapBenchmarks),
    ("blockstore", runBlockStoreBenchmarks),
    // These two need a server: EDGESWAP_S3_ENDPOINT/EDGESWAP_S3_BUCKET (+ AWS_*) and EDGESWAP_REDIS_URL;
    // without them they say so and return. Loadtest/storage-bench.sh measures the whole S3 + Redis path.
    ("s3", runS3Benchmarks),
    ("redis", runRedisBenchmarks),
]

let requested = Set(CommandLine.arguments.dropFirst())
let unknown = requested.subtracting(areas.map(\.name))
if !unknown.isEmpty {
    print("unknown benchmark area(s): \(unknown.sorted().joined(separator: ", ")); known: \(areas.map(\.name).joined(separator: ", "))")
    exit(2)
}
for area in areas where requested.isEmpty || requested.contains(area.name) {
    print("== \(area.name)")
    area.run()
}
