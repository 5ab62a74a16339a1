import Redis
import Testing

/// The hiredis reader wrapper and the command encoder, on bytes (no server).
@Suite struct ReplyReaderTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func everyReplyTypeParses() throws {
        let reader = RedisReplyReader()
        let wire = "+OK\r\n-ERR bad thing\r\n:-42\r\n$5\r\nhe\0lo\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
            + "*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n+s\r\n"
        let replies = try reader.feed(bytes(wire))
        #expect(replies == [
            .simpleString("OK"), .error("ERR bad thing"), .integer(-42), .bulkString([0x68, 0x65, 0, 0x6C, 0x6F]),
            .bulkString([]), .null, .null, .array([]),
            .array([.integer(1), .array([.bulkString([0x78]), .null]), .simpleString("s")]),
        ])
        #expect(reader.bufferedBytes == 0)
    }

    @Test func replySplitAcrossFeedsCompletesOnLastByte() throws {
        let reader = RedisReplyReader()
        let wire = bytes("*2\r\n$10\r\n0123456789\r\n:7\r\n")
        var collected: [RedisValue] = []
        for (index, byte) in wire.enumerated() {
            let replies = try reader.feed([byte])
            if index < wire.count - 1 { #expect(replies.isEmpty, "reply complete early at byte \(index)") }
            collected += replies
        }
        #expect(collected == [.array([.bulkString(Array("0123456789".utf8)), .integer(7)])])
    }

    @Test func malformedReplyIsProtocolError() throws {
        let reader = RedisReplyReader()
        #expect(try reader.feed(bytes("+OK\r\n")) == [.simpleString("OK")])
        // `?` is no RESP2 type byte.
        let error = #expect(throws: RedisError.self) { try reader.feed(bytes("?what\r\n")) }
        guard case .protocolError(let message)? = error else {
            Issue.record("expected a protocol error, got \(String(describing: error))")
            return
        }
        #expect(message.contains("type"), "message: \(message)")
        // The reader is spent: more bytes keep failing with the same error.
        #expect(throws: RedisError.protocolError(message)) { try reader.feed(bytes("+OK\r\n")) }
    }

    @Test func badBulkLengthIsProtocolError() throws {
        let reader = RedisReplyReader()
        let error = #expect(throws: RedisError.self) { try reader.feed(bytes("$abc\r\nxyz\r\n")) }
        guard case .protocolError? = error else {
            Issue.record("expected a protocol error, got \(String(describing: error))")
            return
        }
    }

    @Test func replyOverTheByteLimitIsRefusedBeforeItIsBuffered() throws {
        let reader = RedisReplyReader(maxReplyBytes: 1024)
        // A header announcing 1 GB: the reader must not wait for it past the limit.
        _ = try reader.feed(bytes("$1000000000\r\n"))
        let chunk = [UInt8](repeating: 0x61, count: 600)
        _ = try reader.feed(chunk)
        let error = #expect(throws: RedisError.self) { try reader.feed(chunk) }
        guard case .protocolError(let message)? = error else {
            Issue.record("expected a protocol error, got \(String(describing: error))")
            return
        }
        #expect(message.contains("1024"), "message: \(message)")
    }

    @Test func manySmallRepliesInOneFeedDoNotCountAgainstTheLimit() throws {
        let reader = RedisReplyReader(maxReplyBytes: 64)
        let wire = bytes(String(repeating: ":12345\r\n", count: 1000))
        let replies = try reader.feed(wire)
        #expect(replies.count == 1000)
        #expect(replies.allSatisfy { $0 == .integer(12345) })
    }

    @Test func arrayOverTheElementLimitIsRefusedFromItsHeader() throws {
        let reader = RedisReplyReader(maxReplyElements: 10)
        #expect(try reader.feed(bytes("*10\r\n" + String(repeating: ":1\r\n", count: 10))).count == 1)
        let error = #expect(throws: RedisError.self) { try reader.feed(bytes("*2147483647\r\n")) }
        guard case .protocolError(let message)? = error else {
            Issue.record("expected a protocol error, got \(String(describing: error))")
            return
        }
        #expect(message.contains("2147483647"), "message: \(message)")
    }

    @Test func nestedArraysShareOneElementBudget() throws {
        let reader = RedisReplyReader(maxReplyElements: 5)
        // 2 + 3 elements fit; the budget is restored once the reply is complete.
        let fits = "*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n:4\r\n"
        #expect(try reader.feed(bytes(fits + fits)).count == 2)
        #expect(throws: RedisError.self) { try reader.feed(bytes("*2\r\n*4\r\n")) }
    }

    @Test func encoderIsBinarySafe() {
        let encoded = RedisCommandEncoder.encode(["SET", RedisArgument(bytes: [0, 13, 10, 0xFF]), ""])
        let expected: [UInt8] = Array("*3\r\n$3\r\nSET\r\n$4\r\n".utf8) + [0, 13, 10, 0xFF]
            + Array("\r\n$0\r\n\r\n".utf8)
        #expect(encoded == expected)
        #expect(RedisCommandEncoder.encode(["EXPIRE", "k", RedisArgument(-5)])
                == Array("*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n-5\r\n".utf8))
    }

    @Test func encodedCommandParsesBackAsTheSameArray() throws {
        let arguments: [RedisArgument] = ["MSET", RedisArgument(bytes: Array(0...255)), "v\r\n"]
        let reader = RedisReplyReader()
        let replies = try reader.feed(RedisCommandEncoder.encode(arguments))
        #expect(replies == [.array(arguments.map { .bulkString($0.bytes) })])
    }
}

@Suite struct ConfigurationTests {
    @Test func parsesFullURL() throws {
        let configuration = try RedisConfiguration(url: "redis://alice:p%40ss%3Aword@cache.internal:6380/7")
        #expect(configuration.host == "cache.internal")
        #expect(configuration.port == 6380)
        #expect(configuration.username == "alice")
        #expect(configuration.password == "p@ss:word")
        #expect(configuration.database == 7)
        #expect(configuration.description == "redis://alice:***@cache.internal:6380/7")
    }

    @Test func parsesMinimalAndPasswordOnlyURLs() throws {
        let minimal = try RedisConfiguration(url: "redis://localhost")
        #expect(minimal.host == "localhost" && minimal.port == 6379 && minimal.database == 0)
        #expect(minimal.username == nil && minimal.password == nil)
        let passwordOnly = try RedisConfiguration(url: "redis://:secret@127.0.0.1:7000")
        #expect(passwordOnly.username == nil && passwordOnly.password == "secret" && passwordOnly.port == 7000)
        let ipv6 = try RedisConfiguration(url: "redis://[::1]:6390/2")
        #expect(ipv6.host == "::1" && ipv6.port == 6390 && ipv6.database == 2)
        #expect(ipv6.address == "[::1]:6390")
    }

    @Test(arguments: [
        "http://localhost:6379", "redis://", "redis://host:0", "redis://host:99999", "redis://host:abc",
        "redis://host/x", "redis://host/-1", "redis://[::1", "redis://u:%zz@host",
    ])
    func rejectsBadURLs(url: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        guard case .invalidURL? = error else {
            Issue.record("expected invalidURL for \(url), got \(String(describing: error))")
            return
        }
    }
}
