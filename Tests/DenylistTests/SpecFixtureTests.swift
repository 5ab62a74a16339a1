import Denylist
import Foundation
import Multiformats
import Testing

/// The spec's own example list and nopfs's `test.deny` (Fixtures/denylist/README.md), with the results their
/// comments and nopfs's `tester.go` state.
@Suite struct SpecFixtureTests {
    static let examplePath = denylistFixturePath("spec-example.deny")
    static let nopfsPath = denylistFixturePath("nopfs-test.deny")

    @Test func specExampleHeaderAndCounts() throws {
        let file = try DenylistFile(contentsOf: Self.examplePath)
        #expect(file.header.present)
        #expect(file.header.version == 1)
        #expect(file.header.name == "Example IPFSCorp blocking list")
        #expect(file.header.description == "A collection of bad things we have found in the universe")
        #expect(file.header.author == "abuse-ipfscorp@example.com")
        #expect(file.header.hints == ["hint": "value", "hint2": "value2"])
        #expect(file.counts == [
            .cid: 1, .ipfsPath: 6, .ipns: 3, .doubleHash: 2, .legacyDoubleHash: 3,
        ])
        #expect(file.allowRules == 3)
        #expect(file.inapplicableRules.count == 9)
        #expect(file.inapplicableRules.filter(\.allow).count == 3)
    }

    @Test func specExampleDecisions() throws {
        let text = try String(contentsOfFile: Self.examplePath, encoding: .utf8)
        let snapshot = DenylistSnapshot(files: [try DenylistFile(contentsOf: Self.examplePath)])

        // "Blocking by CID is codec-agnostic (blocks by multihash)."
        let cidLine = try lineNumber(of: "/ipfs/bafybeihvvulpp4evxj7x7armbqcyg6uezzuig6jp3lktpbovlqfkuqeuoq", in: text)
        #expect(snapshot.decision(for: try cid("bafybeihvvulpp4evxj7x7armbqcyg6uezzuig6jp3lktpbovlqfkuqeuoq"))
            == .denied(DenylistReason(file: Self.examplePath, line: cidLine, kind: .cid)))

        // "Blocks bafybeidjwik6im54nrpfg7osdvmx7zojl5oaxqel5cmsz46iuelwf5acja and
        // QmVTF1yEejXd9iMgoRTFDxBv7HAz9kuZcQNBzHrceuK9HR etc. by multihash"
        let dhLine = try lineNumber(of: "//QmX9dhRcQcKUw3Ws8485T5a9dtjrSCQaUAHnG4iK9i4ceM", in: text)
        for want in ["bafybeidjwik6im54nrpfg7osdvmx7zojl5oaxqel5cmsz46iuelwf5acja", "QmVTF1yEejXd9iMgoRTFDxBv7HAz9kuZcQNBzHrceuK9HR"] {
            #expect(snapshot.decision(for: try cid(want))
                == .denied(DenylistReason(file: Self.examplePath, line: dhLine, kind: .doubleHash)), "\(want)")
        }
        // The same multihash as a raw block: "etc. by multihash".
        let raw = CID(codec: Multicodec.raw, multihash: try cid("QmVTF1yEejXd9iMgoRTFDxBv7HAz9kuZcQNBzHrceuK9HR").multihash)
        #expect(snapshot.decision(for: raw).reason?.kind == .doubleHash)

        // "Legacy CID double-hash block ... blocks only this CID": the codec is part of what is hashed.
        let legacyLine = try lineNumber(of: "//d9d295bde21f422d471a90f2a37ec53049fdf3e5fa3ee2e8f20e10003da429e7", in: text)
        let legacyCID = try cid("bafybeiefwqslmf6zyyrxodaxx4vwqircuxpza5ri45ws3y5a62ypxti42e")
        #expect(snapshot.decision(for: legacyCID)
            == .denied(DenylistReason(file: Self.examplePath, line: legacyLine, kind: .legacyDoubleHash)))
        // Its CIDv0 has the same CIDv1 base32 form (dag-pb), so it is the same anchor.
        #expect(snapshot.decision(for: try CID(v0: legacyCID.multihash)).isDenied)
        #expect(snapshot.decision(for: CID(codec: Multicodec.raw, multihash: legacyCID.multihash)) == .allowed)

        // Path rules deny no block: the CIDs under path rules, and the blake3 path double hash's CID.
        for want in [
            "QmUboz9UsQBDeS6Tug1U8jgoFkgYxyYood9NDyVURAY9pK", "Qmah2YDTfrox4watLCr3YgKyBwvjq8FJZEFdWY6WtJ3Xt2",
            "QmTuvSQbEDR3sarFAN9kAeXBpiBCyYYNxdxciazBba11eC", "bafyb4ieqht3b2rssdmc7sjv2cy2gfdilxkfh7623nvndziyqnawkmo266a",
        ] {
            #expect(snapshot.decision(for: try cid(want)) == .allowed, "\(want)")
        }
    }

    /// The hashes the spec's comments state, recomputed with swift-crypto: what string each rule hashes.
    @Test func specStatedHashes() throws {
        // "base58btc-sha256-multihash(QmVTF1yEejXd9iMgoRTFDxBv7HAz9kuZcQNBzHrceuK9HR)"
        #expect(b58(sha256Multihash("QmVTF1yEejXd9iMgoRTFDxBv7HAz9kuZcQNBzHrceuK9HR")) == "QmX9dhRcQcKUw3Ws8485T5a9dtjrSCQaUAHnG4iK9i4ceM")
        // "sha256(bafybeiefwqslmf6zyyrxodaxx4vwqircuxpza5ri45ws3y5a62ypxti42e/)"
        #expect(sha256Hex("bafybeiefwqslmf6zyyrxodaxx4vwqircuxpza5ri45ws3y5a62ypxti42e/")
            == "d9d295bde21f422d471a90f2a37ec53049fdf3e5fa3ee2e8f20e10003da429e7")
        // "Legacy Path double-hash block: Blocks bafybeiefwqslmf6zyyrxodaxx4vwqircuxpza5ri45ws3y5a62ypxti42e/path"
        #expect(sha256Hex("bafybeiefwqslmf6zyyrxodaxx4vwqircuxpza5ri45ws3y5a62ypxti42e/path")
            == "3f8b9febd851873b3774b937cce126910699ceac56e72e64b866f8e258d09572")
        // The note's `ipfs cid format -f '%M' -b base58btc` and `printf … | ipfs block put --mhtype sha2-256`.
        let mh = try cid("bafybeihrw75yfhdx5qsqgesdnxejtjybscwuclpusvxkuttep6h7pkgmze").multihash
        #expect(b58(mh) == "QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768")
        #expect(b58(sha256Multihash("QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768/my/path")) == "QmSju6XPmYLG611rmK7rEeCMFVuL6EHpqyvmEU6oGx3GR8")
    }

    @Test func nopfsTestListCounts() throws {
        let file = try DenylistFile(contentsOf: Self.nopfsPath)
        #expect(file.header.name == "Testing denylist")
        #expect(file.header.author == "@hsanjuan")
        #expect(file.counts == [
            .cid: 1, .cidSubtree: 1, .ipfsPath: 6, .ipns: 3, .legacyDoubleHash: 4, .doubleHash: 6, .emptyBlock: 7,
        ])
        #expect(file.allowRules == 3)
    }

    @Test func nopfsTestListDecisions() throws {
        let snapshot = DenylistSnapshot(files: [try DenylistFile(contentsOf: Self.nopfsPath)])
        // rule1: "This should block not only this, but also any CID with the same underlying multihash like
        // bafkreihvvulpp4evxj7x7armbqcyg6uezzuig6jp3lktpbovlqfkuqeuoq or QmesfgDQ3q6prBy2Kg2gKbW4MAGuWiRP2DVuGA5MZSERLo"
        for want in [
            "bafybeihvvulpp4evxj7x7armbqcyg6uezzuig6jp3lktpbovlqfkuqeuoq",
            "bafkreihvvulpp4evxj7x7armbqcyg6uezzuig6jp3lktpbovlqfkuqeuoq",
            "QmesfgDQ3q6prBy2Kg2gKbW4MAGuWiRP2DVuGA5MZSERLo",
        ] {
            #expect(snapshot.decision(for: try cid(want)).reason?.kind == .cid, "\(want)")
        }
        // rule2: "Block all subpaths" with `/*`, which "blocks the CID itself, and any paths".
        #expect(snapshot.decision(for: try cid("QmdWFA9FL52hx3j9EJZPQP1ZUH8Ygi5tLCX2cRDs6knSf8")).reason?.kind == .cidSubtree)
        // rule10
        #expect(snapshot.decision(for: try cid("bafybeiefwqslmf6zyyrxodaxx4vwqircuxpza5ri45ws3y5a62ypxti42e")).reason?.kind
            == .legacyDoubleHash)
        // rule12: "This should block bafybeidjwik6im54nrpfg7osdvmx7zojl5oaxqel5cmsz46iuelwf5acja and its CIDv0 form"
        for want in ["bafybeidjwik6im54nrpfg7osdvmx7zojl5oaxqel5cmsz46iuelwf5acja", "QmVTF1yEejXd9iMgoRTFDxBv7HAz9kuZcQNBzHrceuK9HR"] {
            #expect(snapshot.decision(for: try cid(want)).reason?.kind == .doubleHash, "\(want)")
        }
        // rule14: the double hash of the base58btc multihash 12D3KooWHGU91…ufyuN (an identity multihash):
        // what is hashed is the multihash string, whatever the hash function inside it.
        let peerMultihash = try Multihash(bytes: Multibase.base58btc.decodeWithoutPrefix("12D3KooWHGU91cJWKofZoHQ3hkVgs2c6WAJGxVCjMivwej9ufyuN"))
        #expect(snapshot.decision(for: CID(codec: Multicodec.libp2pKey, multihash: peerMultihash)).reason?.kind == .doubleHash)
        // rule15: "Even if they appear here, they should not be blocked".
        for want in [
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn", "bafyaabakaieac",
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "bafkqaaa",
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
            "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua",
            "baguqeeraiqjw7i2vwntyuekgvulpp2det2kpwt6cd7tx5ayqybqpmhfk76fa",
        ] {
            #expect(snapshot.decision(for: try cid(want)) == .allowed, "\(want)")
        }
        // rule5's CID has only path rules.
        #expect(snapshot.decision(for: try cid("QmUboz9UsQBDeS6Tug1U8jgoFkgYxyYood9NDyVURAY9pK")) == .allowed)
    }
}
