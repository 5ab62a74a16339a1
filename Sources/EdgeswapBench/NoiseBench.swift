// edgeswap-bench: Noise handshake rate and transport throughput, in memory, on the calling thread.

import Dispatch
import Libp2p
import NIOCore

/// Prints:
/// - full Noise XX handshakes per second (initiator + responder machines in memory, Ed25519 identities,
///   each side's `NoiseIdentity` built once as in production), on one core. A server only runs the
///   responder half, so its per-core rate is about twice this figure.
/// - verification rate of a remote identity signature over a Noise static key, per key type (one per
///   inbound handshake; secp256k1 uses edgeswap's own big-integer code).
/// - transport seal and open throughput for 65519-byte frames through the `ByteBuffer` API, reusing the
///   output buffers.
public func runNoiseBenchmarks() {
    print("== Noise (Noise_XX_25519_ChaChaPoly_SHA256), one core ==")
    benchmarkHandshakes()
    benchmarkTransport()
    benchmarkIdentityVerification()
}

private func seconds(since start: UInt64) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

private func benchmarkHandshakes() {
    let clientIdentity = try! NoiseIdentity(identityKey: PrivateKey.generateEd25519())
    let serverIdentity = try! NoiseIdentity(identityKey: PrivateKey.generateEd25519())

    func handshake() -> Bool {
        var initiator = NoiseHandshakeStateMachine(role: .initiator, identity: clientIdentity)
        var responder = NoiseHandshakeStateMachine(role: .responder, identity: serverIdentity)
        do {
            guard case .send(var m1) = try initiator.start(), case .needMoreData = try responder.start(),
                  case .send(var m2) = try responder.receive(&m1),
                  case .sendAndComplete(var m3, _) = try initiator.receive(&m2),
                  case .complete = try responder.receive(&m3)
            else { return false }
            return true
        } catch {
            return false
        }
    }

    for _ in 0..<200 { precondition(handshake()) }  // warm-up
    var count = 0
    let start = DispatchTime.now().uptimeNanoseconds
    while seconds(since: start) < 2.0 {
        for _ in 0..<100 { precondition(handshake()) }
        count += 100
    }
    let elapsed = seconds(since: start)
    let rate = Double(count) / elapsed
    let micros = Int(elapsed / Double(count) * 1e6)
    print("handshakes (initiator+responder, Ed25519): \(Int(rate))/s per core, \(micros) µs each")
}

private func benchmarkTransport() {
    let client = try! NoiseIdentity(identityKey: PrivateKey.generateEd25519())
    let server = try! NoiseIdentity(identityKey: PrivateKey.generateEd25519())
    var initiator = NoiseHandshakeStateMachine(role: .initiator, identity: client)
    var responder = NoiseHandshakeStateMachine(role: .responder, identity: server)
    guard case .send(var m1) = try! initiator.start(), case .needMoreData = try! responder.start(),
          case .send(var m2) = try! responder.receive(&m1),
          case .sendAndComplete(var m3, let initiatorResult) = try! initiator.receive(&m2),
          case .complete(let responderResult) = try! responder.receive(&m3)
    else { fatalError("handshake failed") }
    var sender = initiatorResult.transport
    var receiver = responderResult.transport

    let frameSize = NoiseTransport.maximumPlaintextLength
    var plaintext = ByteBuffer()
    plaintext.writeBytes((0..<frameSize).map { UInt8(truncatingIfNeeded: $0) })
    var wire = ByteBuffer()
    wire.reserveCapacity(frameSize + 64)

    // Seal: encrypt the same plaintext into one reused output buffer.
    var frames = 0
    var start = DispatchTime.now().uptimeNanoseconds
    while seconds(since: start) < 2.0 {
        for _ in 0..<256 {
            wire.clear()
            try! sender.encrypt(plaintext, into: &wire)
        }
        frames += 256
    }
    let elapsed = seconds(since: start)
    print("transport seal, 65519 B frames: \(gbps(frames * frameSize, elapsed)) GB/s")

    // Open: seal a batch of frames with a copy of the sender (same keys and nonces as `receiver`
    // expects), then time only the decryption into one reused buffer. Repeat for a stable figure.
    var sealer = initiatorResult.transport
    let batch = 1024
    var sealed = ByteBuffer()
    var output = ByteBuffer()
    output.reserveCapacity(frameSize + 64)
    var openFrames = 0
    var openSeconds = 0.0
    for _ in 0..<8 {
        sealed.clear()
        sealed.reserveCapacity(batch * (frameSize + 18))
        for _ in 0..<batch { try! sealer.encrypt(plaintext, into: &sealed) }
        var input = sealed
        start = DispatchTime.now().uptimeNanoseconds
        receiver.receive(&input)
        while true {
            output.clear()
            guard try! receiver.decryptNext(into: &output) else { break }
            openFrames += 1
        }
        openSeconds += seconds(since: start)
    }
    precondition(openFrames == 8 * batch)
    print("transport open, 65519 B frames: \(gbps(openFrames * frameSize, openSeconds)) GB/s")
}

private func gbps(_ bytes: Int, _ seconds: Double) -> String {
    let value = Double(bytes) / seconds / 1e9
    return "\(Double(Int(value * 100)) / 100)"
}

private func benchmarkIdentityVerification() {
    // secp256k1: the libp2p/specs peer-ids.md test vector's private key.
    let secp256k1 = try! PrivateKey(
        type: .secp256k1,
        data: stride(from: 0, to: 64, by: 2).map { i in
            let hex = Array("53DADF1D5A164D6B4ACDB15E24AA4C5B1D3461BDBD42ABEDB0A4404D56CED8FB".utf8)
            return UInt8(String(decoding: hex[i..<(i + 2)], as: UTF8.self), radix: 16)!
        })
    let keys: [(String, PrivateKey)] = [
        ("Ed25519", PrivateKey.generateEd25519()),
        ("ECDSA P-256", PrivateKey.generateECDSAP256()),
        ("RSA-2048", try! PrivateKey.generateRSA(bits: 2048)),
        ("secp256k1", secp256k1),
    ]
    let message = Array("noise-libp2p-static-key:".utf8) + [UInt8](repeating: 0x5a, count: 32)
    for (name, key) in keys {
        let signature = try! key.sign(message)
        let publicKey = key.publicKey
        var count = 0
        let start = DispatchTime.now().uptimeNanoseconds
        while seconds(since: start) < 1.0 {
            for _ in 0..<10 { precondition(publicKey.isValidSignature(signature, for: message)) }
            count += 10
        }
        let rate = Double(count) / seconds(since: start)
        print("identity signature verify, \(name): \(Int(rate))/s")
    }
}
