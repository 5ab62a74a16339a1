// edgeswap: identity key files for `edgeswap key` and `edgeswap serve --key`. Not a hot path; Foundation and
// POSIX calls are fine here.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Libp2p
import Multiformats

/// Creating, writing and reading edgeswap identity keys.
///
/// Two on-disk formats are read:
/// - the raw libp2p `PrivateKey` protobuf, which `ipfs key export` writes and go-libp2p keeps on disk;
/// - Hoverboard's `PEER_ID_JSON` object `{"id", "privKey", "pubKey"}`.
/// Only the protobuf form is written by `key new`; `key import-json` converts a `PEER_ID_JSON` to it.
public enum IdentityKeyFiles {
    /// The key types `key new` can generate.
    public enum GeneratedType: String, CaseIterable, Sendable {
        case ed25519
        case rsa
        case ecdsa
    }

    /// Why a key file operation failed.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// The output exists and `force` was not given.
        case exists(String)
        /// Writing failed.
        case cannotWrite(path: String, reason: String)
        /// The file is neither a key protobuf nor a `PEER_ID_JSON`.
        case unreadable(path: String, reason: String)

        public var description: String {
            switch self {
            case .exists(let path): "\(path) already exists (use --force to replace it)"
            case .cannotWrite(let path, let reason): "cannot write \(path): \(reason)"
            case .unreadable(let path, let reason): "cannot read a key from \(path): \(reason)"
            }
        }
    }

    /// A fresh key of `type` (RSA: 2048 bits, like `ipfs init`).
    public static func generate(_ type: GeneratedType) throws -> PrivateKey {
        switch type {
        case .ed25519: PrivateKey.generateEd25519()
        case .ecdsa: PrivateKey.generateECDSAP256()
        case .rsa: try PrivateKey.generateRSA(bits: 2048)
        }
    }

    /// Writes the `PrivateKey` protobuf of `key` to `path` with mode 0600. The bytes go to a temporary file
    /// created 0600 in the same directory (never readable by others, not even briefly); it is then linked to
    /// `path`, which fails if `path` exists, or, with `force`, renamed over it.
    public static func write(_ key: PrivateKey, to path: String, force: Bool) throws(Failure) {
        if !force && FileManager.default.fileExists(atPath: path) { throw .exists(path) }
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.edgeswap-key-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw .cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        let bytes = key.protobufEncoding
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        defer { unlink(temporary) }
        guard written == bytes.count, synced == 0 else {
            throw .cannotWrite(path: path, reason: "short write to \(temporary)")
        }
        if force {
            guard rename(temporary, path) == 0 else {
                throw .cannotWrite(path: path, reason: String(cString: strerror(errno)))
            }
        } else {
            guard link(temporary, path) == 0 else {
                if errno == EEXIST { throw .exists(path) }
                throw .cannotWrite(path: path, reason: String(cString: strerror(errno)))
            }
        }
    }

    /// Reads a key file in either format: a file whose first non-blank byte is `{` is a `PEER_ID_JSON`,
    /// anything else a `PrivateKey` protobuf (which starts with the tag byte 0x08).
    public static func read(_ path: String) throws(Failure) -> PrivateKey {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        let isJSON = data.first(where: { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }) == UInt8(ascii: "{")
        do {
            return isJSON ? try PrivateKey(peerIDJSONFile: path) : try PrivateKey(contentsOfFile: path)
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
    }

    /// What `key show` prints: the base58 peer ID, or with `cid` the CIDv1 libp2p-key form (base32, `bafz…`).
    public static func describe(_ key: PrivateKey, cid: Bool) -> String {
        cid ? key.peerID.cidString : key.peerID.description
    }
}
