import ArgumentParser

/// The `edgeswap` command line: the server and its offline tools for CAR files and indexes.
@main
struct Edgeswap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgeswap",
        abstract: "A stateless edge Bitswap server that serves blocks from indexed CAR files.",
        discussion: """
            IPFS peers dial edgeswap over WebSocket and fetch blocks with Bitswap; the blocks come from CARv1/CARv2 \
            files located through CARv2 MultihashIndexSorted indexes. The subcommands below build and inspect \
            those files, run the server and manage its identity key.
            """,
        subcommands: [
            ServeCommand.self, IngestCommand.self, IndexCommand.self, InspectCommand.self, KeyCommand.self,
            FixturesCommand.self, LoadCommand.self,
        ]
    )
}
