import Testing
@testable import Multiformats

@Suite struct BLAKE2bTests {
    /// RFC 7693 Appendix A: BLAKE2b-512("abc").
    @Test func rfc7693AppendixA() {
        let digest = Array("abc".utf8).withUnsafeBytes { BLAKE2b.hash($0, outputLength: 64) }
        #expect(hex(digest) == "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
                + "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")
    }

    /// Known answers computed with Python's `hashlib.blake2b(data, digest_size=n)` (CPython's libb2 /
    /// reference code); data byte i is i mod 251. Lengths straddle the 128-byte block.
    static let knownAnswers: [(Int, Int, String)] = [
        (0, 1, "2e"),
        (0, 20, "3345524abf6bbe1809449224b5972c41790b6cf2"),
        (0, 32, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"),
        (0, 48, "b32811423377f52d7862286ee1a72ee540524380fda1724a6f25d7978c6fd3244a6caf0498812673c5e05ef583825100"),
        (0, 64, "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce"),
        (1, 20, "082ad992fb76871c33a1b9993a082952feaca5e6"),
        (1, 32, "03170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314"),
        (1, 64, "2fa3f686df876995167e7c2e5d74c4c7b6e48f8068fe0e44208344d480f7904c36963e44115fe3eb2a3ac8694c28bcb4f5a0f3276f2e79487d8219057a506e4b"),
        (3, 20, "147420788d27f83264eb55bad410d304540a21d9"),
        (3, 32, "3d8c3d594928271f44aad7a04b177154806867bcf918e1549c0bc16f9da2b09b"),
        (3, 64, "40a374727302d9a4769c17b5f409ff32f58aa24ff122d7603e4fda1509e919d4107a52c57570a6d94e50967aea573b11f86f473f537565c66f7039830a85d186"),
        (127, 20, "535975c8d8c5dd9ed14a9204757b06783dd7b1fb"),
        (127, 32, "f2fe67ff342e21b8f45e8f2e0bcd1d9243245d50ee6c78042e9c491388791c72"),
        (127, 64, "b6292669ccd38d5f01caae96ba272c76a879a45743afa0725d83b9ebb26665b731f1848c52f11972b6644f554c064fa90780dbbbf3a89d4fc31f67df3e5857ef"),
        (128, 20, "e6992372ab022447b34f6d6032fbab707a11adef"),
        (128, 32, "c3582f71ebb2be66fa5dd750f80baae97554f3b015663c8be377cfcb2488c1d1"),
        (128, 64, "2319e3789c47e2daa5fe807f61bec2a1a6537fa03f19ff32e87eecbfd64b7e0e8ccff439ac333b040f19b0c4ddd11a61e24ac1fe0f10a039806c5dcc0da3d115"),
        (129, 1, "c7"),
        (129, 20, "a7bf25f1599102ab631e3052e8303a2c097d1a7e"),
        (129, 32, "f7f3c46ba2564ff4c4c162da1f5b605f9f1c4aa6a20652a9f9a337c1a2f5b9c9"),
        (129, 48, "a95db6e5ccd191793ad20179bfd63e8c7aedf0cc1084549f73127e3fccc738b405ac2a93d692e76214320089121073e5"),
        (129, 64, "f59711d44a031d5f97a9413c065d1e614c417ede998590325f49bad2fd444d3e4418be19aec4e11449ac1a57207898bc57d76a1bcf3566292c20c683a5c4648f"),
        (255, 20, "788371d770b5f64dbb065859da7e3352f6d20ea3"),
        (255, 32, "d9ef0fc521b4266d16df662bec231bc2ec3989e7adeaf63169c295dc239dbbea"),
        (255, 64, "fe2c02da499516b0e9fb2dd70c49eb3629039f632e20a880946fb7bc97a7ab09deb7d48774d7f0648141c9d9ede19ae6e0dbf07863a128cf4b00195f0f179f74"),
        (256, 20, "cd885d4187d2a1bee1e536edd1a23a87f993980c"),
        (256, 32, "582f782226018ec33076bd8d1c42413530ac7e1126260ffc0f306ba3befc3f24"),
        (256, 64, "93463ac058b6163eb43be3f5bb32b28541498f4e3366f1effe253ad44e1e076e41c3616046027c82a7124f8f4746668ad10b12e8e25a95ac8f3151df01cd5a93"),
        (257, 20, "b194724f980678f0b3e381e0bb10dfedb4da9e81"),
        (257, 32, "227e15ed64ee8e93eb7bc53828f76eed974f2c4ab1408c3d08f212b7f8d69904"),
        (257, 64, "9ca40e2ddee9436dbbd08efc65dbaf4870059f5eb3d76efd20241ae5bf13c60f250b882ea5c564838257a3fc95c496819ace2c6490b55b268535208dfc31822c"),
        (1000, 1, "b7"),
        (1000, 20, "fc9a2426db78846a07219bc181a52bae9a62eacc"),
        (1000, 32, "b372d0608f720c8c3dd41e9c8eecb10143b41abe520b616607e754bf79c08331"),
        (1000, 48, "f0a7a4bb3c3290f432e513caa227ab3bf933c4c8c167193dff1cb10a0b992f042f5679e477f00c551e2cf2bec8101f1e"),
        (1000, 64, "c11e1c0340bd7e5a1b275f1230c962fad215ecb1391486e74e31b960a2f2996381a5fad092da06841d5f26e38f6ecfeaf441acbcd1c2de61aef121e7927175f5"),
        (4096, 20, "098b41c41df856026b77e3f2207913b5a5e47150"),
        (4096, 32, "11c294a11dc67e3ddb25f8c06cca2721e58d2a044243abea6c7063fd17d589e5"),
        (4096, 64, "c7a3d6a53bd11772ecf077c1dc9633a39c6fe691ec07a530e0e765c0a9d5a01a16f00995536578b83e54c2821766ac7ac6ae86e22269a5d14208ccac954cc95f"),
    ]

    @Test func knownAnswersOneShotAndIncremental() {
        for (length, outputLength, expected) in Self.knownAnswers {
            let input = patternInput(length)
            #expect(hex(input.withUnsafeBytes { BLAKE2b.hash($0, outputLength: outputLength) }) == expected,
                    "length \(length) output \(outputLength)")
            for piece in [1, 127, 128, 129] {
                var hasher = BLAKE2b.Hasher(outputLength: outputLength)
                var offset = 0
                while offset < input.count {
                    let end = min(offset + piece, input.count)
                    input[offset..<end].withUnsafeBytes { hasher.update($0) }
                    offset = end
                }
                #expect(hex(hasher.finalize()) == expected, "length \(length) piece \(piece)")
            }
        }
    }

    @Test func blake2b256MultihashUsesIt() throws {
        let input = patternInput(1000)
        let mh = try input.withUnsafeBytes { try Multihash.compute(code: Multicodec.blake2b_256, of: $0) }
        #expect(hex(mh.digest) == "b372d0608f720c8c3dd41e9c8eecb10143b41abe520b616607e754bf79c08331")
        #expect(try input.withUnsafeBytes { try mh.verify($0) })
    }
}
