// edgeswap: tests for libp2p keys and peer IDs against libp2p/specs peer-ids.md vectors and keys made by
// Python `cryptography` (Fixtures/conformance/peer-ids/).

import BigInt
import Foundation
import Multiformats
import Testing

@testable import Libp2p

// MARK: - Fixture helpers (shared by Keys*Tests and Noise*Tests)

enum KeysNoiseFixtures {
    /// Fixtures/conformance/<relative>, found from this source file so tests run from any directory.
    static func url(_ relative: String) -> URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/conformance").appendingPathComponent(relative)
    }

    static func text(_ relative: String) throws -> String {
        try String(contentsOf: url(relative), encoding: .utf8)
    }

    /// CSV rows (no quoting in these files) after the header line, skipping `#` comments.
    static func csv(_ relative: String) throws -> [[String: String]] {
        var lines = try text(relative).split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        lines = lines.filter { !$0.hasPrefix("message,") }
        let header = lines.removeFirst().split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        return lines.map { line in
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            return Dictionary(uniqueKeysWithValues: zip(header, cells))
        }
    }

    static func hex(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        var chars = Array(text.utf8)[...]
        while chars.count >= 2 {
            let pair = String(decoding: chars.prefix(2), as: UTF8.self)
            out.append(UInt8(pair, radix: 16)!)
            chars = chars.dropFirst(2)
        }
        return out
    }

    static func hexString(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// key-vectors.csv: name → bytes.
    static func specVectors() throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for row in try csv("peer-ids/key-vectors.csv") { out[row["key"]!] = hex(row["hex"]!) }
        return out
    }
}

// MARK: - libp2p/specs peer-ids.md vectors

@Suite struct KeysSpecVectorTests {
    static let pairs: [(privateName: String, publicName: String, type: KeyType)] = [
        ("ECDSA private key", "ECDSA public key", .ecdsa),
        ("ED25519 private key", "ED25519 public key", .ed25519),
        ("secp256k1 private key", "secp256k1 public key", .secp256k1),
        ("rsa private key", "rsa public key", .rsa),
    ]

    @Test func fixtureHasEveryRow() throws {
        let vectors = try KeysNoiseFixtures.specVectors()
        #expect(vectors.count == 8)
        for pair in Self.pairs {
            #expect(vectors[pair.privateName] != nil && vectors[pair.publicName] != nil)
        }
    }

    @Test(arguments: pairs.map(\.privateName))
    func privateKeyYieldsItsPublicKey(name: String) throws {
        let vectors = try KeysNoiseFixtures.specVectors()
        let pair = Self.pairs.first { $0.privateName == name }!
        let privateKey = try PrivateKey(protobuf: vectors[pair.privateName]!)
        #expect(privateKey.type == pair.type)
        // "Implementations SHOULD check that they can produce the provided public key from the private key."
        #expect(privateKey.publicKey.protobufEncoding == vectors[pair.publicName]!)
        let publicKey = try PublicKey(protobuf: vectors[pair.publicName]!)
        #expect(privateKey.publicKey == publicKey)
    }

    @Test(arguments: ["ECDSA private key", "ED25519 private key", "secp256k1 private key", "rsa private key",
                      "ECDSA public key", "ED25519 public key", "secp256k1 public key", "rsa public key"])
    func reencodingIsByteIdentical(name: String) throws {
        let bytes = try KeysNoiseFixtures.specVectors()[name]!
        if name.contains("private") {
            #expect(try PrivateKey(protobuf: bytes).protobufEncoding == bytes)
        } else {
            #expect(try PublicKey(protobuf: bytes).protobufEncoding == bytes)
        }
    }

    @Test(arguments: pairs.map(\.privateName))
    func signVerifyRoundTrip(name: String) throws {
        let vectors = try KeysNoiseFixtures.specVectors()
        let pair = Self.pairs.first { $0.privateName == name }!
        let privateKey = try PrivateKey(protobuf: vectors[pair.privateName]!)
        let publicKey = try PublicKey(protobuf: vectors[pair.publicName]!)
        let message = Array("noise-libp2p-static-key:".utf8) + [UInt8](repeating: 7, count: 32)
        let signature = try privateKey.sign(message)
        #expect(publicKey.isValidSignature(signature, for: message))
        var otherMessage = message
        otherMessage[0] ^= 1
        #expect(!publicKey.isValidSignature(signature, for: otherMessage))
        var tampered = signature
        tampered[tampered.count / 2] ^= 0x40
        #expect(!publicKey.isValidSignature(tampered, for: message))
        #expect(!publicKey.isValidSignature([], for: message))
    }

    @Test func peerIDStringsMatchIndependentComputation() throws {
        let vectors = try KeysNoiseFixtures.specVectors()
        let rows = try KeysNoiseFixtures.csv("peer-ids/key-vector-peer-ids.csv")
        #expect(rows.count == 4)
        for row in rows {
            let key = try PublicKey(protobuf: vectors[row["key"]!]!)
            let peerID = key.peerID
            #expect(peerID.description == row["peer_id"]!)
            #expect(peerID.cidString == row["cid"]!)
            // Both text forms parse back to the same peer ID.
            #expect(try PeerID(string: row["peer_id"]!) == peerID)
            #expect(try PeerID(string: row["cid"]!) == peerID)
            #expect(peerID.matches(key))
            // ≤ 42 bytes → identity (the key is inside), else sha2-256.
            if key.protobufEncoding.count <= 42 {
                #expect(peerID.multihash.code == Multicodec.identity)
                #expect(peerID.embeddedPublicKey == key)
            } else {
                #expect(peerID.multihash.code == Multicodec.sha2_256)
                #expect(peerID.embeddedPublicKey == nil)
            }
        }
    }
}

// MARK: - Keys made by Python cryptography (RSA-2048, P-256, P-384, secp256k1, Ed25519)

@Suite struct KeysExtraVectorTests {
    static func rows() throws -> (message: [UInt8], rows: [[String: String]]) {
        let text = try KeysNoiseFixtures.text("peer-ids/extra-key-vectors.csv")
        let messageLine = text.split(separator: "\n").first { $0.hasPrefix("message,") }!
        let message = KeysNoiseFixtures.hex(String(messageLine.dropFirst("message,".count)))
        return (message, try KeysNoiseFixtures.csv("peer-ids/extra-key-vectors.csv"))
    }

    @Test func everyRowVerifiesAndNamesItsPeer() throws {
        let (message, rows) = try Self.rows()
        #expect(rows.count == 6)
        for row in rows {
            let name = row["name"]!
            let publicKey = try PublicKey(protobuf: KeysNoiseFixtures.hex(row["public_key"]!))
            let signature = KeysNoiseFixtures.hex(row["signature"]!)
            #expect(publicKey.isValidSignature(signature, for: message), "signature of \(name)")
            var wrong = message
            wrong[wrong.count - 1] ^= 0xff
            #expect(!publicKey.isValidSignature(signature, for: wrong), "\(name) must reject another message")
            #expect(publicKey.peerID.description == row["peer_id"]!, "peer ID of \(name)")
            #expect(publicKey.protobufEncoding == KeysNoiseFixtures.hex(row["public_key"]!))

            let privateHex = row["private_key"]!
            guard !privateHex.isEmpty else { continue }
            let privateKey = try PrivateKey(protobuf: KeysNoiseFixtures.hex(privateHex))
            #expect(privateKey.publicKey == publicKey, "public key of \(name)")
            #expect(privateKey.protobufEncoding == KeysNoiseFixtures.hex(privateHex))
            let ours = try privateKey.sign(message)
            #expect(publicKey.isValidSignature(ours, for: message), "our signature with \(name)")
        }
    }

    @Test func uncompressedSecp256k1IsTheSamePointAsCompressed() throws {
        let (_, rows) = try Self.rows()
        let compressed = try PublicKey(protobuf: KeysNoiseFixtures.hex(rows.first { $0["name"] == "secp256k1" }!["public_key"]!))
        let uncompressed = try PublicKey(
            protobuf: KeysNoiseFixtures.hex(rows.first { $0["name"] == "secp256k1-uncompressed" }!["public_key"]!))
        // Different encodings are different libp2p keys (and peer IDs), but each verifies the other's signatures.
        #expect(compressed != uncompressed)
        let signature = KeysNoiseFixtures.hex(rows.first { $0["name"] == "secp256k1" }!["signature"]!)
        let message = try Self.rows().message
        #expect(uncompressed.isValidSignature(signature, for: message))
    }
}

// MARK: - Peer IDs

@Suite struct KeysPeerIDTests {
    /// Hoverboard's dev identity (anchors-and-specs.md c.8).
    static let hoverboardDevPeerID = "12D3KooWJA2ETdy5wYTbCHVqKdgrqtmuNEwjMVMwEtMrNugrsGkZ"
    static let hoverboardDevCID = "bafzaajaiaejca67gshukh27skt5na7mmanzc2zc7fxp3d7b5k26mqhqcu6wx7jf2"
    static let hoverboardDevPubKey = "CAESIHvmkeij6/JU+tB9jANyLWRfLd+x/D1WvMgeAqetf6S6"

    @Test func hoverboardDevKey() throws {
        let peerID = try PeerID(string: Self.hoverboardDevPeerID)
        #expect(KeysNoiseFixtures.hexString(peerID.bytes).hasPrefix("002408011220"))
        #expect(peerID.cidString == Self.hoverboardDevCID)
        #expect(try PeerID(string: Self.hoverboardDevCID) == peerID)
        #expect(peerID.description == Self.hoverboardDevPeerID)
        let publicKey = try PublicKey(protobuf: [UInt8](Data(base64Encoded: Self.hoverboardDevPubKey)!))
        #expect(publicKey.type == .ed25519)
        #expect(peerID.matches(publicKey))
        #expect(peerID.embeddedPublicKey == publicKey)
    }

    @Test func hoverboardProductionAndStagingPeerIDs() throws {
        // Published in the Hoverboard README (storacha/hoverboard): production uses a sha256-hashed key in CID
        // form, staging an RSA-style Qm… id. The other forms were computed independently in Python.
        let production = try PeerID(string: "bafzbeibhqavlasjc7dvbiopygwncnrtvjd2xmryk5laib7zyjor6kf3avm")
        #expect(production.multihash.code == Multicodec.sha2_256)
        #expect(production.description == "QmQzqxhK82kAmKvARFZSkUVS6fo9sySaiogAnx5EnZ6ZmC")
        #expect(try PeerID(string: "QmQzqxhK82kAmKvARFZSkUVS6fo9sySaiogAnx5EnZ6ZmC") == production)
        let staging = try PeerID(string: "Qmc5vg9zuLYvDR1wtYHCaxjBHenfCNautRwCjG3n5v5fbs")
        #expect(staging.cidString == "bafzbeigmhx2uheblhy3fzkwtpyy4hknlu6bkjoujifgtw6hooojkjzll5y")
        #expect(staging.embeddedPublicKey == nil)
        #expect(staging != production)
    }

    @Test func specExamplesParse() throws {
        // peer-ids.md § Decoding examples.
        let sha = try PeerID(string: "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        #expect(sha.multihash.code == Multicodec.sha2_256)
        let ed = try PeerID(string: "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
        #expect(ed.multihash.code == Multicodec.identity)
        #expect(ed.embeddedPublicKey?.type == .ed25519)
        let cid = try PeerID(string: "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
        #expect(cid.multihash.code == Multicodec.sha2_256)
        #expect(cid.cidString == "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
    }

    @Test func rejectsBadPeerIDs() throws {
        // A CID with another codec (raw 0x55) is not a peer ID.
        let rawCID = CID(codec: Multicodec.raw, multihash: try PeerID(string: Self.hoverboardDevPeerID).multihash)
        #expect(throws: KeyError.self) { try PeerID(string: rawCID.description) }
        // Garbage, wrong hash length, identity multihash without a key.
        #expect(throws: KeyError.self) { try PeerID(string: "Qm0OIl") }
        #expect(throws: KeyError.self) { try PeerID(string: "") }
        #expect(throws: KeyError.self) { try PeerID(multihash: Multihash(code: Multicodec.sha2_256, digest: [1, 2, 3])) }
        #expect(throws: KeyError.self) { try PeerID(multihash: Multihash(code: Multicodec.identity, digest: [0x08, 0x01])) }
        #expect(throws: KeyError.self) { try PeerID(multihash: Multihash(code: Multicodec.blake3, digest: [UInt8](repeating: 0, count: 32))) }
    }

    @Test func hashableAndGenerated() throws {
        let a = PrivateKey.generateEd25519()
        let b = PrivateKey.generateEd25519()
        #expect(a.peerID != b.peerID)
        #expect(Set([a.peerID, a.peerID, b.peerID]).count == 2)
        #expect(a.peerID.description.hasPrefix("12D3KooW"))
        #expect(a.peerID.cidString.hasPrefix("bafzaa"))
        let ecdsa = PrivateKey.generateECDSAP256()
        #expect(ecdsa.peerID.description.hasPrefix("Qm"))
        // The generated SEC1 form is what go-libp2p stores: same template as the spec vector.
        #expect(ecdsa.data.count == 121 && ecdsa.data.prefix(7) == [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20])
        #expect(try PrivateKey(protobuf: ecdsa.protobufEncoding).publicKey == ecdsa.publicKey)
    }
}

// MARK: - Encoding rules and malformed input

@Suite struct KeysEncodingTests {
    @Test func legacyEd25519PrivateKeyForm() throws {
        let vector = try KeysNoiseFixtures.specVectors()["ED25519 private key"]!
        let data = Array(vector[4...])  // seed ‖ pub
        let legacy = data + Array(data[32...])  // seed ‖ pub ‖ pub (96 bytes)
        let key = try PrivateKey(type: .ed25519, data: legacy)
        #expect(key.protobufEncoding == vector)  // written back in the 64-byte form
        var mismatched = legacy
        mismatched[95] ^= 1
        #expect(throws: KeyError.self) { try PrivateKey(type: .ed25519, data: mismatched) }
        var wrongPublic = data
        wrongPublic[63] ^= 1
        #expect(throws: KeyError.self) { try PrivateKey(type: .ed25519, data: wrongPublic) }
    }

    @Test func nonCanonicalProtobufsAreRejected() throws {
        let vector = try KeysNoiseFixtures.specVectors()["ED25519 public key"]!
        let data = Array(vector[4...])
        // Fields in reverse order.
        let reversed: [UInt8] = [0x12, 0x20] + data + [0x08, 0x01]
        #expect(throws: KeyError.nonCanonicalEncoding("first field must be Type (1, varint)")) {
            try PublicKey(protobuf: reversed)
        }
        // Non-minimal varint for the type.
        let padded: [UInt8] = [0x08, 0x81, 0x00, 0x12, 0x20] + data
        #expect(throws: KeyError.nonCanonicalEncoding("varints must be minimally encoded")) {
            try PublicKey(protobuf: padded)
        }
        // Missing Data, extra field, unknown type, truncated.
        #expect(throws: KeyError.self) { try PublicKey(protobuf: [0x08, 0x01]) }
        #expect(throws: KeyError.self) { try PublicKey(protobuf: vector + [0x18, 0x01]) }
        #expect(throws: KeyError.unknownKeyType(9)) { try PublicKey(protobuf: [0x08, 0x09, 0x12, 0x20] + data) }
        #expect(throws: KeyError.self) { try PublicKey(protobuf: Array(vector.dropLast())) }
        // Wrong key lengths and points.
        #expect(throws: KeyError.self) { try PublicKey(type: .ed25519, data: Array(data.dropLast())) }
        #expect(throws: KeyError.self) { try PublicKey(type: .secp256k1, data: [0x02] + [UInt8](repeating: 0xff, count: 32)) }
        #expect(throws: KeyError.self) { try PublicKey(type: .ecdsa, data: data) }
        #expect(throws: KeyError.self) { try PublicKey(type: .rsa, data: data) }
        #expect(throws: KeyError.self) { try PrivateKey(type: .secp256k1, data: [UInt8](repeating: 0, count: 32)) }
    }

    @Test func rsaPKCS1PublicKeyIsNotAcceptedAsPKIX() throws {
        let vector = try KeysNoiseFixtures.specVectors()["rsa private key"]!
        let key = try PrivateKey(protobuf: vector)
        // Strip the SubjectPublicKeyInfo wrapper: the inner RSAPublicKey (PKCS#1) is not the libp2p form.
        let spki = key.publicKey.data
        let pkcs1 = Array(spki[24...])  // 30 82 len 30 0d <rsaEncryption> 05 00 03 82 len 00 | RSAPublicKey
        #expect(pkcs1.first == 0x30)
        #expect(throws: KeyError.self) { try PublicKey(type: .rsa, data: pkcs1) }
    }
}

// MARK: - Key files

@Suite struct KeysFileTests {
    @Test func protobufFileRoundTrip() throws {
        let key = try PrivateKey(protobuf: try KeysNoiseFixtures.specVectors()["rsa private key"]!)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgeswap-key-\(UUID()).key").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try key.write(toFile: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(key.protobufEncoding))
        let read = try PrivateKey(contentsOfFile: path)
        #expect(read.peerID == key.peerID)
        #expect(read.protobufEncoding == key.protobufEncoding)
        #expect(throws: KeyError.self) { try PrivateKey(contentsOfFile: path + ".missing") }
    }

    @Test func hoverboardPeerIDJSON() throws {
        let key = try PrivateKey(protobuf: try KeysNoiseFixtures.specVectors()["ED25519 private key"]!)
        let json = key.peerIDJSON
        let read = try PrivateKey(peerIDJSON: Array(json.utf8))
        #expect(read.peerID == key.peerID)
        #expect(json.contains("\"id\":\"\(key.peerID)\""))
        // Same shape as Hoverboard's secret: privKey/pubKey are base64 protobufs.
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: String]
        #expect(Data(base64Encoded: object["privKey"]!) == Data(key.protobufEncoding))
        #expect(object["pubKey"]!.hasPrefix("CAESI"))

        // An id or pubKey from another identity is refused.
        let other = PrivateKey.generateEd25519()
        let wrongID = json.replacingOccurrences(of: key.peerID.description, with: other.peerID.description)
        #expect(throws: KeyError.self) { try PrivateKey(peerIDJSON: Array(wrongID.utf8)) }
        let wrongPub = "{\"privKey\":\"\(object["privKey"]!)\",\"pubKey\":\"\(Data(other.publicKey.protobufEncoding).base64EncodedString())\"}"
        #expect(throws: KeyError.self) { try PrivateKey(peerIDJSON: Array(wrongPub.utf8)) }
        // privKey alone is enough.
        let minimal = "{\"privKey\":\"\(object["privKey"]!)\"}"
        #expect(try PrivateKey(peerIDJSON: Array(minimal.utf8)).peerID == key.peerID)
        #expect(throws: KeyError.self) { try PrivateKey(peerIDJSON: Array("{}".utf8)) }
    }
}

// MARK: - secp256k1 field arithmetic against arbitrary-precision integers

@Suite struct KeysSecp256k1FieldTests {
    @Test func fieldOperationsMatchBigUInt() throws {
        let p = Secp256k1.p
        var values: [BigUInt] = [0, 1, 2, p - 1, p - 2, p - BigUInt(1) << 32, BigUInt(1) << 255, (BigUInt(1) << 256) - p]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<40 { values.append(BigUInt.randomInteger(lessThan: p, using: &generator)) }
        for a in values {
            for b in values.prefix(12) {
                let fa = Secp256k1Field(a)
                let fb = Secp256k1Field(b)
                #expect((fa * fb).bigUInt == (a * b) % p)
                #expect((fa + fb).bigUInt == (a + b) % p)
                #expect((fa - fb).bigUInt == (a + p - b) % p)
            }
            if !a.isZero {
                #expect((Secp256k1Field(a).inverse * Secp256k1Field(a)) == Secp256k1Field.one)
            }
        }
    }
}
