// swift-tools-version: 6.1
// edgeswap: a stateless edge Bitswap server. Module map and data flow: ARCHITECTURE.md.
import PackageDescription

/// Every target compiles in Swift 6 language mode with strict concurrency; these upcoming
/// features keep imports explicit and existentials visible.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// BLAKE3AVX2 is compiled for AVX2 (`-Xcc -mavx2` sets the target features Swift's code generator uses
/// too); Multiformats enters it only after checking the CPU at run time, so the binary still runs on any
/// x86-64. The flag is x86-only, hence the host check (Package.swift is evaluated on the build host).
#if arch(x86_64)
// `-O` here too: the eight-lane kernel is leaf code nobody steps through, and unoptimized SIMD is so slow that debug
// builds (`make run`, `make test`) spent tens of seconds of the cooperative pool in it (the last `-O` flag wins).
let avx2Settings: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-mavx2", "-O"])]
#else
let avx2Settings: [SwiftSetting] = []
#endif

let package = Package(
    name: "edgeswap",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "edgeswap", targets: ["edgeswap"]),
        .executable(name: "edgeswap-bench", targets: ["EdgeswapBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // secp256k1 signature verification (libp2p KeyType 2): swift-crypto has no secp256k1 curve.
        .package(url: "https://github.com/attaswift/BigInt.git", from: "6.0.1"),
        // The S3 client of ObjectStorage (connection pool, timeouts, streaming bodies).
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        .target(
            name: "Multiformats",
            dependencies: ["BLAKE3AVX2", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strictSettings
        ),
        // The eight-lane BLAKE3 compression (SIMD8<UInt32>), built for AVX2 and called only where the CPU has it.
        .target(name: "BLAKE3AVX2", swiftSettings: strictSettings + avx2Settings),
        .target(
            name: "CAR",
            dependencies: ["Multiformats"],
            swiftSettings: strictSettings
        ),
        // Hand-written protobuf wire format for the small fixed schemas (dag-pb, UnixFS, keys, Noise, identify).
        .target(name: "ProtobufWire", swiftSettings: strictSettings),
        .target(
            name: "UnixFS",
            dependencies: ["Multiformats", "ProtobufWire"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "ObjectStorage",
            dependencies: [
                "Multiformats",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        // hiredis (libhiredis-dev): only its RESP reply parser and command formatter; NIO does the I/O.
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .target(
            name: "Redis",
            dependencies: [
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "BlockStore",
            dependencies: [
                "Multiformats", "CAR", "ObjectStorage", "Bitswap", "Redis",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "Libp2p",
            dependencies: [
                "Multiformats", "ProtobufWire",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "BigInt", package: "BigInt"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "Bitswap",
            dependencies: ["Multiformats", "ProtobufWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // Per-peer quotas (storage subrequests, bytes per window) in front of any BlockSource; ledger in
        // process or in Redis.
        .target(
            name: "Quota",
            dependencies: [
                "Bitswap", "Multiformats", "Redis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // IPIP-383 compact denylists: parser, an immutable matcher snapshot, a store that reloads on demand
        // and when a file changes. sha2-256 comes through Multiformats' `Hashing` (swift-crypto).
        .target(
            name: "Denylist",
            dependencies: [
                "Multiformats",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "EdgeswapServer",
            dependencies: [
                "Multiformats", "CAR", "ObjectStorage", "Libp2p", "UnixFS", "Bitswap", "BlockStore", "Denylist",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // `edgeswap load`: Bitswap clients (a sans-IO fetch session and its driver) for load tests.
        .target(
            name: "EdgeswapLoad",
            dependencies: [
                "Multiformats", "Bitswap", "UnixFS", "Libp2p",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "edgeswap",
            dependencies: [
                "EdgeswapServer", "EdgeswapLoad", "Multiformats", "CAR", "ObjectStorage", "Libp2p", "UnixFS", "BlockStore",
                "Bitswap", "Redis", "Quota", "Denylist",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "EdgeswapBench",
            dependencies: [
                "Multiformats", "CAR", "Libp2p", "EdgeswapServer", "Bitswap", "BlockStore", "ObjectStorage", "Redis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "MultiformatsTests", dependencies: ["Multiformats", "EdgeswapTestSupport"],
                    swiftSettings: strictSettings),
        .testTarget(name: "CARTests", dependencies: ["CAR", "Multiformats"], swiftSettings: strictSettings),
        .testTarget(name: "UnixFSTests", dependencies: ["UnixFS", "Multiformats"], swiftSettings: strictSettings),
        .testTarget(name: "ObjectStorageTests", dependencies: [
            "ObjectStorage", "Multiformats", "EdgeswapTestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: strictSettings),
        .testTarget(name: "Libp2pTests", dependencies: [
            "Libp2p", "Multiformats",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "BigInt", package: "BigInt"),
        ], swiftSettings: strictSettings),
        .testTarget(name: "BitswapTests", dependencies: [
            "Bitswap", "Multiformats", .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: strictSettings),
        // Process harness shared by the tests that start real servers and peers (kubo, py-libp2p, SeaweedFS,
        // redis-server): child processes stopped by PID, free loopback ports, scratch directories, the venv.
        .target(name: "EdgeswapTestSupport", path: "Tests/TestSupport", swiftSettings: strictSettings),
        // Interop harness: starts kubo / py-libp2p (Tests/Interop/*.py) in a loopback-only namespace.
        .testTarget(name: "InteropTests", dependencies: ["EdgeswapTestSupport", "CAR", "Multiformats", "ObjectStorage"],
                    swiftSettings: strictSettings),
        .testTarget(name: "QuotaTests", dependencies: [
            "Quota", "Bitswap", "Multiformats", "Redis", "EdgeswapTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: strictSettings),
        .testTarget(name: "DenylistTests", dependencies: [
            "Denylist", "Multiformats", "EdgeswapTestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strictSettings),
        .testTarget(name: "BlockStoreTests", dependencies: [
            "BlockStore", "Bitswap", "Multiformats", "CAR", "ObjectStorage", "EdgeswapServer", "UnixFS",
            "EdgeswapTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: strictSettings),
        .testTarget(name: "RedisTests", dependencies: [
            "Redis", "BlockStore", "Quota", "Multiformats", "EdgeswapTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: strictSettings),
        .testTarget(name: "EdgeswapCLITests", dependencies: [
            "EdgeswapServer", "EdgeswapLoad", "EdgeswapTestSupport", "Libp2p", "CAR", "Multiformats", "UnixFS", "ObjectStorage",
            "Bitswap", "BlockStore", "Denylist",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ],
                    swiftSettings: strictSettings),
    ],
    swiftLanguageModes: [.v6]
)
