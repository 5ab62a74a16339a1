import Foundation
import Multiformats
import Testing
@testable import UnixFS

/// SplitMix64: a fixed, seeded byte source so every run builds the same files.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func bytes(count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(state: seed)
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buf in
            var i = 0
            while i + 8 <= count {
                buf.storeBytes(of: rng.next().littleEndian, toByteOffset: i, as: UInt64.self)
                i += 8
            }
            var last = rng.next()
            while i < count {
                buf[i] = UInt8(truncatingIfNeeded: last)
                last >>= 8
                i += 1
            }
        }
        return out
    }
}

/// An in-memory block store built from importer output.
func blockMap(_ blocks: [DAGBlock]) -> [CID: [UInt8]] {
    var map: [CID: [UInt8]] = [:]
    for b in blocks { map[b.cid] = b.bytes }
    return map
}

/// The path of Debian's `ipfs-cid` tool (its binary is `ipfs_cid`), or nil.
func ipfsCIDTool() -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        for name in ["ipfs-cid", "ipfs_cid"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
    }
    return nil
}

/// Runs `ipfs-cid FILE` and returns the CIDv0 it prints (`{"CIDv0":"Qm…","CIDv1":"bafy…"}`).
func ipfsCIDv0(of bytes: [UInt8]) throws -> String {
    guard let tool = ipfsCIDTool() else {
        throw ToolMissing()
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unixfs-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let file = dir.appendingPathComponent("input.bin")
    try Data(bytes).write(to: file)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = [file.path]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw ToolFailed(status: process.terminationStatus) }
    let object = try JSONSerialization.jsonObject(with: data) as? [String: String]
    guard let v0 = object?["CIDv0"] else { throw ToolFailed(status: -1) }
    return v0
}

struct ToolMissing: Error, CustomStringConvertible {
    var description: String { "install ipfs-cid: apt-get install ipfs-cid" }
}

struct ToolFailed: Error {
    let status: Int32
}
