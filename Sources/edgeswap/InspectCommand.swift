import ArgumentParser
import CAR

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `edgeswap inspect FILE`: describes a CARv1, a CARv2 or a standalone CAR index.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a CARv1, CARv2 or CAR index file.",
        discussion: """
            For a CAR: version, roots, block count, codecs and hash functions used, and whether an index is \
            present. For an index (0x0400 or 0x0401): its codec, multihash codes, bucket widths and every entry \
            (multihash in base58btc, section offset).
            """
    )

    @Argument(help: "The file to inspect.")
    var file: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Treat a zero-length section as the end of the CAR (go-car ZeroLengthSectionAsEOF).")
    var zeroLengthSectionAsEOF = false

    func run() throws {
        let options = CARReadOptions(zeroLengthSectionAsEOF: zeroLengthSectionAsEOF)
        do throws(CARError) {
            let inspection = try CARInspector.inspect(path: file, options: options)
            print(json ? inspection.json() : inspection.text(), terminator: "")
        } catch {
            printError("edgeswap inspect: \(file): \(error)")
            throw ExitCode.failure
        }
    }
}

/// One line on standard error.
func printError(_ message: String) {
    // write(2) on descriptor 2: the C `stderr` global is not concurrency-safe in Swift 6.
    var line = Array((message + "\n").utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
