"""Helpers shared by the interop peer scripts (stdlib only, plus `cryptography` for identities).

- `require_private_netns()`: the network-safety guard every script calls before it starts a peer.
- `emit()` / `fail()`: the scripts' one-JSON-line-on-stdout result protocol.
- CIDs, dag-pb/UnixFS encoding and a CIDv1 raw-leaves DAG builder (kubo's AddFile only makes CIDv0).
- Ed25519 identities in kubo's config format.
"""
import base64
import hashlib
import json
import os
import socket
import sys

# ------------------------------------------------------------------ safety


def network_interfaces() -> list:
    """Interfaces of *this process's* network namespace.

    Not /sys/class/net: sysfs shows the namespace of whoever mounted /sys, so after `unshare --net`
    (without a new mount namespace) it still lists the host's eth0. if_nameindex() asks the kernel
    through a socket, which lives in the caller's namespace."""
    return sorted(name for _, name in socket.if_nameindex())


def require_private_netns() -> None:
    """Refuse to run unless the only network interface is loopback (`.ci/in-netns` or `unshare -n`).

    kubo and py-libp2p dial out on their own (DHT, auto-connect); inside a namespace with only `lo`
    nothing can leave the machine whatever their configuration says."""
    names = network_interfaces()
    if names != ["lo"]:
        fail("refusing to start a peer outside a loopback-only network namespace "
             "(interfaces: %s); run via `make test` or `.ci/in-netns ...`" % ", ".join(names))


# ------------------------------------------------------------------ output

_result_stream = sys.stdout


def claim_stdout() -> None:
    """Keep stdout for the one result line: point fd 1 at stderr so that anything a library prints
    (Go runtime, py-libp2p warnings) cannot corrupt it, and write results to a private dup."""
    global _result_stream
    sys.stdout.flush()
    _result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)


def emit(result: dict) -> None:
    """The one JSON line a script prints on stdout (logs go to stderr)."""
    _result_stream.write(json.dumps(result, sort_keys=True) + "\n")
    _result_stream.flush()


def fail(message: str, **extra) -> None:
    """Print {"ok": false, "error": ...} and exit 1 without running Python/Go finalizers."""
    emit(dict(extra, ok=False, error=message))
    os._exit(1)


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def write_json_atomically(path: str, value: dict) -> None:
    """Readers polling for `path` never see a partial file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, sort_keys=True)
    os.replace(tmp, path)


# ------------------------------------------------------------------ multiformats

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
MH_SHA2_256 = 0x12


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def read_uvarint(buf: bytes, pos: int = 0):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    s = ""
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + s


def b58decode(s: str) -> bytes:
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(s) - len(s.lstrip("1"))) + body


def b32(data: bytes) -> str:
    """RFC 4648 base32, upper case, unpadded."""
    return base64.b32encode(data).decode().rstrip("=")


def cidv1(codec: int, block: bytes) -> bytes:
    return b"\x01" + uvarint(codec) + bytes([MH_SHA2_256, 32]) + hashlib.sha256(block).digest()


def cid_to_str(cid: bytes) -> str:
    """CIDv0 in base58btc, CIDv1 in base32 lower case (multibase prefix 'b')."""
    if len(cid) == 34 and cid[0] == MH_SHA2_256 and cid[1] == 32:
        return b58encode(cid)
    return "b" + b32(cid).lower()


def cid_multihash(cid: bytes) -> bytes:
    if len(cid) == 34 and cid[0] == MH_SHA2_256:
        return cid
    _, p = read_uvarint(cid, 0)  # version
    _, p = read_uvarint(cid, p)  # codec
    return cid[p:]


def _pb_bytes(field: int, data: bytes) -> bytes:
    return uvarint((field << 3) | 2) + uvarint(len(data)) + data


def _pb_varint(field: int, v: int) -> bytes:
    return uvarint(field << 3) + uvarint(v)


def _unixfs_file(filesize: int, blocksizes) -> bytes:
    # UnixFS `message Data { Type=1 (File = 2); filesize=3; blocksizes=4 (repeated, unpacked) }`
    return _pb_varint(1, 2) + _pb_varint(3, filesize) + b"".join(_pb_varint(4, s) for s in blocksizes)


def _dagpb_node(links, data: bytes) -> bytes:
    # dag-pb canonical form: Links (field 2) first, then Data (field 1).
    out = b""
    for cid, tsize in links:
        out += _pb_bytes(2, _pb_bytes(1, cid) + _pb_bytes(2, b"") + _pb_varint(3, tsize))
    return out + _pb_bytes(1, data)


def raw_leaves_dag(content: bytes, chunk: int = 256 * 1024, fanout: int = 174):
    """Balanced UnixFS file DAG like `ipfs add --cid-version=1 --raw-leaves` (256 KiB chunks,
    174 links per node). Returns (root CID bytes, {CID bytes: block bytes})."""
    blocks = {}
    level = []  # (cid, tsize, filesize)
    for i in range(0, max(len(content), 1), chunk):
        piece = content[i:i + chunk]
        c = cidv1(CODEC_RAW, piece)
        blocks[c] = piece
        level.append((c, len(piece), len(piece)))
    while len(level) > 1:
        parents = []
        for i in range(0, len(level), fanout):
            group = level[i:i + fanout]
            size = sum(g[2] for g in group)
            node = _dagpb_node([(c, t) for c, t, _ in group], _unixfs_file(size, [g[2] for g in group]))
            c = cidv1(CODEC_DAG_PB, node)
            blocks[c] = node
            parents.append((c, len(node) + sum(g[1] for g in group), size))
        level = parents
    return level[0][0], blocks


# ------------------------------------------------------------------ identities


def make_ed25519_identity():
    """A fresh libp2p Ed25519 identity as kubo's config stores it: (peer ID, base64 PrivKey)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization as ser
    sk = Ed25519PrivateKey.generate()
    seed = sk.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    pub = sk.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    # libp2p PrivateKey/PublicKey protobufs: Type=1 (Ed25519 = 1), Data=2. Go's private Data is seed||pub.
    priv_pb = _pb_varint(1, 1) + _pb_bytes(2, seed + pub)
    pub_pb = _pb_varint(1, 1) + _pb_bytes(2, pub)
    # Keys of at most 42 bytes are inlined with the identity multihash (0x00).
    return b58encode(b"\x00" + uvarint(len(pub_pb)) + pub_pb), base64.b64encode(priv_pb).decode()

