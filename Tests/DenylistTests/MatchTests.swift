import Denylist
import Multiformats
import Testing

@Suite struct MatchTests {
    /// A block nobody lists: sha2-256 of "edgeswap denylist test".
    static let multihash = sha256Multihash("edgeswap denylist test")

    /// Every CID (and string form) of `multihash` a peer may want.
    static func forms(of multihash: Multihash) throws -> [CID] {
        let v1pb = CID(codec: Multicodec.dagPB, multihash: multihash)
        let v1raw = CID(codec: Multicodec.raw, multihash: multihash)
        let v1cbor = CID(codec: Multicodec.dagCBOR, multihash: multihash)
        var cids = [try CID(v0: multihash), v1pb, v1raw, v1cbor]
        for base in [Multibase.base32, .base32upper, .base36, .base58btc, .base16, .base64] {
            cids.append(try CID(string: v1raw.string(base: base)))
            cids.append(try CID(string: v1pb.string(base: base)))
        }
        return cids
    }

    @Test(arguments: ["v0", "v1-raw-base36", "v1-cbor-base58", "v1-pb-base32"])
    func everyFormOfABlockedMultihashIsDenied(ruleForm: String) throws {
        let mh = Self.multihash
        let ruleCID: String
        switch ruleForm {
        case "v0": ruleCID = try CID(v0: mh).description
        case "v1-raw-base36": ruleCID = CID(codec: Multicodec.raw, multihash: mh).string(base: .base36)
        case "v1-cbor-base58": ruleCID = CID(codec: Multicodec.dagCBOR, multihash: mh).string(base: .base58btc)
        default: ruleCID = CID(codec: Multicodec.dagPB, multihash: mh).description
        }
        let snapshot = DenylistSnapshot(files: [try parse("# one rule\n/ipfs/\(ruleCID)\n")])
        for want in try Self.forms(of: mh) {
            #expect(snapshot.decision(for: want) == .denied(DenylistReason(file: "test.deny", line: 2, kind: .cid)), "\(want)")
        }
        // Another hash function over the same bytes is another block.
        let other = Multihash(code: Multicodec.blake3, digest: mh.digest)
        #expect(snapshot.decision(for: CID(codec: Multicodec.raw, multihash: other)) == .allowed)
    }

    @Test func modernDoubleHashDeniesEveryCodec() throws {
        // "(modern) Convert the CID to b58-encoded-multihash (that is CIDv0) and hash the CID string."
        let rule = "//" + b58(sha256Multihash(b58(Self.multihash)))
        let snapshot = DenylistSnapshot(files: [try parse(rule + "\n")])
        for want in try Self.forms(of: Self.multihash) {
            #expect(snapshot.decision(for: want) == .denied(DenylistReason(file: "test.deny", line: 1, kind: .doubleHash)))
        }
        // The multihash of the *CIDv1 string*, or of the string with a trailing slash, is not the rule.
        let wrong = "//" + b58(sha256Multihash(CID(codec: Multicodec.raw, multihash: Self.multihash).description))
        let wrongSlash = "//" + b58(sha256Multihash(b58(Self.multihash) + "/"))
        let misses = DenylistSnapshot(files: [try parse(wrong + "\n" + wrongSlash + "\n")])
        #expect(misses.decision(for: CID(codec: Multicodec.raw, multihash: Self.multihash)) == .allowed)
    }

    @Test func blake3DoubleHash() throws {
        // "The modern Multihash form allows blocking by double-hash using any hashing function of choice."
        let b58Text = Array(b58(Self.multihash).utf8)
        let doubleHash = try b58Text.withUnsafeBytes { try Multihash.compute(code: Multicodec.blake3, of: $0) }
        let snapshot = DenylistSnapshot(files: [try parse("//\(b58(doubleHash))\n")])
        #expect(snapshot.decision(for: try CID(v0: Self.multihash)).reason?.kind == .doubleHash)
    }

    @Test func legacyDoubleHashIsPerCodec() throws {
        // "(legacy) Convert the CID to `CIDV1BASE32/` (keeping the CID codec and adding a slash at the end)".
        let raw = CID(codec: Multicodec.raw, multihash: Self.multihash)
        let rule = "//" + sha256Hex(raw.description + "/")
        let snapshot = DenylistSnapshot(files: [try parse(rule + "\n")])
        #expect(snapshot.decision(for: raw) == .denied(DenylistReason(file: "test.deny", line: 1, kind: .legacyDoubleHash)))
        #expect(snapshot.decision(for: try CID(string: raw.string(base: .base36))).isDenied)
        // "It can only block by CID and not by multihash".
        #expect(snapshot.decision(for: CID(codec: Multicodec.dagPB, multihash: Self.multihash)) == .allowed)
        #expect(snapshot.decision(for: try CID(v0: Self.multihash)) == .allowed)
        // Upper-case hex is the same digest; without the slash it is another anchor.
        #expect(DenylistSnapshot(files: [try parse(rule.uppercased() + "\n")]).decision(for: raw).isDenied)
        let noSlash = DenylistSnapshot(files: [try parse("//" + sha256Hex(raw.description) + "\n")])
        #expect(noSlash.decision(for: raw) == .allowed)
    }

    @Test func allowRulesAndLastMatchWins() throws {
        let v0 = try CID(v0: Self.multihash).description
        let raw = CID(codec: Multicodec.raw, multihash: Self.multihash)
        let modern = "//" + b58(sha256Multihash(b58(Self.multihash)))
        let legacy = "//" + sha256Hex(raw.description + "/")

        func decide(_ lines: [String]) throws -> DenylistDecision {
            try DenylistSnapshot(files: [parse(lines.joined(separator: "\n"))]).decision(for: raw)
        }
        #expect(try decide(["/ipfs/\(v0)", "!/ipfs/\(raw)"]) == .allowed)
        // "In this example, `/ipns/my.domain` stays blocked because the deny rule happens AFTER the allow one."
        #expect(try decide(["!/ipfs/\(raw)", "/ipfs/\(v0)"]) == .denied(DenylistReason(file: "test.deny", line: 2, kind: .cid)))
        // Across rule kinds: the last matching line decides.
        #expect(try decide(["/ipfs/\(v0)", "!" + modern]) == .allowed)
        #expect(try decide(["!" + modern, legacy]) == .denied(DenylistReason(file: "test.deny", line: 2, kind: .legacyDoubleHash)))
        #expect(try decide([legacy, "/ipfs/\(v0)", "!" + legacy]) == .allowed)
        #expect(try decide(["!/ipfs/\(v0)", modern, "# a comment", ""]) == .denied(DenylistReason(file: "test.deny", line: 2, kind: .doubleHash)))
        // `!/ipfs/CID/*` matches the empty path, so it allows the block; a path allow rule does not.
        #expect(try decide(["/ipfs/\(v0)", "!/ipfs/\(v0)/*"]) == .allowed)
        #expect(try decide(["/ipfs/\(v0)", "!/ipfs/\(v0)/photo123.jpg"]).reason?.kind == .cid)
        // A lone allow rule allows.
        #expect(try decide(["!/ipfs/\(v0)"]) == .allowed)
    }

    @Test func laterFilesOverrideEarlierOnes() throws {
        let raw = CID(codec: Multicodec.raw, multihash: Self.multihash)
        let deny = try parse("/ipfs/\(raw)\n", file: "a.deny")
        let allow = try parse("# allow\n!/ipfs/\(raw)\n", file: "b.deny")
        let other = try parse("/ipfs/\(try CID(v0: sha256Multihash("other")))\n", file: "c.deny")
        // "rules from later denylists override rules from earlier denylists on conflict"
        #expect(DenylistSnapshot(files: [deny, allow]).decision(for: raw) == .allowed)
        #expect(DenylistSnapshot(files: [allow, deny]).decision(for: raw) == .denied(DenylistReason(file: "a.deny", line: 1, kind: .cid)))
        #expect(DenylistSnapshot(files: [deny, other]).decision(for: raw).reason?.file == "a.deny")
        #expect(DenylistSnapshot.empty.decision(for: raw) == .allowed)
        #expect(DenylistSnapshot(files: [deny, allow, other]).ruleCounts == [.cid: 3])
    }

    @Test func pathAndIPNSRulesAreKeptAsNotApplicable() throws {
        let v0 = try CID(v0: Self.multihash)
        let file = try parse("""
            /ipfs/\(v0)/path
            /ipfs/\(v0)/photo*
            !/ipfs/\(v0)/photo123.jpg hint:x
            /ipns/domain.example
            /ipns/k51qzi5uqu5dhmzyv3zac033i7rl9hkgczxyl81lwoukda2htteop7d3x0y1mf/sub
            /my/path/*
            """)
        #expect(file.counts == [.ipfsPath: 3, .ipns: 2, .path: 1])
        #expect(file.inapplicableRules.map(\.line) == [1, 2, 3, 4, 5, 6])
        let allow = file.inapplicableRules[2]
        #expect(allow.line == 3 && allow.kind == .ipfsPath && allow.allow && allow.rule == "/ipfs/\(v0)/photo123.jpg")
        #expect(file.inapplicableRules[5].rule == "/my/path/*")
        #expect(!DenylistRuleKind.ipfsPath.appliesToBitswap && DenylistRuleKind.cid.appliesToBitswap)
        #expect(DenylistSnapshot(files: [file]).decision(for: v0) == .allowed)
    }

    @Test func headerlessListsAndHints() throws {
        // "echo /ipfs/QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768 >> ~/.config/ipfs/custom.deny"
        let file = try parse("/ipfs/QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768\r\n  /ipfs/\(try CID(v0: Self.multihash)) reason:dmca\tother=1")
        #expect(!file.header.present)
        #expect(file.counts == [.cid: 2])
        #expect(file.lineCount == 2)
        let snapshot = DenylistSnapshot(files: [file])
        #expect(snapshot.decision(for: try cid("bafybeihrw75yfhdx5qsqgesdnxejtjybscwuclpusvxkuttep6h7pkgmze")).reason?.line == 1)
        #expect(snapshot.decision(for: try CID(v0: Self.multihash)).reason?.line == 2)
    }
}
