import Testing
@testable import Multiformats

@Suite struct MultiaddrTests {
    /// Text ↔ binary vectors from the reference implementations' suites (rust-multiaddr `tests/lib.rs`
    /// `ma_valid`, go-multiaddr `multiaddr_test.go`, java-multiaddr), restricted to protocols we support.
    static let vectors: [(String, String)] = [
        ("/ip4/1.2.3.4", "0401020304"),
        ("/ip4/0.0.0.0", "0400000000"),
        ("/ip6/::1", "2900000000000000000000000000000001"),
        ("/ip6/2601:9:4f81:9700:803e:ca65:66e8:c21", "29260100094f819700803eca6566e80c21"),
        ("/ip6/2001:8a0:7ac5:4201:3ac9:86ff:fe31:7095/tcp/5000", "29200108a07ac542013ac986fffe317095061388"),
        ("/ip6/::1/tcp/38539", "290000000000000000000000000000000106968b"),
        ("/tcp/0", "060000"),
        ("/tcp/1234", "0604d2"),
        ("/tcp/65535", "06ffff"),
        ("/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC",
         "a503221220d52ebb89d85b02a284948203a62ff28389c57c9f42beec4ec20db76a68911c0b"),
        ("/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC/tcp/1234",
         "a503221220d52ebb89d85b02a284948203a62ff28389c57c9f42beec4ec20db76a68911c0b0604d2"),
        ("/tcp/1234/tls", "0604d2c003"),
        ("/ip4/127.0.0.1/tcp/1234", "047f0000010604d2"),
        ("/ip4/127.0.0.1/tcp/12345", "047f000001063039"),
        ("/ip4/127.0.0.1/tcp/4001/ip4/192.168.2.1/tcp/5001", "047f000001060fa104c0a80201061389"),
        ("/dnsaddr/sjc-1.bootstrap.libp2p.io", "3819736a632d312e626f6f7473747261702e6c69627032702e696f"),
        ("/ip4/127.0.0.1/tcp/127/ws", "047f00000106007fdd03"),
        ("/ip4/127.0.0.1/tcp/127/tls", "047f00000106007fc003"),
        ("/ip4/127.0.0.1/tcp/127/tls/ws", "047f00000106007fc003dd03"),
        ("/ip4/127.0.0.1/tcp/127/wss", "047f00000106007fde03"),
    ]

    @Test func specVectors() throws {
        for (text, hexString) in Self.vectors {
            let ma = try Multiaddr(text)
            #expect(hex(ma.bytes) == hexString, "\(text)")
            #expect(ma.description == text)
            let decoded = try Multiaddr(bytes: try #require(hexBytes(hexString)))
            #expect(decoded == ma, "\(text)")
            #expect(decoded.description == text)
        }
    }

    /// A peer ID given as base58btc or as a libp2p-key CIDv1 (base32 or base36) is the same multihash and
    /// prints as base58btc. Strings computed with Python from the multihash bytes.
    @Test func peerIDForms() throws {
        let ed25519 = "12D3KooW9tJMax94Lrqw7Y5Qw36viGQAS2gTEPQ5Wg1vTk7xPfQs"
        let mhHex = "0024080112200102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
        for form in [ed25519, "bafzaajaiaejcaaicamcakbqhbaequcymbuha6earcijrifiwc4mbsgq3dqor4hza",
                     "k51qzi5uqu5dg7hrs1jyr49oygapxsw71v7pv43rk8lemejo9h2m3hkzvww8io"] {
            let ma = try Multiaddr("/ip4/127.0.0.1/tcp/4001/ws/p2p/" + form)
            #expect(hex(try #require(ma.peerIDMultihash).bytes) == mhHex, "\(form)")
            #expect(ma.description == "/ip4/127.0.0.1/tcp/4001/ws/p2p/" + ed25519)
            #expect(try Multiaddr(bytes: ma.bytes) == ma)
        }
        // Hoverboard's production address (a sha2-256 peer ID as a CID).
        let prod = try Multiaddr(
            "/dns4/elastic.dag.house/tcp/443/wss/p2p/bafzbeibhqavlasjc7dvbiopygwncnrtvjd2xmryk5laib7zyjor6kf3avm")
        #expect(prod.description == "/dns4/elastic.dag.house/tcp/443/wss/p2p/QmQzqxhK82kAmKvARFZSkUVS6fo9sySaiogAnx5EnZ6ZmC")
        #expect(hex(try #require(prod.peerIDMultihash).bytes)
                == "122027802ab04922f8ea1439f8359a26c67548f576470aeac080ff384ba3e51760ab")
        #expect(prod.tcpPort == 443)
        #expect(prod.dnsName == "elastic.dag.house")
        #expect(prod.host == "elastic.dag.house")
        #expect(prod.components == [.dns4("elastic.dag.house"), .tcp(443), .wss, .p2p(try #require(prod.peerIDMultihash))])
        // The legacy "/ipfs/" name reads as /p2p.
        #expect(try Multiaddr("/ipfs/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC").description
                == "/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC")
    }

    @Test func conveniences() throws {
        let base = try Multiaddr("/ip4/10.0.0.1/tcp/4001")
        let peer = try Multiaddr.parsePeerID("QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC")
        let full = base.appending(.ws).appending(.p2p(peer))
        #expect(full.description == "/ip4/10.0.0.1/tcp/4001/ws/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC")
        #expect(full.withoutPeerID.description == "/ip4/10.0.0.1/tcp/4001/ws")
        #expect(base.appending(try Multiaddr("/tls/sni/example.com/ws")).description
                == "/ip4/10.0.0.1/tcp/4001/tls/sni/example.com/ws")
        #expect(full.peerIDMultihash == peer)
        #expect(full.ip4Address == IPv4Address(10, 0, 0, 1))
        #expect(full.ip6Address == nil && full.dnsName == nil)
        #expect(full.host == "10.0.0.1")
        #expect(base.peerIDMultihash == nil)
        let v6 = try Multiaddr("/ip6/2001:db8::1/tcp/443/tls/sni/edge.example/ws")
        #expect(v6.ip6Address?.description == "2001:db8::1")
        #expect(v6.host == "2001:db8::1")
        #expect(try Multiaddr(bytes: v6.bytes) == v6)
        // Trailing slash tolerated, as go-multiaddr does.
        #expect(try Multiaddr("/ip4/1.2.3.4/tcp/80/") == Multiaddr("/ip4/1.2.3.4/tcp/80"))
        for name in ["dns", "dns4", "dns6", "dnsaddr"] {
            let ma = try Multiaddr("/\(name)/example.com/tcp/443/wss")
            #expect(ma.description == "/\(name)/example.com/tcp/443/wss")
            #expect(ma.dnsName == "example.com")
            #expect(try Multiaddr(bytes: ma.bytes) == ma)
        }
    }

    /// RFC 5952 canonical text (its section 4 examples) after parsing any valid spelling.
    @Test func ipv6CanonicalText() throws {
        let cases: [(String, String)] = [
            ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
            ("2001:db8:0:0:0:0:2:1", "2001:db8::2:1"),
            ("2001:db8::0:1", "2001:db8::1"),  // §4.2.1: shorten as much as possible
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // §4.2.2: not for one zero field
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  // §4.2.3: longest run
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // §4.2.3: first of equal runs
            ("2001:DB8::AAAA", "2001:db8::aaaa"),  // §4.3: lowercase
            ("::", "::"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("1::", "1::"),
            ("fe80::1:2:3:4", "fe80::1:2:3:4"),
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),  // §5: IPv4-mapped
            ("0:0:0:0:0:ffff:c000:0201", "::ffff:192.0.2.1"),
            ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ]
        for (input, canonical) in cases {
            let a = try #require(IPv6Address(input), "\(input)")
            #expect(a.description == canonical, "\(input)")
            #expect(IPv6Address(canonical) == a)
            let ma = try Multiaddr("/ip6/" + input)
            #expect(ma.description == "/ip6/" + canonical)
        }
        for bad in ["", ":", ":::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7::8",
                    "::1%eth0", "::1.2.3", "+1::", "1.2.3.4", "::ffff:1.2.3.256"] {
            #expect(IPv6Address(bad) == nil, "\(bad)")
        }
    }

    @Test func badTextInputs() {
        let cases: [(String, String)] = [
            ("", "must start with '/'"),
            ("/", "empty multiaddr"),
            ("ip4/1.2.3.4", "must start with '/'"),
            ("/ip4", "/ip4 needs a value"),
            ("/ip4/::1", "'::1' is not an IPv4 address"),
            ("/ip4/fdpsofodsajfdoisa", "'fdpsofodsajfdoisa' is not an IPv4 address"),
            ("/ip4/1.2.3.256", "'1.2.3.256' is not an IPv4 address"),
            ("/ip4/01.2.3.4", "'01.2.3.4' is not an IPv4 address"),
            ("/ip6", "/ip6 needs a value"),
            ("/ip6/1.2.3.4", "'1.2.3.4' is not an IPv6 address"),
            ("/tcp", "/tcp needs a value"),
            ("/tcp/65536", "'65536' is not a TCP port (0-65535)"),
            ("/ip4/1.2.3.4/tcp/-1", "'-1' is not a TCP port (0-65535)"),
            ("/ip4/1.2.3.4/tcp/+80", "'+80' is not a TCP port (0-65535)"),
            ("/ip4/127.0.0.1/tcp/jfodsajfidosajfoidsa", "'jfodsajfidosajfoidsa' is not a TCP port (0-65535)"),
            ("/ip4/127.0.0.1/udp/1234", "unsupported protocol 'udp'"),
            ("/ip4/127.0.0.1/unknown", "unsupported protocol 'unknown'"),
            ("/ip4/1.2.3.4//tcp/80", "empty component"),
            ("/ip4/127.0.0.1/p2p", "/p2p needs a value"),
            ("/ip4/127.0.0.1/p2p/tcp",
             "peer ID 'tcp' is neither base58btc nor a CID: invalid base32hexpad: length 2 is not a multiple of 8"),
            ("/dns4", "/dns4 needs a value"),
            ("/sni", "/sni needs a value"),
            ("/dns/" + String(repeating: "a", count: 256), "/dns name of 256 bytes is over 255"),
        ]
        for (text, reason) in cases {
            #expect(throws: MultiformatsError.invalidMultiaddr(reason), "\(text)") { try Multiaddr(text) }
        }
        // Peer IDs: a CID that is not libp2p-key, base58 that is not a multihash, a non-peer multihash.
        #expect(throws: MultiformatsError.invalidMultiaddr(
            "CID 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' is not a libp2p-key CIDv1")) {
            try Multiaddr("/p2p/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
        }
        #expect(throws: (MultiformatsError.self)) { try Multiaddr("/p2p/QmInvalid0") }
        #expect(throws: MultiformatsError.invalidMultiaddr(
            "peer ID multihash must be sha2-256 (32 bytes) or identity (<= 42 bytes)")) {
            // An identity multihash over 42 bytes (base58btc starting with "1", its leading 0x00 byte).
            try Multiaddr("/p2p/" + Multibase.base58btc.encodeWithoutPrefix(
                Multihash(code: Multicodec.identity, digest: [UInt8](repeating: 1, count: 43)).bytes))
        }
        #expect(throws: MultiformatsError.invalidMultiaddr(
            "text of 1025 bytes is over the 1024-byte limit")) {
            try Multiaddr("/dns/" + String(repeating: "a", count: 1020))
        }
    }

    @Test func badBinaryInputs() {
        let cases: [([UInt8], String)] = [
            ([], "empty multiaddr"),
            ([0x04, 0x7f, 0x00, 0x00], "ip4 needs 4 bytes at byte 1, 3 left"),
            ([0x06, 0x01], "tcp needs 2 bytes at byte 1, 1 left"),
            ([0x29] + [UInt8](repeating: 0, count: 15), "ip6 needs 16 bytes at byte 1, 15 left"),
            ([0x91, 0x02, 0x04, 0xd2], "unsupported protocol code 273 at byte 2"),
            ([0x80], "bad protocol code varint at byte 0: truncated"),
            ([0x80, 0x00], "bad protocol code varint at byte 0: nonMinimal"),
            ([0x35, 0x05, 0x61], "dns length 5 at byte 2 runs past the end"),
            ([0x35, 0x00], "/dns needs a value"),
            ([0x35, 0x02, 0xff, 0xfe], "/dns value is not UTF-8"),
            ([0x35, 0x03, 0x61, 0x2f, 0x62], "/dns name 'a/b' has a '/' or a control character"),
            ([0xa5, 0x03, 0x03, 0x12, 0x20, 0x00], "peer ID is not a multihash: truncated multihash digest"),
            ([0xa5, 0x03, 0x03, 0x1e, 0x01, 0x00], "peer ID multihash must be sha2-256 (32 bytes) or identity (<= 42 bytes)"),
            ([UInt8](repeating: 0xdd, count: 1025), "1025 bytes is over the 1024-byte limit"),
        ]
        for (bytes, reason) in cases {
            #expect(throws: MultiformatsError.invalidMultiaddr(reason), "\(hex(bytes))") { try Multiaddr(bytes: bytes) }
        }
    }
}
