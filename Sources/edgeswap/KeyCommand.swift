import ArgumentParser
import EdgeswapServer
import Libp2p

/// `edgeswap key`: create and inspect the server's libp2p identity.
struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Create and inspect libp2p identity keys.",
        subcommands: [New.self, Show.self, ImportJSON.self])

    /// `edgeswap key new --output FILE [--type ed25519|rsa|ecdsa] [--force]`.
    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a key and write it as a libp2p PrivateKey protobuf (the `ipfs key export` format).",
            discussion: "The file is created with mode 0600. The new peer ID is printed.")

        @Option(name: .long, help: "File to write.")
        var output: String

        @Option(name: .long, help: "Key type: ed25519 (default), rsa (2048 bits) or ecdsa (P-256).")
        var type: String = "ed25519"

        @Flag(name: .long, help: "Replace an existing file.")
        var force = false

        func run() throws {
            guard let keyType = IdentityKeyFiles.GeneratedType(rawValue: type.lowercased()) else {
                throw ValidationError("unknown key type \(type): use ed25519, rsa or ecdsa")
            }
            let key = try IdentityKeyFiles.generate(keyType)
            try IdentityKeyFiles.write(key, to: output, force: force)
            print(key.peerID)
        }
    }

    /// `edgeswap key show FILE [--cid]`.
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the peer ID of a key file (PrivateKey protobuf or PEER_ID_JSON).")

        @Argument(help: "The key file.")
        var file: String

        @Flag(name: .long, help: "Print the CIDv1 libp2p-key form instead of the base58 peer ID.")
        var cid = false

        func run() throws {
            print(IdentityKeyFiles.describe(try IdentityKeyFiles.read(file), cid: cid))
        }
    }

    /// `edgeswap key import-json JSON --output FILE [--force]`.
    struct ImportJSON: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-json",
            abstract: "Convert a Hoverboard PEER_ID_JSON file to a PrivateKey protobuf key file.")

        @Argument(help: "The PEER_ID_JSON file.")
        var file: String

        @Option(name: .long, help: "File to write.")
        var output: String

        @Flag(name: .long, help: "Replace an existing file.")
        var force = false

        func run() throws {
            let key = try PrivateKey(peerIDJSONFile: file)
            try IdentityKeyFiles.write(key, to: output, force: force)
            print(key.peerID)
        }
    }
}
