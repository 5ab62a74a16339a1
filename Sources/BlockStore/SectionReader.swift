import CAR
import Logging
import Multiformats
import NIOCore
import ObjectStorage

/// One wanted block located in a CAR: where its answer goes and where its section starts (payload-relative).
struct Want: Sendable {
    var result: Int
    var multihash: Multihash
    var offset: UInt64
    /// For a root found through dudewhere: the CARs listed for it (kept with the block in the cache).
    var rootCARs: [CID] = []
}

/// The wants whose section starts at one offset (usually one; two CIDs of one multihash share it), and how far
/// the section may reach: the next indexed section start, the payload's end, or the largest section served.
struct PlannedSection: Sendable {
    var offset: UInt64
    var end: UInt64
    var wants: [Want]
}

/// Sections read with one ranged read of payload bytes `start..<end`.
struct Run: Sendable {
    var start: UInt64
    var end: UInt64
    var sections: [PlannedSection]
}

/// Reads wanted sections from carpark: plans coalesced runs, reads each run with one streamed ranged read, and
/// answers each want as soon as its section is in (parsed, its CID checked against the wanted multihash, its
/// bytes verified; see `RunParser`). A verified block goes into the verified block cache as a compact copy, and
/// that copy is what is answered.
final class SectionReader: Sendable {
    private let carpark: any Bucket
    private let settings: IndexedCARBlockSourceSettings
    private let blockCache: VerifiedBlockCache
    private let counters: SourceCounters

    init(carpark: any Bucket, settings: IndexedCARBlockSourceSettings, blockCache: VerifiedBlockCache,
         counters: SourceCounters) {
        self.carpark = carpark
        self.settings = settings
        self.blockCache = blockCache
        self.counters = counters
    }

    /// Sorts the wants of one CAR by offset and groups them into runs, each read with one ranged read: sections
    /// at most `coalesceGap` apart join a run while it stays within `maxCoalescedRead`. Arithmetic saturates, so
    /// an index with absurd offsets makes reads that fail, never a trap.
    func plan(_ wants: [Want], in entry: CAREntry, maxBlockSize: Int) -> [Run] {
        let cap = UInt64(maxBlockSize) + UInt64(RunParser.headRoom)
        let payloadLength = entry.payloadEnd.map { $0 - entry.payloadStart }
        var runs: [Run] = []
        for want in wants.sorted(by: { $0.offset < $1.offset }) {
            if var last = runs.popLast() {
                if last.sections.last?.offset == want.offset {
                    // Another CID of the same multihash: the same section answers both.
                    last.sections[last.sections.count - 1].wants.append(want)
                    runs.append(last)
                    continue
                }
                runs.append(last)
            }
            var end = want.offset.saturatingAdd(cap)
            if let next = entry.nextSectionStart(after: want.offset) { end = min(end, next) }
            if let payloadLength { end = min(end, payloadLength) }
            end = max(end, want.offset.saturatingAdd(1))
            let section = PlannedSection(offset: want.offset, end: end, wants: [want])
            if var last = runs.last, want.offset <= last.end.saturatingAdd(settings.coalesceGap),
               max(end, last.end) - last.start <= settings.maxCoalescedRead
            {
                last.end = max(last.end, end)
                last.sections.append(section)
                runs[runs.count - 1] = last
            } else {
                runs.append(Run(start: want.offset, end: end, sections: [section]))
            }
        }
        return runs
    }

    /// Reads one run and answers each of its wants through `deliver` (want's result index, answer), each as soon
    /// as its section has arrived; every want is answered exactly once before this returns.
    func read(_ run: Run, in entry: CAREntry, maxBlockSize: Int,
              deliver: @escaping @Sendable (Int, BlockLookup) -> Void) async
    {
        var parser = RunParser(run, maxBlockSize: maxBlockSize)
        let answer = { (section: PlannedSection, outcome: RunParser.Outcome) in
            self.answer(section, outcome, car: entry.car, deliver: deliver)
        }
        let first = entry.payloadStart.addingReportingOverflow(run.start)
        let last = entry.payloadStart.addingReportingOverflow(run.end - 1)
        guard !first.overflow, !last.overflow else {
            parser.finish(readComplete: false) { section, _ in answer(section, .corrupt) }
            return
        }
        var received: UInt64 = 0
        var failure: BucketError?
        do throws(BucketError) {
            try await carpark.read(StoreLayout.carKey(entry.car), range: first.partialValue...last.partialValue) { piece in
                received += UInt64(piece.readableBytes)
                parser.consume(piece, answer)
            }
        } catch {
            failure = error
        }
        if failure == nil || received > 0 {
            counters.update {
                $0.blockReads += 1
                $0.bytesRead += received
            }
        }
        if case .noSuchKey = failure {
            counters.logger.warning("CAR vanished from the store", metadata: ["car": "\(entry.car)"])
        }
        parser.finish(readComplete: failure == nil) { section, outcome in
            // What never arrived: with the read complete, bytes the index promised are not there (corrupt);
            // with the read failed, the store is at fault.
            switch (outcome, failure) {
            case (.cut, nil): answer(section, .corrupt)
            case (.cut, .noSuchKey?): answer(section, .vanished)
            case (.cut, let error?): answer(section, .failed(error))
            default: answer(section, outcome)
            }
        }
    }

    /// Hands one section's answer to each of its wants; a verified block is cached first (the compact copy is
    /// what is answered, so the read's buffers are released as soon as their blocks are looked up).
    private func answer(_ section: PlannedSection, _ outcome: RunParser.Outcome, car: CID,
                        deliver: @Sendable (Int, BlockLookup) -> Void)
    {
        let lookup: BlockLookup
        let multihash = section.wants[0].multihash
        switch outcome {
        case .block(let bytes, let compact):
            var block = bytes
            if blockCache.isEnabled {
                let roots = section.wants.first { !$0.rootCARs.isEmpty }?.rootCARs ?? []
                block = compact ? blockCache.insert(multihash, compact: bytes, rootCARs: roots)
                    : blockCache.insert(multihash, block: bytes, rootCARs: roots)
            }
            lookup = .block(block)
        case .corrupt, .cut:
            counters.logger.error("block does not match its CID; not served",
                                  metadata: ["car": "\(car)", "offset": "\(section.offset)",
                                             "multihash": "\(Multibase.base58btc.encode(multihash.bytes))"])
            lookup = .corrupt
        case .tooLarge(let length): lookup = .tooLarge(length)
        case .vanished: lookup = .notFound
        case .failed(let error): lookup = .unavailable(error)
        }
        var served = 0
        var corrupt = 0
        for want in section.wants {
            // The section's CID names one multihash; a second want at the same offset under another one is
            // promised a section that is not there.
            let mine = want.multihash == multihash ? lookup : .corrupt
            switch mine {
            case .block: served += 1
            case .corrupt: corrupt += 1
            default: break
            }
            deliver(want.result, mine)
        }
        counters.update {
            $0.blocksServed += served
            $0.corruptBlocks += corrupt
        }
    }
}

/// Turns the bytes of one run, as they arrive in pieces, into an answer per section, each as soon as the
/// section's last byte is in: "uvarint(len(CID) + len(block)) ‖ CID ‖ block" (CARv1 spec, Data section), the
/// CID's multihash must be the wanted one and the block must hash to it. A section inside one piece is answered
/// as a slice of that piece (no copy); one split across pieces is gathered into a buffer of the block's exact
/// length (the one copy it costs, which the verified block cache then keeps as is). Only the first bytes of a
/// head cut by a piece's end are carried over, never a whole piece.
struct RunParser {
    enum Outcome {
        /// Verified bytes; `compact` when they are a buffer of their own, not a slice of a piece.
        case block(ByteBuffer, compact: Bool)
        case corrupt
        case tooLarge(UInt64)
        /// The read ended before the section did.
        case cut
        /// The CAR is gone from the store.
        case vanished
        case failed(BucketError)
    }

    private enum Phase {
        /// Looking for the head of `sections[next]`; `carry` holds its first bytes when the last piece ended
        /// inside the head (empty otherwise).
        case seekingHead(carry: ByteBuffer)
        /// The head of `sections[next]` is parsed; its block is gathered into `block` until `missing` is 0.
        case gathering(block: ByteBuffer, missing: Int)
    }

    /// A section head is a varint (≤ 10 bytes) and a CID (≤ `CID.maxByteLength`): this many bytes past a section
    /// start tell its length.
    static let headRoom = 10 + CID.maxByteLength

    private let sections: [PlannedSection]
    private let maxBlockSize: Int
    private var next = 0
    /// Payload offset of the next byte to arrive.
    private var position: UInt64
    private var phase = Phase.seekingHead(carry: ByteBuffer())

    init(_ run: Run, maxBlockSize: Int) {
        self.sections = run.sections
        self.maxBlockSize = maxBlockSize
        self.position = run.start
    }

    /// Takes the next piece of the run's bytes and answers every section it completes.
    mutating func consume(_ piece: ByteBuffer, _ emit: (PlannedSection, Outcome) -> Void) {
        var input = piece
        while next < sections.count {
            let section = sections[next]
            switch phase {
            case .gathering(var block, let missing):
                let n = min(missing, input.readableBytes)
                guard n > 0 else { return }
                block.writeImmutableBuffer(input.readSlice(length: n)!)
                position += UInt64(n)
                guard n == missing else {
                    phase = .gathering(block: block, missing: missing - n)
                    return
                }
                phase = .seekingHead(carry: ByteBuffer())
                emit(section, verified(block, section, compact: true))
                next += 1
            case .seekingHead(var carry) where carry.readableBytes > 0:
                // `carry` starts at the section; `position` is past it.
                let take = min(headLength(section) - carry.readableBytes, input.readableBytes)
                carry.writeImmutableBuffer(input.readSlice(length: take)!)
                position += UInt64(take)
                guard carry.readableBytes >= headLength(section) else {
                    phase = .seekingHead(carry: carry)
                    return
                }
                phase = .seekingHead(carry: ByteBuffer())
                begin(section, in: carry, emit)
            case .seekingHead:
                // Bytes before the section (a coalescing gap, or the rest of a section already answered) are dropped.
                guard position <= section.offset else {
                    emit(section, .corrupt)  // overlaps the section before it: the index is inconsistent
                    next += 1
                    continue
                }
                let skip = Int(min(section.offset - position, UInt64(input.readableBytes)))
                input.moveReaderIndex(forwardBy: skip)
                position += UInt64(skip)
                guard position == section.offset, input.readableBytes > 0 else { return }
                guard input.readableBytes >= headLength(section) else {
                    // The head is cut by the end of this piece: carry its first bytes (a slice; the next write
                    // copies just those).
                    position += UInt64(input.readableBytes)
                    phase = .seekingHead(carry: input)
                    return
                }
                begin(section, in: input, emit)
                // `begin` answered the section (its bytes after it are looked at next, for the next section) or
                // started gathering its block from the rest of `input`.
                if case .gathering = phase {
                    position += UInt64(input.readableBytes)
                    input.moveReaderIndex(forwardBy: input.readableBytes)
                }
            }
        }
    }

    /// Answers what the end of the read leaves: after a complete read, a short last section whose head and
    /// block are all in `carry`; then `.cut` for every section whose bytes did not all arrive.
    mutating func finish(readComplete: Bool, _ emit: (PlannedSection, Outcome) -> Void) {
        if readComplete, next < sections.count, case .seekingHead(let carry) = phase, carry.readableBytes > 0 {
            phase = .seekingHead(carry: ByteBuffer())
            begin(sections[next], in: carry, emit)
        }
        if case .gathering = phase { phase = .seekingHead(carry: ByteBuffer()) }
        while next < sections.count {
            emit(sections[next], .cut)
            next += 1
        }
    }

    /// Bytes wanted before a head is parsed: enough for any head, but never past where the section may end.
    private func headLength(_ section: PlannedSection) -> Int {
        Int(min(UInt64(Self.headRoom), section.end - section.offset))
    }

    /// Parses the head of `section` from `bytes` (which start at the section) and answers it if the section is
    /// all there or refused by its head; else starts gathering its block.
    private mutating func begin(_ section: PlannedSection, in bytes: ByteBuffer,
                                _ emit: (PlannedSection, Outcome) -> Void)
    {
        let head: (cid: CID, headerLength: Int, blockLength: UInt64)
        do throws(CARError) {
            head = try bytes.withUnsafeReadableBytes { raw in
                Result { () throws(CARError) in
                    try SectionHead.parse(raw: raw, maxSectionLength: UInt64(maxBlockSize) + UInt64(Self.headRoom))
                }
            }.get()
        } catch {
            if case .sectionTooLarge(_, let length, _) = error { return refuse(section, .tooLarge(length), emit) }
            return refuse(section, .corrupt, emit)
        }
        guard head.blockLength <= UInt64(maxBlockSize) else { return refuse(section, .tooLarge(head.blockLength), emit) }
        // The index said this multihash lives here; the section must say so too.
        guard head.cid.multihash == section.wants[0].multihash else { return refuse(section, .corrupt, emit) }
        let blockLength = Int(head.blockLength)
        // A section reaching past the next indexed section (or the payload's end) is not the one the index meant.
        guard UInt64(head.headerLength + blockLength) <= section.end - section.offset else {
            return refuse(section, .corrupt, emit)
        }
        let present = bytes.readableBytes - head.headerLength
        if present >= blockLength {
            let block = bytes.getSlice(at: bytes.readerIndex + head.headerLength, length: blockLength)!
            return refuse(section, verified(block, section, compact: false), emit)
        }
        var block = ByteBufferAllocator().buffer(capacity: blockLength)
        block.writeImmutableBuffer(bytes.getSlice(at: bytes.readerIndex + head.headerLength, length: present)!)
        phase = .gathering(block: block, missing: blockLength - present)
    }

    /// Answers `section` without gathering anything more.
    private mutating func refuse(_ section: PlannedSection, _ outcome: Outcome,
                                 _ emit: (PlannedSection, Outcome) -> Void)
    {
        emit(section, outcome)
        next += 1
    }

    /// The block if it hashes to the wanted multihash. A hash function edgeswap cannot compute counts as a
    /// mismatch: bytes that cannot be checked are not served.
    private func verified(_ block: ByteBuffer, _ section: PlannedSection, compact: Bool) -> Outcome {
        let multihash = section.wants[0].multihash
        let matches = block.withUnsafeReadableBytes { raw in (try? multihash.verify(raw)) ?? false }
        return matches ? .block(block, compact: compact) : .corrupt
    }
}

extension UInt64 {
    /// `self + other`, or `.max` where that would overflow.
    func saturatingAdd(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
