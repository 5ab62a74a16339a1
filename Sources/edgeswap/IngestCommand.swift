import ArgumentParser
import EdgeswapServer
import Multiformats
import ObjectStorage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `edgeswap ingest --store DIR FILE.car...`: puts CARs into a filesystem store (see `Ingester`).
struct IngestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Verify CAR files and write them, their indexes and their root and block keys to a store.",
        discussion: """
            Every block is checked against its CID first; a CAR with a bad block is reported (with the block's \
            CID and offset) and skipped, the others still go in, and the exit status is non-zero. Running it \
            again writes nothing new.

            Into a directory: --store DIR. Into S3-compatible storage: --s3-endpoint URL --bucket NAME (buckets \
            are created if missing; CARs over 64 MiB go up as multipart uploads), with credentials in \
            AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
            """)

    @OptionGroup(title: "Store")
    var storeOptions: StoreOptions

    @Argument(help: "CARv1 or CARv2 files.")
    var files: [String] = []

    @Flag(name: .long, help: "No progress lines on stderr.")
    var quiet = false

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("no CAR files given: edgeswap ingest --store DIR FILE.car...") }
        try storeOptions.validateStore()
        if let store = storeOptions.store, LocalFiles.size(of: store) != nil {
            throw ValidationError("--store \(store) is a file, not a directory")
        }
    }

    func run() async throws {
        let store = try await storeOptions.open(create: true)
        let ingester = Ingester(store: store.buckets)
        let quiet = self.quiet
        let results = await ingester.ingest(paths: files) { progress in
            guard !quiet else { return }
            writeStandardError(progress.line)
        }
        try? await store.client?.shutdown()
        var failures = 0
        for result in results {
            switch result {
            case .success(let r):
                let what = r.wasAlreadyIngested
                    ? "already ingested, nothing written (\(r.keysPresent) keys present)"
                    : "\(r.keysWritten) keys written, \(r.keysPresent) already present"
                print("\(r.path): \(r.car) roots=\(r.roots.map(\.description).joined(separator: ",")) "
                      + "blocks=\(r.blocks) bytes=\(r.bytes): \(what)")
            case .failure(let error):
                failures += 1
                writeStandardError("error: \(error)")
            }
        }
        if failures > 0 {
            writeStandardError("\(failures) of \(results.count) CAR files failed")
            throw ExitCode.failure
        }
    }
}

/// One line to stderr (fd 2), written whole; the C `stderr` global is not usable from Swift 6 concurrency.
func writeStandardError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(2, $0.baseAddress! + done, $0.count - done) }
        if n <= 0 { return }
        done += n
    }
}
