import Multiformats

/// The object keys of an edgeswap store, in one place so the ingest command, the server and every bucket
/// kind (filesystem, S3) name objects the same way (ARCHITECTURE.md, "Storage layout"):
///
/// | bucket | key | body |
/// |---|---|---|
/// | carpark | `<carCID>/<carCID>.car` | the CAR file |
/// | satnav | `<carCID>/<carCID>.car.idx` | its MultihashIndexSorted index |
/// | dudewhere | `<rootCID>/<carCID>` | empty: "root lives in this CAR" |
/// | blockmap | `<base58btc multihash>/<carCID>` | empty: "block lives in this CAR" |
///
/// Spelling, fixed here once:
/// - CAR CIDs are CIDv1 (codec car 0x0202, sha2-256) in base32: `bagbaiera…`.
/// - Root CIDs are written as CIDv1 base32 whatever version the CAR header used, so a want for the v0 or
///   the v1 form of a root finds the same key (`bafybei…` for a `Qm…` root).
/// - Multihashes are base58btc *with* the multibase prefix `z` (`zQm…` for sha2-256), as js-multiformats'
///   `base58btc.encode` writes them. The prefix also keeps blockmap keys apart from dudewhere keys when all
///   four live in one bucket: a bare base58btc sha2-256 multihash is exactly a CIDv0 string.
public enum StoreLayout {
    /// The carpark key of a CAR.
    public static func carKey(_ car: CID) -> String {
        let c = carString(car)
        return "\(c)/\(c).car"
    }

    /// The satnav key of a CAR's index.
    public static func indexKey(_ car: CID) -> String {
        let c = carString(car)
        return "\(c)/\(c).car.idx"
    }

    /// The dudewhere key saying that `root` is a root of `car`.
    public static func rootKey(root: CID, car: CID) -> String {
        rootPrefix(root) + carString(car)
    }

    /// The dudewhere prefix to list for the CARs that hold `root`.
    public static func rootPrefix(_ root: CID) -> String {
        root.v1.string(base: .base32) + "/"
    }

    /// The blockmap key saying that the block with `multihash` is in `car`.
    public static func blockKey(multihash: Multihash, car: CID) -> String {
        blockPrefix(multihash) + carString(car)
    }

    /// The blockmap prefix to list for the CARs that hold a block.
    public static func blockPrefix(_ multihash: Multihash) -> String {
        Multibase.base58btc.encode(multihash.bytes) + "/"
    }

    /// The CID of a CAR file: codec car (0x0202) over the sha2-256 digest of all its bytes.
    public static func carCID(sha256Digest digest: [UInt8]) -> CID {
        CID(codec: Multicodec.car, multihash: Multihash(code: Multicodec.sha2_256, digest: digest))
    }

    /// The CAR named by a dudewhere or blockmap key (the part after the prefix), or nil if the key is not
    /// `<prefix><carCID>`.
    public static func carCID(fromKey key: String, prefix: String) -> CID? {
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.dropFirst(prefix.count)
        guard !rest.contains("/"), let cid = try? CID(string: rest), cid.codec == Multicodec.car else { return nil }
        return cid
    }

    static func carString(_ car: CID) -> String {
        car.v1.string(base: .base32)
    }
}

/// The four buckets of a store. They may all be the same bucket (a filesystem store keeps all four in one
/// directory); the keys never collide.
public struct StoreBuckets: Sendable {
    public let carpark: any Bucket
    public let satnav: any Bucket
    public let dudewhere: any Bucket
    public let blockmap: any Bucket

    public init(carpark: any Bucket, satnav: any Bucket, dudewhere: any Bucket, blockmap: any Bucket) {
        self.carpark = carpark
        self.satnav = satnav
        self.dudewhere = dudewhere
        self.blockmap = blockmap
    }

    /// All four in one bucket.
    public init(single bucket: any Bucket) {
        self.init(carpark: bucket, satnav: bucket, dudewhere: bucket, blockmap: bucket)
    }
}
