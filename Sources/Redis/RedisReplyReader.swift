internal import CHiredis
import NIOCore

/// Incremental RESP2 reply parser over hiredis' reader (`redisReaderCreate` / `redisReaderFeed` /
/// `redisReaderGetReply`), with memory bounds hiredis does not have on its own.
///
/// One per connection and confined to it (not `Sendable`). Bytes go in as they arrive; whole replies come
/// out as `RedisValue`s (hiredis' reply objects are converted and freed at once). hiredis buffers a reply
/// until it is complete, and a bulk header such as `$999999999999\r\n` would make it wait for (and buffer)
/// that much, so this wrapper counts the bytes of the reply in progress and fails with
/// `RedisError.protocolError` once they pass `maxReplyBytes`; it also refuses arrays once one reply has
/// announced more than `maxReplyElements` elements in total (hiredis allocates the element vector from the
/// header alone). After any error the reader is spent: the connection must be closed.
public final class RedisReplyReader {
    /// The largest reply accepted, counted in wire bytes.
    public let maxReplyBytes: Int
    /// The most array elements accepted in one reply (all nesting levels together).
    public let maxReplyElements: Int

    private let reader: UnsafeMutablePointer<redisReader>
    /// hiredis' default object functions, except `createArray`, which checks the element budget first.
    private let functions: UnsafeMutablePointer<redisReplyObjectFunctions>
    private let context: UnsafeMutablePointer<ArrayBudget>
    /// Wire bytes fed that belong to the reply in progress (an upper bound: they may include the start of
    /// the next one).
    private var pendingBytes = 0
    private var failure: RedisError?

    /// hiredis gets at most this much per `redisReaderFeed`, so the size check runs between slices and
    /// at most `maxReplyBytes` + one slice is ever buffered.
    private static let feedSlice = 64 * 1024

    /// Creates a reader; `maxReplyBytes` and `maxReplyElements` must be positive.
    public init(maxReplyBytes: Int = 64 << 20, maxReplyElements: Int = 1 << 20) {
        precondition(maxReplyBytes > 0 && maxReplyElements > 0, "reply limits must be positive")
        self.maxReplyBytes = maxReplyBytes
        self.maxReplyElements = maxReplyElements
        guard let reader = redisReaderCreate() else { fatalError("redisReaderCreate: out of memory") }
        self.reader = reader
        let defaults = reader.pointee.fn.pointee
        context = .allocate(capacity: 1)
        context.initialize(to: ArrayBudget(
            defaultCreateArray: defaults.createArray, remaining: maxReplyElements, refused: nil))
        functions = .allocate(capacity: 1)
        functions.initialize(to: defaults)
        // Runs inside redisReaderGetReply for every array header; `task.privdata` is the reader's privdata
        // (hiredis copies it into each read task), i.e. `context`.
        functions.pointee.createArray = { task, elements in
            guard let task, let raw = task.pointee.privdata else { return nil }
            let budget = raw.assumingMemoryBound(to: ArrayBudget.self)
            guard Int(elements) <= budget.pointee.remaining else {
                budget.pointee.refused = Int(elements)
                return nil  // hiredis reports this as out of memory; `error()` says what really happened
            }
            budget.pointee.remaining -= Int(elements)
            return budget.pointee.defaultCreateArray?(task, elements)
        }
        reader.pointee.fn = functions
        reader.pointee.privdata = UnsafeMutableRawPointer(context)
    }

    deinit {
        // Frees a half-built reply through `reader.fn.freeObject` (hiredis' own), then the reader.
        redisReaderFree(reader)
        functions.deinitialize(count: 1)
        functions.deallocate()
        context.deinitialize(count: 1)
        context.deallocate()
    }

    /// Bytes fed that belong to the reply not yet complete.
    public var bufferedBytes: Int { pendingBytes }

    /// Feeds `bytes` and appends every reply they complete to `replies`, in order.
    public func feed(_ bytes: UnsafeRawBufferPointer, into replies: inout [RedisValue]) throws(RedisError) {
        if let failure { throw failure }
        var offset = 0
        while offset < bytes.count {
            let count = min(Self.feedSlice, bytes.count - offset)
            let base = bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self)
            guard redisReaderFeed(reader, base, count) == REDIS_OK else { throw fail(error()) }
            pendingBytes += count
            offset += count
            try drain(into: &replies)
            if pendingBytes > maxReplyBytes {
                throw fail(.protocolError(
                    "reply larger than the limit of \(maxReplyBytes) bytes (\(pendingBytes) bytes buffered)"))
            }
        }
    }

    /// Feeds a buffer's readable bytes (without consuming them).
    public func feed(_ buffer: ByteBuffer, into replies: inout [RedisValue]) throws(RedisError) {
        let result: Result<Void, RedisError> = buffer.withUnsafeReadableBytes { bytes in
            do throws(RedisError) {
                try feed(bytes, into: &replies)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Convenience for tests and tools: feeds `bytes` and returns the replies they complete.
    public func feed(_ bytes: [UInt8]) throws(RedisError) -> [RedisValue] {
        var replies: [RedisValue] = []
        let result: Result<Void, RedisError> = bytes.withUnsafeBytes { raw in
            do throws(RedisError) {
                try feed(raw, into: &replies)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
        return replies
    }

    private func drain(into replies: inout [RedisValue]) throws(RedisError) {
        while true {
            var object: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &object) == REDIS_OK else { throw fail(error()) }
            guard let object else { return }
            defer { freeReplyObject(object) }
            replies.append(Self.convert(object.assumingMemoryBound(to: redisReply.self)))
            // Whatever the reader has not consumed yet belongs to the next reply.
            pendingBytes = reader.pointee.len - reader.pointee.pos
            context.pointee.remaining = maxReplyElements
        }
    }

    private func error() -> RedisError {
        if let refused = context.pointee.refused {
            return .protocolError(
                "reply announces \(refused) more array elements than the limit of \(maxReplyElements) allows")
        }
        let text = withUnsafeBytes(of: reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return .protocolError(text.isEmpty ? "hiredis reader error \(reader.pointee.err)" : text)
    }

    private func fail(_ error: RedisError) -> RedisError {
        failure = error
        return error
    }

    private static func convert(_ reply: UnsafePointer<redisReply>) -> RedisValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .bulkString(r.len == 0 ? [] : Array(UnsafeRawBufferPointer(start: r.str, count: r.len)))
        case REDIS_REPLY_STATUS:
            return .simpleString(String(decoding: UnsafeRawBufferPointer(start: r.str, count: r.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: UnsafeRawBufferPointer(start: r.str, count: r.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(r.integer)
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            var values: [RedisValue] = []
            values.reserveCapacity(r.elements)
            for index in 0..<r.elements {
                values.append(convert(r.element[index]!))
            }
            return .array(values)
        default:
            preconditionFailure("hiredis returned reply type \(r.type), which RESP2 does not have")
        }
    }
}

/// The element budget the `createArray` hook checks (reached through hiredis' `privdata`).
private struct ArrayBudget {
    var defaultCreateArray: (@convention(c) (UnsafePointer<redisReadTask>?, Int32) -> UnsafeMutableRawPointer?)?
    var remaining: Int
    var refused: Int?
}

/// Command formatting through hiredis' `redisFormatCommandArgv`, with explicit lengths (binary-safe: an
/// argument may hold NUL bytes or CR LF).
public enum RedisCommandEncoder {
    /// Appends the RESP encoding of `command` (an array of bulk strings) to `buffer`.
    public static func encode(_ command: [RedisArgument], into buffer: inout ByteBuffer) {
        precondition(!command.isEmpty, "a Redis command needs at least its name")
        var scratch: [UInt8] = []
        scratch.reserveCapacity(command.reduce(1) { $0 + $1.bytes.count })
        var offsets: [Int] = []
        offsets.reserveCapacity(command.count)
        for argument in command {
            offsets.append(scratch.count)
            scratch += argument.bytes
        }
        scratch.append(0)  // so every argv pointer points into the allocation, even for empty arguments
        let lengths = command.map(\.bytes.count)
        var target: UnsafeMutablePointer<CChar>?
        let length: Int32 = scratch.withUnsafeBufferPointer { base in
            let raw = UnsafeRawPointer(base.baseAddress!)
            var argv = offsets.map { Optional(raw.advanced(by: $0).assumingMemoryBound(to: CChar.self)) }
            return redisFormatCommandArgv(&target, Int32(command.count), &argv, lengths)
        }
        guard length >= 0, let target else { fatalError("redisFormatCommandArgv: out of memory") }
        defer { redisFreeCommand(target) }
        buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }

    /// The RESP encoding of `command`.
    public static func encode(_ command: [RedisArgument]) -> [UInt8] {
        var buffer = ByteBuffer()
        encode(command, into: &buffer)
        return Array(buffer.readableBytesView)
    }
}
