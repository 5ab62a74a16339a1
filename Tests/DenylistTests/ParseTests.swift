import Denylist
import Multiformats
import Testing

@Suite struct ParseTests {
    static let rule = "/ipfs/QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768"

    @Test func headerFields() throws {
        let file = try parse("""
            # a comment before the fields
            version: 1
            name: "Quoted \\"name\\""
            author: 'it''s me'   
            description: >
              folded over
              two lines
            custom:
              - anything: [1, 2]
                nested: {a: b}
            hints:
              gateway_status: 410   # a comment
              "quoted": 'v'
            other: [flow, list]
            ---
            \(Self.rule)
            """)
        #expect(file.header.present)
        #expect(file.header.version == 1)
        #expect(file.header.name == "Quoted \"name\"")
        #expect(file.header.author == "it's me")
        #expect(file.header.description == "folded over two lines\n")
        #expect(file.header.hints == ["gateway_status": "410", "quoted": "v"])
        #expect(file.counts == [.cid: 1])
        #expect(file.lineCount == 16)
        #expect(DenylistSnapshot(files: [file]).decision(for: try cid("QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768")).reason?.line == 16)
    }

    @Test func emptyHeaderAndDefaults() throws {
        let file = try parse("---\n\(Self.rule)\n")
        #expect(file.header.present && file.header.version == 1 && file.header.name == nil && file.header.hints.isEmpty)
        #expect(file.counts == [.cid: 1])
    }

    @Test func badHeaders() throws {
        let unsupported = parseError("version: 2\n---\n")
        #expect(unsupported == DenylistError(file: "bad.deny", line: 1, problem: .unsupportedVersion("2")))
        #expect(unsupported?.description == "bad.deny:1: unsupported denylist version 2 (only 1 is known)")
        #expect(parseError("name: x\nname: y\n---\n")?.line == 2)
        #expect(parseError("name: [a, b]\n---\n")?.line == 1)
        #expect(parseError("version: one\n---\n")?.line == 1)
        #expect(parseError("name: x\nnot yaml\n---\n")?.line == 2)
        #expect(parseError("hints:\n  a: b\n    c: d\n---\n")?.line == 3)
        if case .badHeader = parseError("name: \"open\n---\n")?.problem {} else { Issue.record("want badHeader") }
    }

    @Test func overLongHeaderIsAnErrorNamingFileAndLine() throws {
        // "If the size limit is reached, assume the list includes no header and start parsing block items from
        // the beginning": the first field line is then not a rule.
        let long = "version: 1\ndescription: " + String(repeating: "x", count: DenylistFile.maxHeaderBytes) + "\n---\n"
        let error = try #require(parseError(long, file: "big.deny"))
        #expect(error.file == "big.deny" && error.line == 1)
        #expect(error.description.contains("1048576"), "\(error)")

        // A header of comments only reads fine as rules, up to the late `---`.
        let comments = String(repeating: "# " + String(repeating: "c", count: 1000) + "\n", count: 1100)
        let late = try #require(parseError(comments + "---\n" + Self.rule + "\n"))
        #expect(late == DenylistError(file: "bad.deny", line: 1101, problem: .headerTooLong(limit: DenylistFile.maxHeaderBytes)))

        // Exactly at the bound, `---\n` included, is still a header.
        let filler = String(repeating: "y", count: DenylistFile.maxHeaderBytes - "name: \n---\n".utf8.count)
        let fits = try parse("name: \(filler)\n---\n\(Self.rule)\n")
        #expect(fits.header.name?.count == filler.count)
        #expect(parseError("name: \(filler)y\n---\n\(Self.rule)\n")?.line == 1)
    }

    @Test func overLongLine() throws {
        let long = "/ipns/" + String(repeating: "a", count: DenylistFile.maxLineBytes)
        let error = parseError("\(Self.rule)\n# fine\n\(long)\n\(Self.rule)\n")
        #expect(error == DenylistError(file: "bad.deny", line: 3, problem: .lineTooLong(limit: DenylistFile.maxLineBytes)))
        // The bound counts the "\n": 2 MiB - 1 characters and a newline are allowed.
        let most = "/ipns/" + String(repeating: "a", count: DenylistFile.maxLineBytes - 7)
        #expect(try parse(most + "\n").counts == [.ipns: 1])
        #expect(parseError(most + "a\n")?.line == 1)
    }

    @Test func badRulesNameFileAndLine() throws {
        let cases: [(String, Int)] = [
            ("\(Self.rule)\n/ipfs/notacid\n", 2),
            ("# garbage next\n\nhello world\n", 3),
            ("//xyz\n", 1),
            ("//d9d295bde21f422d471a90f2a37ec53049fdf3e5fa3ee2e8f20e10003da429\n", 1),  // 62 hex digits
            ("/ipfs/\n", 1),
            ("/ipns/\n", 1),
            ("/\n", 1),
            ("!\n", 1),
            ("!!/ipfs/QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768\n", 1),
            ("-/ipfs/QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768\n", 1),
            ("\(Self.rule)\n---\n", 1),  // a `---` makes what is above it a header, and a rule is not YAML
            ("---\n\(Self.rule)\n---\n", 3),  // a second `---`
            ("/ipfs/QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768\n" + "/ipfs/z\u{FF}\n", 2),
        ]
        for (text, line) in cases {
            let error = parseError(text, file: "lists/x.deny")
            #expect(error?.file == "lists/x.deny" && error?.line == line, "\(text.prefix(60)): \(String(describing: error))")
            #expect(error?.description.hasPrefix("lists/x.deny:\(line): ") == true, "\(String(describing: error))")
        }
        // A double hash of a function edgeswap does not compute (sha3-256, 0x16) is not a rule it can enforce.
        let sha3 = Multihash(code: 0x16, digest: [UInt8](repeating: 7, count: 32))
        #expect(parseError("//\(b58(sha3))\n")?.line == 1)
        // "A denylist is a UTF-8 encoded text file".
        var bytes = Array("\(Self.rule)\n/ipns/".utf8)
        bytes.append(0xFF)
        #expect(throws: DenylistError(file: "b.deny", line: 2, problem: .badRule("line is not valid UTF-8"))) {
            try DenylistFile(bytes: bytes, file: "b.deny")
        }
    }

    @Test func missingFile() {
        #expect(throws: DenylistError.self) { try DenylistFile(contentsOf: "/nonexistent/edgeswap.deny") }
        do throws(DenylistError) {
            _ = try DenylistFile(contentsOf: "/nonexistent/edgeswap.deny")
            Issue.record("a missing file parsed")
        } catch {
            #expect(error.file == "/nonexistent/edgeswap.deny" && error.line == nil)
            #expect(error.description.contains("No such file"), "\(error)")
        }
    }
}
