# Dev-time: peer ID strings (base58btc multihash and base32 CIDv1 libp2p-key) of the public keys in
# key-vectors.csv, computed independently of the Swift code. Output: key-vector-peer-ids.csv.
import base64, csv, hashlib
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
def b58(b):
    n = int.from_bytes(b, "big"); out = ""
    while n: n, r = divmod(n, 58); out = B58[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out
print("key,peer_id,cid")
for row in csv.DictReader(open("key-vectors.csv")):
    if "public" not in row["key"]: continue
    pub = bytes.fromhex(row["hex"])
    mh = (b"\x00" + bytes([len(pub)]) + pub) if len(pub) <= 42 else (b"\x12\x20" + hashlib.sha256(pub).digest())
    cid = "b" + base64.b32encode(b"\x01\x72" + mh).decode().lower().rstrip("=")
    print(f"{row['key']},{b58(mh)},{cid}")
