// edgeswap: reading and writing identity key files. Not a hot path, so Foundation is fine here.

import Foundation

extension PrivateKey {
    /// Reads a key file holding the raw `PrivateKey` protobuf bytes: the format of `ipfs key export` and
    /// of go-libp2p's on-disk identities.
    public init(contentsOfFile path: String) throws(KeyError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .invalidKeyFile("cannot read \(path): \(error.localizedDescription)")
        }
        // A few KiB covers an 8192-bit RSA key; refuse anything else before decoding.
        guard data.count <= 16 * 1024 else { throw .invalidKeyFile("\(path) is \(data.count) bytes, too large") }
        try self.init(protobuf: [UInt8](data))
    }

    /// Writes the raw `PrivateKey` protobuf to `path` with permissions 0600, replacing the file atomically.
    public func write(toFile path: String) throws(KeyError) {
        do {
            try Data(self.protobufEncoding).write(to: URL(fileURLWithPath: path), options: .atomic)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        } catch {
            throw .invalidKeyFile("cannot write \(path): \(error.localizedDescription)")
        }
    }

    /// The JSON object Hoverboard (and E-IPFS) keep in the `PEER_ID_JSON` secret:
    /// `{"id": "<peer id>", "privKey": "<base64 PrivateKey protobuf>", "pubKey": "<base64 PublicKey protobuf>"}`.
    private struct PeerIDJSON: Decodable {
        var id: String?
        var privKey: String
        var pubKey: String?
    }

    /// Reads Hoverboard's `PEER_ID_JSON`. `privKey` is required; `pubKey` and `id`, when present, must
    /// agree with it, so a secret assembled from two different identities is refused.
    public init(peerIDJSON json: some Collection<UInt8>) throws(KeyError) {
        let object: PeerIDJSON
        do {
            object = try JSONDecoder().decode(PeerIDJSON.self, from: Data(json))
        } catch {
            throw .invalidKeyFile("PEER_ID_JSON is not {\"id\",\"privKey\",\"pubKey\"}: \(error)")
        }
        guard let privateBytes = Data(base64Encoded: object.privKey) else {
            throw .invalidKeyFile("privKey is not base64")
        }
        try self.init(protobuf: [UInt8](privateBytes))
        if let pub = object.pubKey {
            guard let publicBytes = Data(base64Encoded: pub) else { throw .invalidKeyFile("pubKey is not base64") }
            let publicKey = try PublicKey(protobuf: [UInt8](publicBytes))
            guard publicKey == self.publicKey else {
                throw .invalidKeyFile("pubKey does not belong to privKey")
            }
        }
        if let id = object.id {
            let peerID = try PeerID(string: id)
            guard peerID == self.peerID else {
                throw .invalidKeyFile("id \(id) is not the peer ID of privKey (\(self.peerID))")
            }
        }
    }

    /// Reads a `PEER_ID_JSON` file.
    public init(peerIDJSONFile path: String) throws(KeyError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .invalidKeyFile("cannot read \(path): \(error.localizedDescription)")
        }
        guard data.count <= 64 * 1024 else { throw .invalidKeyFile("\(path) is \(data.count) bytes, too large") }
        try self.init(peerIDJSON: [UInt8](data))
    }

    /// This identity as a Hoverboard `PEER_ID_JSON` object (for tooling and tests).
    public var peerIDJSON: String {
        let priv = Data(self.protobufEncoding).base64EncodedString()
        let pub = Data(self.publicKey.protobufEncoding).base64EncodedString()
        return "{\"id\":\"\(self.peerID)\",\"privKey\":\"\(priv)\",\"pubKey\":\"\(pub)\"}"
    }
}
