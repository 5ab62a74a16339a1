import CAR
import Foundation
import Multiformats

/// Locates files under Fixtures/ from this source file's path, so tests need no resource bundle.
enum Fixture {
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func path(_ name: String) -> String {
        root.appendingPathComponent("Fixtures/conformance/car").appendingPathComponent(name).path
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path(name))))
    }

    static func source(_ name: String) throws -> FileByteSource {
        try FileByteSource(path: path(name))
    }
}

/// A fresh temporary directory, removed by `cleanup()`.
struct TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("car-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// The `CARError` a throwing body raised, or nil if it returned.
func carError(_ body: () throws(CARError) -> Void) -> CARError? {
    do throws(CARError) {
        try body()
        return nil
    } catch { return error }
}

/// Reads every section of a CAR, failing on the first error.
func allSections<S: ByteSource>(_ source: S, options: CARReadOptions = CARReadOptions()) throws(CARError) -> [CARSection] {
    let reader = try CARReader(source: source, options: options)
    var out: [CARSection] = []
    while let s = try reader.next() { out.append(s) }
    return out
}

/// Reads sections until the first error; returns the sections and the error.
func sectionsUntilError<S: ByteSource>(_ source: S, options: CARReadOptions = CARReadOptions()) -> ([CARSection], CARError?) {
    var out: [CARSection] = []
    do throws(CARError) {
        let reader = try CARReader(source: source, options: options)
        while let s = try reader.next() { out.append(s) }
        return (out, nil)
    } catch { return (out, error) }
}

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = s.filter { !$0.isWhitespace }.makeIterator()
    while let a = chars.next(), let b = chars.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

/// sample-v1.car's root (go-car `cmd/car/testdata/script/inspect.txt`).
let sampleRoot = "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy"
