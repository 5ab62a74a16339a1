import ArgumentParser
import CAR

/// `edgeswap index FILE.car --output FILE.idx`: writes the MultihashIndexSorted of a CAR, streaming.
struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Write the CARv2 MultihashIndexSorted (0x0401) index of a CARv1 or CARv2 file.",
        discussion: """
            The index is go-car's byte layout, codec varint included; offsets point at each section's length \
            varint, relative to the CARv1 payload. Identity CIDs are not indexed. An index already inside a \
            CARv2 is ignored and rebuilt from the blocks.
            """
    )

    @Argument(help: "The CAR file to index.")
    var car: String

    @Option(name: .shortAndLong, help: "Where to write the index.")
    var output: String

    @Flag(help: "Treat a zero-length section as the end of the CAR (go-car ZeroLengthSectionAsEOF).")
    var zeroLengthSectionAsEOF = false

    func run() throws {
        let options = CARReadOptions(zeroLengthSectionAsEOF: zeroLengthSectionAsEOF)
        do throws(CARError) {
            let count = try CARIndexer.writeIndex(carPath: car, outputPath: output, options: options)
            print("indexed \(count) blocks of \(car) into \(output)")
        } catch {
            printError("edgeswap index: \(car): \(error)")
            throw ExitCode.failure
        }
    }
}
