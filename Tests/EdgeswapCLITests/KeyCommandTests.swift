import EdgeswapServer
import Foundation
import Libp2p
import Multiformats
import Testing

private func scratchDirectory(_ label: String) throws -> String {
    let path = NSTemporaryDirectory() + "edgeswap-key-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func permissions(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
}

@Suite struct IdentityKeyFileTests {
    @Test(arguments: IdentityKeyFiles.GeneratedType.allCases)
    func generatedKeysRoundTripThroughTheFile(type: IdentityKeyFiles.GeneratedType) throws {
        let directory = try scratchDirectory("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = try IdentityKeyFiles.generate(type)
        let path = directory + "/id.key"
        try IdentityKeyFiles.write(key, to: path, force: false)
        #expect(try permissions(path) == 0o600)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        // The libp2p PrivateKey protobuf: field 1 (Type) varint first.
        #expect(bytes.first == 0x08)
        #expect(bytes == key.protobufEncoding)
        let read = try IdentityKeyFiles.read(path)
        #expect(read.peerID == key.peerID)
        let expectedType: KeyType = switch type {
        case .ed25519: .ed25519
        case .rsa: .rsa
        case .ecdsa: .ecdsa
        }
        #expect(read.type == expectedType)
        // Ed25519 peer IDs inline the key (identity multihash, "12D3KooW..."); RSA and ECDSA keys are
        // longer than 42 bytes, so they are sha2-256 hashed ("Qm...").
        #expect(key.peerID.description.hasPrefix(type == .ed25519 ? "12D3KooW" : "Qm"))
        // The CID form is CIDv1 libp2p-key over the same multihash.
        let cid = try CID(string: IdentityKeyFiles.describe(key, cid: true))
        #expect(cid.codec == Multicodec.libp2pKey)
        #expect(cid.multihash == key.peerID.multihash)
    }

    @Test func refusesToOverwriteWithoutForce() throws {
        let directory = try scratchDirectory("overwrite")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/id.key"
        let first = PrivateKey.generateEd25519()
        try IdentityKeyFiles.write(first, to: path, force: false)
        let second = PrivateKey.generateEd25519()
        #expect(throws: IdentityKeyFiles.Failure.exists(path)) {
            try IdentityKeyFiles.write(second, to: path, force: false)
        }
        #expect(try IdentityKeyFiles.read(path).peerID == first.peerID)
        try IdentityKeyFiles.write(second, to: path, force: true)
        #expect(try IdentityKeyFiles.read(path).peerID == second.peerID)
        #expect(try permissions(path) == 0o600)
        // No temporary files are left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["id.key"])
    }

    @Test func readsPeerIDJSONAndRefusesGarbage() throws {
        let directory = try scratchDirectory("json")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = PrivateKey.generateEd25519()
        let json = directory + "/peer.json"
        try Data(("  \n" + key.peerIDJSON).utf8).write(to: URL(fileURLWithPath: json))
        #expect(try IdentityKeyFiles.read(json).peerID == key.peerID)

        let garbage = directory + "/garbage"
        try Data([0x08, 0x01, 0x12, 0x03, 1, 2, 3]).write(to: URL(fileURLWithPath: garbage))
        #expect(throws: IdentityKeyFiles.Failure.self) { try IdentityKeyFiles.read(garbage) }
        #expect(throws: IdentityKeyFiles.Failure.self) { try IdentityKeyFiles.read(directory + "/missing") }
    }
}

/// The built `edgeswap` binary (next to the test bundle in .build/debug).
@Suite struct KeyCommandBinaryTests {
    private func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("edgeswap").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: binary])
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self).trimmingCharacters(in: .newlines),
                String(decoding: e, as: UTF8.self))
    }

    @Test func newShowAndImportJSON() throws {
        let directory = try scratchDirectory("binary")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/id.key"

        let created = try run(["key", "new", "--output", path])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.stdout.hasPrefix("12D3KooW"))
        #expect(try permissions(path) == 0o600)
        let key = try PrivateKey(contentsOfFile: path)
        #expect(created.stdout == key.peerID.description)

        let shown = try run(["key", "show", path])
        #expect(shown.status == 0)
        #expect(shown.stdout == key.peerID.description)
        let shownCID = try run(["key", "show", "--cid", path])
        #expect(shownCID.stdout == key.peerID.cidString)
        #expect(shownCID.stdout.hasPrefix("bafz"))

        let again = try run(["key", "new", "--output", path])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already exists"))
        #expect(try PrivateKey(contentsOfFile: path).peerID == key.peerID)

        let rsa = try run(["key", "new", "--type", "rsa", "--output", path, "--force"])
        #expect(rsa.status == 0)
        #expect(rsa.stdout.hasPrefix("Qm"))
        #expect(try PrivateKey(contentsOfFile: path).type == .rsa)

        let badType = try run(["key", "new", "--type", "dsa", "--output", directory + "/x.key"])
        #expect(badType.status != 0)
        #expect(badType.stderr.contains("unknown key type dsa"))

        // A Hoverboard PEER_ID_JSON: shown directly, and converted to a protobuf key file.
        let hoverboard = IdentityKeyFiles.GeneratedType.ecdsa
        let jsonKey = try IdentityKeyFiles.generate(hoverboard)
        let json = directory + "/peer.json"
        try Data(jsonKey.peerIDJSON.utf8).write(to: URL(fileURLWithPath: json))
        #expect(try run(["key", "show", json]).stdout == jsonKey.peerID.description)
        let converted = directory + "/converted.key"
        let imported = try run(["key", "import-json", json, "--output", converted])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(try PrivateKey(contentsOfFile: converted).protobufEncoding == jsonKey.protobufEncoding)

        let missing = try run(["key", "show", directory + "/nope.key"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("nope.key"))
    }
}
