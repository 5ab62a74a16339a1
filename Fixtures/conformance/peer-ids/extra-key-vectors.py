# Dev-time generator of extra key vectors (not run by tests). Signs MESSAGE with keys made by Python cryptography.
import hashlib
from cryptography.hazmat.primitives.asymmetric import rsa, ec, padding, ed25519
from cryptography.hazmat.primitives import hashes, serialization as s

MESSAGE = b"noise-libp2p-static-key:" + bytes(range(32))
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
def b58(b):
    n = int.from_bytes(b, "big"); out = ""
    while n: n, r = divmod(n, 58); out = B58[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out
def varint(n):
    out = b""
    while n >= 0x80: out += bytes([n & 0x7f | 0x80]); n >>= 7
    return out + bytes([n])
def envelope(t, data): return b"\x08" + bytes([t]) + b"\x12" + varint(len(data)) + data
def peerid(pub):
    mh = (b"\x00" + varint(len(pub)) + pub) if len(pub) <= 42 else (b"\x12\x20" + hashlib.sha256(pub).digest())
    return b58(mh)
rows = []
def add(name, priv, pub, sig):
    rows.append((name, priv.hex(), pub.hex(), sig.hex(), peerid(pub)))

k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
priv = envelope(0, k.private_bytes(s.Encoding.DER, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
pub = envelope(0, k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))
add("rsa2048", priv, pub, k.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256()))

k = ec.generate_private_key(ec.SECP256R1())
priv = envelope(3, k.private_bytes(s.Encoding.DER, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()))
pub = envelope(3, k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))
add("ecdsa-p256", priv, pub, k.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))

k = ec.generate_private_key(ec.SECP384R1())
pub = envelope(3, k.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))
add("ecdsa-p384", b"", pub, k.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))

k = ec.generate_private_key(ec.SECP256K1())
scalar = k.private_numbers().private_value.to_bytes(32, "big")
priv = envelope(2, scalar)
pub = envelope(2, k.public_key().public_bytes(s.Encoding.X962, s.PublicFormat.CompressedPoint))
add("secp256k1", priv, pub, k.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))
pub65 = envelope(2, k.public_key().public_bytes(s.Encoding.X962, s.PublicFormat.UncompressedPoint))
add("secp256k1-uncompressed", b"", pub65, k.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))

k = ed25519.Ed25519PrivateKey.generate()
seed = k.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
raw = k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
add("ed25519", envelope(1, seed + raw), envelope(1, raw), k.sign(MESSAGE))

print("# Generated once by Python cryptography 48.0.0 (dev time). message = hex of the signed bytes.")
print("message," + MESSAGE.hex())
print("name,private_key,public_key,signature,peer_id")
for r in rows: print(",".join(r))
