"""A small Bitswap 1.2.0 wire codec and a dag-pb / UnixFS reader (stdlib only).

py-libp2p 0.8.1 ships a bitswap client (`libp2p.bitswap`, used by `pylibp2p_peer.py fetch`), but it hides
the wire: it cannot send a want for a CID it invents, report which presences came back byte for byte,
or put malformed bytes on a stream. These helpers encode and decode the messages by hand so the test
client controls every field (ipfs/specs `bitswap-protocol.md`, boxo `bitswap/message/pb/message.proto`):

    Message  { Wantlist wantlist=1; repeated bytes blocks=2; repeated Block payload=3;
               repeated BlockPresence blockPresences=4; int32 pendingBytes=5 }
    Wantlist { repeated Entry entries=1; bool full=2 }
    Entry    { bytes block=1; int32 priority=2; bool cancel=3; WantType wantType=4; bool sendDontHave=5 }
    Block    { bytes prefix=1; bytes data=2 }
    BlockPresence { bytes cid=1; BlockPresenceType type=2 }   (Have=0, DontHave=1)

Frames on the stream are `uvarint(len) || Message`, at most 4 MiB (go-libp2p `MessageSizeMax`).
"""
import hashlib

from common import read_uvarint, uvarint

PROTOCOL_120 = "/ipfs/bitswap/1.2.0"
MAX_MESSAGE = 4 << 20
WANT_BLOCK, WANT_HAVE = 0, 1
HAVE, DONT_HAVE = 0, 1
CODEC_RAW, CODEC_DAG_PB = 0x55, 0x70
MH_SHA2_256 = 0x12


class WireError(Exception):
    pass


# ------------------------------------------------------------------ protobuf primitives


def pb_bytes(field: int, data: bytes) -> bytes:
    return uvarint((field << 3) | 2) + uvarint(len(data)) + data


def pb_varint(field: int, value: int) -> bytes:
    # int32 fields: negative values are sign-extended to 64 bits (10-byte varints).
    return uvarint(field << 3) + uvarint(value & 0xFFFFFFFFFFFFFFFF)


def pb_fields(buf: bytes):
    """Yields (field, wire type, value) for varint (0) and length-delimited (2) fields; raises on others."""
    pos = 0
    while pos < len(buf):
        try:
            key, pos = read_uvarint(buf, pos)
            field, wt = key >> 3, key & 7
            if wt == 0:
                value, pos = read_uvarint(buf, pos)
            elif wt == 2:
                n, pos = read_uvarint(buf, pos)
                if pos + n > len(buf):
                    raise WireError("field %d: length %d runs past the message" % (field, n))
                value, pos = buf[pos:pos + n], pos + n
            else:
                raise WireError("field %d: unexpected wire type %d" % (field, wt))
        except IndexError:
            raise WireError("truncated protobuf") from None
        yield field, wt, value


# ------------------------------------------------------------------ messages


def entry(cid: bytes, priority: int = 1, cancel: bool = False, want_type: int = WANT_BLOCK,
          send_dont_have: bool = False) -> bytes:
    out = pb_bytes(1, cid) + pb_varint(2, priority)
    if cancel:
        out += pb_varint(3, 1)
    if want_type:
        out += pb_varint(4, want_type)
    if send_dont_have:
        out += pb_varint(5, 1)
    return out


def wantlist_message(entries, full: bool = False) -> bytes:
    """A Message with only a wantlist; `entries` are encoded Entry bodies."""
    wl = b"".join(pb_bytes(1, e) for e in entries) + (pb_varint(2, 1) if full else b"")
    return pb_bytes(1, wl)


def frame(message: bytes) -> bytes:
    return uvarint(len(message)) + message


def decode_message(body: bytes) -> dict:
    """{"blocks": [(prefix, data)], "presences": [(cid bytes, type)], "pending": int, "v100": [data]}"""
    out = {"blocks": [], "presences": [], "pending": 0, "v100": []}
    for field, wt, value in pb_fields(body):
        if field == 3 and wt == 2:
            prefix = data = b""
            for f, w, v in pb_fields(value):
                if f == 1 and w == 2:
                    prefix = v
                elif f == 2 and w == 2:
                    data = v
            out["blocks"].append((prefix, data))
        elif field == 4 and wt == 2:
            cid, kind = b"", HAVE
            for f, w, v in pb_fields(value):
                if f == 1 and w == 2:
                    cid = v
                elif f == 2 and w == 0:
                    kind = v
            out["presences"].append((cid, kind))
        elif field == 2 and wt == 2:
            out["v100"].append(value)
        elif field == 5 and wt == 0:
            out["pending"] = value
    return out


class FrameReader:
    """Incremental `uvarint(len) || body` splitter."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes):
        self.buf += data
        frames = []
        while True:
            try:
                n, pos = read_uvarint(self.buf, 0)
            except IndexError:
                break
            if n > MAX_MESSAGE:
                raise WireError("frame of %d bytes announced (limit %d)" % (n, MAX_MESSAGE))
            if len(self.buf) - pos < n:
                break
            frames.append(bytes(self.buf[pos:pos + n]))
            del self.buf[:pos + n]
        return frames


# ------------------------------------------------------------------ CIDs


def cid_from_prefix(prefix: bytes, data: bytes):
    """The CID a receiver derives from a payload block (boxo `newMessageFromProto`), or None when the
    prefix names a hash this client cannot compute (only sha2-256 is checked)."""
    version, p = read_uvarint(prefix, 0)
    codec, p = read_uvarint(prefix, p)
    mh_code, p = read_uvarint(prefix, p)
    mh_len, p = read_uvarint(prefix, p)
    if mh_code != MH_SHA2_256 or mh_len != 32:
        return None
    mh = bytes([MH_SHA2_256, 32]) + hashlib.sha256(data).digest()
    if version == 0:
        return mh
    return b"\x01" + uvarint(codec) + mh


def cid_codec(cid: bytes) -> int:
    if len(cid) == 34 and cid[0] == MH_SHA2_256:
        return CODEC_DAG_PB
    _, p = read_uvarint(cid, 0)
    codec, _ = read_uvarint(cid, p)
    return codec


def cid_is_sha256(cid: bytes) -> bool:
    if len(cid) == 34 and cid[0] == MH_SHA2_256 and cid[1] == 32:
        return True
    _, p = read_uvarint(cid, 0)
    _, p = read_uvarint(cid, p)
    return cid[p:p + 2] == bytes([MH_SHA2_256, 32])


# ------------------------------------------------------------------ dag-pb / UnixFS


def pbnode(block: bytes):
    """dag-pb PBNode { Data=1; repeated PBLink Links=2 }, PBLink { Hash=1; Name=2; Tsize=3 }.
    Returns (data or None, [(cid bytes, name)])."""
    data, links = None, []
    for field, wt, value in pb_fields(block):
        if field == 1 and wt == 2:
            data = value
        elif field == 2 and wt == 2:
            cid, name = None, ""
            for f, w, v in pb_fields(value):
                if f == 1 and w == 2:
                    cid = v
                elif f == 2 and w == 2:
                    name = v.decode("utf-8", "replace")
            if cid is None:
                raise WireError("PBLink without Hash")
            links.append((cid, name))
    return data, links


def links_of(cid: bytes, block: bytes):
    return pbnode(block)[1] if cid_codec(cid) == CODEC_DAG_PB else []


def unixfs(data: bytes):
    """UnixFS Data { Type=1 (Raw 0, Directory 1, File 2, ...); Data=2 } -> (type, data bytes)."""
    kind, payload = None, b""
    for field, wt, value in pb_fields(data or b""):
        if field == 1 and wt == 0:
            kind = value
        elif field == 2 and wt == 2:
            payload = value
    return kind, payload


def read_tree(cid: bytes, blocks: dict, path: str = ""):
    """Reassembles a UnixFS file or directory from `blocks`: {relative path: file bytes} (a bare file
    is keyed ""). Raises KeyError for a missing block."""
    block = blocks[cid]
    if cid_codec(cid) == CODEC_RAW:
        return {path: block}
    data, links = pbnode(block)
    kind, payload = unixfs(data)
    if kind == 1:  # Directory
        out = {}
        for child, name in links:
            out.update(read_tree(child, blocks, (path + "/" + name) if path else name))
        return out
    if kind not in (0, 2):
        raise WireError("unsupported UnixFS type %r" % kind)
    parts = [payload]
    for child, _ in links:
        (_, sub), = read_tree(child, blocks, "").items()
        parts.append(sub)
    return {path: b"".join(parts)}
