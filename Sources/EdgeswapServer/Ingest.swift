import CAR
import Crypto
import Multiformats
import ObjectStorage

/// How far one CAR's ingest has got; handed to the progress callback about once per `progressInterval`.
public struct IngestProgress: Sendable {
    public enum Phase: String, Sendable { case hashing, verifying, writing }
    public let path: String
    public let phase: Phase
    public let bytesDone: UInt64
    public let totalBytes: UInt64
    public let blocks: Int
    /// Seconds since this CAR's ingest started.
    public let elapsed: Double

    /// `path: verifying 12.0/20.0 MiB, 48 blocks, 95.1 MiB/s, 380 blocks/s`.
    public var line: String {
        let mib = 1024.0 * 1024.0
        let rate = elapsed > 0 ? Double(bytesDone) / mib / elapsed : 0
        let blockRate = elapsed > 0 ? Double(blocks) / elapsed : 0
        func f(_ x: Double) -> String {
            let scaled = (x * 10).rounded() / 10
            return String(scaled)
        }
        return "\(path): \(phase.rawValue) \(f(Double(bytesDone) / mib))/\(f(Double(totalBytes) / mib)) MiB, "
            + "\(blocks) blocks, \(f(rate)) MiB/s, \(Int(blockRate.rounded())) blocks/s"
    }
}

/// What ingesting one CAR did.
public struct IngestResult: Sendable, Equatable {
    public let path: String
    /// codec car (0x0202) over the sha2-256 of the file.
    public let car: CID
    public let roots: [CID]
    /// Sections in the CAR (identity CIDs included).
    public let blocks: Int
    public let bytes: UInt64
    /// Keys this run wrote, and keys that were already there with the expected size.
    public let keysWritten: Int
    public let keysPresent: Int

    /// Nothing new was written: the CAR had been ingested before.
    public var wasAlreadyIngested: Bool { keysWritten == 0 }
}

/// Why one CAR could not be ingested.
public enum IngestError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The path is missing, not a regular file, or unreadable.
    case unreadable(path: String, reason: String)
    /// The file is not a well-formed CARv1 or CARv2.
    case malformedCAR(path: String, CARError)
    /// A block does not hash to its CID. `offset` is the byte offset of its section in the file.
    case badBlock(path: String, cid: CID, offset: UInt64)
    /// A block's CID uses a hash function edgeswap cannot check, so it cannot be served safely.
    case unverifiableBlock(path: String, cid: CID, offset: UInt64, reason: MultiformatsError)
    /// The store refused a write or read.
    case storage(path: String, BucketError)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "\(path): cannot read: \(reason)"
        case .malformedCAR(let path, let error): return "\(path): not a valid CAR: \(error)"
        case .badBlock(let path, let cid, let offset):
            return "\(path): block \(cid) at offset \(offset) does not match its hash"
        case .unverifiableBlock(let path, let cid, let offset, let reason):
            return "\(path): block \(cid) at offset \(offset) cannot be verified: \(reason)"
        case .storage(let path, let error): return "\(path): store: \(error)"
        }
    }
}

/// Ingests CAR files into a store: `edgeswap ingest`.
///
/// For each CAR: hash the whole file (streamed) for its CAR CID; read every section, verifying each block
/// against its CID and collecting the index; then write, skipping keys already present with the expected
/// size: the CAR (carpark), its MultihashIndexSorted (satnav), one blockmap key per block, and last one
/// dudewhere key per root. Roots go last on purpose: a root is only discoverable once its CAR, its index and
/// its blocks' keys are in place, so a reader never follows a root key to a CAR that is not there yet.
///
/// A bad CAR writes nothing at all (verification finishes before the first write).
public struct Ingester: Sendable {
    public let store: StoreBuckets
    public let readOptions: CARReadOptions
    /// How often the progress callback is called during one CAR.
    public let progressInterval: Duration

    public init(store: StoreBuckets, readOptions: CARReadOptions = CARReadOptions(),
                progressInterval: Duration = .seconds(1)) {
        self.store = store
        self.readOptions = readOptions
        self.progressInterval = progressInterval
    }

    /// Ingests one CAR.
    public func ingest(path: String, progress: ((IngestProgress) -> Void)? = nil) async throws(IngestError)
        -> IngestResult
    {
        let clock = ContinuousClock()
        let start = clock.now
        var lastReport = start
        guard let total = LocalFiles.size(of: path) else {
            throw .unreadable(path: path, reason: LocalFiles.isDirectory(path) ? "is a directory" : "no such file")
        }
        func report(_ phase: IngestProgress.Phase, _ done: UInt64, _ blocks: Int, force: Bool = false) {
            guard let progress else { return }
            let now = clock.now
            guard force || now - lastReport >= progressInterval else { return }
            lastReport = now
            let elapsed = now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            progress(IngestProgress(path: path, phase: phase, bytesDone: done, totalBytes: total, blocks: blocks,
                                    elapsed: seconds))
        }

        // 1. The CAR CID: sha2-256 over every byte of the file.
        var hasher = SHA256()
        var hashed: UInt64 = 0
        do {
            _ = try LocalFiles.stream(path) { piece in
                hasher.update(bufferPointer: piece)
                hashed += UInt64(piece.count)
                report(.hashing, hashed, 0)
            }
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
        let car = StoreLayout.carCID(sha256Digest: Array(hasher.finalize()))

        // 2. Every section: verify the block, collect the index entry and the blockmap multihash.
        let source: FileByteSource
        let reader: CARReader<FileByteSource>
        do throws(CARError) {
            source = try FileByteSource(path: path)
            reader = try CARReader(source: source, options: readOptions)
        } catch {
            throw .malformedCAR(path: path, error)
        }
        let payloadStart = reader.layout.payload.lowerBound
        var builder = IndexBuilder()
        var multihashes: [Multihash] = []
        var seen = Set<Multihash>()
        var blocks = 0
        var failure: IngestError?
        do throws(CARError) {
            while failure == nil, let section = try reader.next(block: { section, data in
                do throws(MultiformatsError) {
                    if try !section.cid.multihash.verify(data) {
                        failure = .badBlock(path: path, cid: section.cid, offset: payloadStart + section.offset)
                    }
                } catch {
                    failure = .unverifiableBlock(path: path, cid: section.cid, offset: payloadStart + section.offset,
                                                 reason: error)
                }
            }) {
                guard failure == nil else { break }
                blocks += 1
                let mh = section.cid.multihash
                // go-car leaves identity CIDs out of indexes by default; their bytes are in the CID itself, so
                // nothing should ever look them up in storage.
                if mh.code != Multicodec.identity {
                    try builder.add(mh, offset: section.offset)
                    if seen.insert(mh).inserted { multihashes.append(mh) }
                }
                report(.verifying, payloadStart + section.offset + section.length, blocks)
            }
        } catch {
            throw .malformedCAR(path: path, error)
        }
        if let failure { throw failure }
        let roots = reader.header.roots
        let index = CARIndex.multihashSorted(builder.buildMultihashSorted()).encode()

        // 3. Writes, each skipped when the key is already there with the expected size.
        var written = 0
        var present = 0
        func putIfAbsent(_ bucket: any Bucket, _ key: String, size: UInt64,
                         _ write: () async throws(BucketError) -> Void) async throws(IngestError) {
            do throws(BucketError) {
                if try await bucket.head(key) == size {
                    present += 1
                    return
                }
                try await write()
                written += 1
            } catch {
                throw .storage(path: path, error)
            }
        }
        let carKey = StoreLayout.carKey(car)
        try await putIfAbsent(store.carpark, carKey, size: total) { () async throws(BucketError) in
            try await store.carpark.put(carKey, contentsOf: path)
        }
        let indexKey = StoreLayout.indexKey(car)
        try await putIfAbsent(store.satnav, indexKey, size: UInt64(index.count)) { () async throws(BucketError) in
            try await store.satnav.put(indexKey, bytes: index)
        }
        for (i, mh) in multihashes.enumerated() {
            let key = StoreLayout.blockKey(multihash: mh, car: car)
            try await putIfAbsent(store.blockmap, key, size: 0) { () async throws(BucketError) in
                try await store.blockmap.put(key, bytes: [])
            }
            report(.writing, total, i + 1)
        }
        for root in roots {
            let key = StoreLayout.rootKey(root: root, car: car)
            try await putIfAbsent(store.dudewhere, key, size: 0) { () async throws(BucketError) in
                try await store.dudewhere.put(key, bytes: [])
            }
        }
        report(.writing, total, blocks, force: true)
        return IngestResult(path: path, car: car, roots: roots, blocks: blocks, bytes: total,
                            keysWritten: written, keysPresent: present)
    }

    /// Ingests several CARs; one failing does not stop the others. Results are in input order.
    public func ingest(paths: [String], progress: ((IngestProgress) -> Void)? = nil) async
        -> [Result<IngestResult, IngestError>]
    {
        var results: [Result<IngestResult, IngestError>] = []
        for path in paths {
            do throws(IngestError) {
                results.append(.success(try await ingest(path: path, progress: progress)))
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }
}
