/// Key → hash slot, as the Redis Cluster specification ("Key distribution model") defines it:
///
/// > "The base algorithm used to map keys to hash slots is the following (read the next paragraph for the
/// > hash tag exception to this rule): `HASH_SLOT = CRC16(key) mod 16384`"
///
/// with the CRC16 variant the specification names: "Name: XMODEM (also known as ZMODEM or CRC-16/ACORN);
/// Width: 16 bit; Poly: 1021 (That is actually x^16 + x^12 + x^5 + 1); Initialization: 0000; Reflect Input
/// byte: False; Reflect Output CRC: False; Xor constant to output CRC: 0000; Output for "123456789": 31C3".
public enum RedisHashSlot {
    /// "There are 16384 hash slots in Redis Cluster".
    public static let count = 16384

    /// CRC-16/XMODEM of `bytes` (MSB first, no reflection, initial value and final XOR 0).
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    /// The hash slot of `key`, honouring hash tags. The specification ("Hash tags"):
    ///
    /// > "if the key contains a "{...}" pattern only the substring between { and } is hashed in order to
    /// > obtain the hash slot. However since it is possible that there are multiple occurrences of { or }
    /// > the algorithm is well specified by the following rules:
    /// > - IF the key contains a { character.
    /// > - AND IF there is a } character to the right of {.
    /// > - AND IF there are one or more characters between the first occurrence of { and the first
    /// >   occurrence of } .
    /// >
    /// > Then instead of hashing the key, only what is between the first occurrence of { and the following
    /// > first occurrence of } is hashed."
    ///
    /// So `foo{}{bar}` hashes whole ("the first occurrence of { is followed by } on the right without
    /// characters in the middle"), `foo{{bar}}zap` hashes `{bar`, and `foo{bar}{zap}` hashes `bar`.
    public static func slot(of key: [UInt8]) -> Int {
        return Int(crc16(hashedPart(of: key)) & 0x3FFF)  // mod 16384
    }

    /// The hash slot of the UTF-8 of `key`.
    public static func slot(of key: String) -> Int { slot(of: Array(key.utf8)) }

    /// The bytes the slot is computed from: the hash tag if the key has a non-empty one, else the key.
    static func hashedPart(of key: [UInt8]) -> ArraySlice<UInt8> {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
              let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
              close > open + 1
        else { return key[...] }
        return key[(open + 1)..<close]
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

/// Which argument of a command is its (first) key, for routing a command to the cluster node that serves
/// the key's slot. The specification: "Redis Cluster implements all the single key commands available in
/// the non-distributed version of Redis. Commands performing complex multi-key operations like set unions
/// and intersections are implemented for cases where all of the keys involved in the operation hash to the
/// same slot", so a command's first key decides where it goes.
///
/// Covers the commands whose key is not simply the first argument (scripts, the `numkeys` forms, OBJECT,
/// XREAD, ...) and those without a key (PING, INFO, SCRIPT, CLUSTER, ...); any other command is taken to
/// have its key first. A command outside this table whose key is elsewhere must be routed explicitly
/// (`RedisClient.send(_:key:)`).
public enum RedisCommandKey {
    private enum Position {
        /// No key: any node can run it.
        case none
        /// The key is the argument at this index (the command name is 0).
        case at(Int)
        /// The argument at this index is `numkeys`; the first key follows it (none when `numkeys` is 0).
        case afterCount(Int)
        /// The first key follows this token (`XREAD ... STREAMS key ...`).
        case afterToken(String)
    }

    private static let positions: [String: Position] = {
        var table: [String: Position] = [:]
        for name in ["PING", "ECHO", "INFO", "SCRIPT", "CLUSTER", "CLIENT", "CONFIG", "DBSIZE", "FLUSHALL",
                     "FLUSHDB", "TIME", "ACL", "AUTH", "SELECT", "HELLO", "COMMAND", "MULTI", "EXEC", "DISCARD",
                     "WAIT", "WAITAOF", "READONLY", "READWRITE", "ASKING", "FUNCTION", "LASTSAVE", "SAVE",
                     "BGSAVE", "BGREWRITEAOF", "SLOWLOG", "LATENCY", "ROLE", "RANDOMKEY", "SCAN", "KEYS",
                     "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "PUBSUB", "DEBUG",
                     "MODULE", "LOLWUT", "SWAPDB", "SHUTDOWN", "QUIT", "RESET"] {
            table[name] = Position.none
        }
        for name in ["OBJECT", "MEMORY", "XINFO", "XGROUP", "BITOP"] { table[name] = .at(2) }
        for name in ["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO", "BLMPOP", "BZMPOP"] {
            table[name] = .afterCount(2)
        }
        for name in ["ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD", "SINTERCARD", "LMPOP", "ZMPOP"] {
            table[name] = .afterCount(1)
        }
        for name in ["XREAD", "XREADGROUP"] { table[name] = .afterToken("STREAMS") }
        return table
    }()

    /// The first key of `command`, or nil when it has none (or too few arguments to have one).
    public static func firstKey(of command: [RedisArgument]) -> RedisArgument? {
        guard let name = command.first else { return nil }
        let position = positions[String(decoding: name.bytes, as: UTF8.self).uppercased()] ?? .at(1)
        switch position {
        case .none:
            return nil
        case .at(let index):
            return index < command.count ? command[index] : nil
        case .afterCount(let index):
            guard index + 1 < command.count,
                  let count = Int(String(decoding: command[index].bytes, as: UTF8.self)), count > 0
            else { return nil }
            return command[index + 1]
        case .afterToken(let token):
            guard let at = command.firstIndex(where: {
                String(decoding: $0.bytes, as: UTF8.self).uppercased() == token
            }), at + 1 < command.count else { return nil }
            return command[at + 1]
        }
    }
}
