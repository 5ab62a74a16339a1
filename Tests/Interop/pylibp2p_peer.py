#!/usr/bin/env python3
"""A py-libp2p 0.8.1 client peer (PyPI `libp2p==0.8.1`): WebSocket transport only, Ed25519 identity.

    pylibp2p_peer.py [--security noise|tls] [--muxer yamux|mplex] [--ca-file PEM] [--timeout S] ACTION ...

Actions (each prints exactly one JSON line on stdout; logs go to stderr):
  ping   --peer MADDR [--count N]
         dial, then N round trips on one /ipfs/ping/1.0.0 stream:
         {"ok", "connected", "connect_seconds", "security", "muxer", "rtts_ms": [...]}
  fetch  --peer MADDR --cid CID [--cid ...] --out-dir DIR
         dial, then fetch each CID with py-libp2p's bitswap client (MerkleDag.fetch_file: a raw block
         or a UnixFS file DAG), asking the dialed peer directly (WANT_BLOCK):
         {"ok", "connected", ..., "results": [{"cid", "ok", "bytes", "sha256", "seconds", "error"}]}
  bitswap-get --peer MADDR --root CID [--root ...] [--missing-v0 N] [--missing-v1 N]
         our own Bitswap 1.2.0 client (bitswap_wire.py): WANT_BLOCK + sendDontHave for each root, then for
         every dag-pb link of each block that arrives, until every block came or --timeout. Each block is
         hashed (sha2-256) against the CID its prefix names and must be one we asked for. Also asks for
         N random CIDv0 / CIDv1 nobody has. Reassembles the UnixFS files and directories:
         {"ok", "connected", "blocks_verified", "blocks_bad", "duplicates", "unverifiable", "received",
          "roots": [{"root", "complete", "blocks", "files": {path: {"bytes", "sha256"}}}],
          "missing": [{"cid", "sent", "dont_have", "echoed"}], "presences", "messages", "seconds"}
  bitswap-probe --peer MADDR --kind KIND [--cid CID] [--control-cid CID] [--entries N] [--quiet S]
         puts one bad input on a /ipfs/bitswap/1.2.0 stream and reports what the server did with it:
         malformed (a wantlist field whose length runs past the message), oversize (a length prefix of
         5 MiB), huge-wantlist (N, default 10000, want-blocks with sendDontHave for random CIDs at
         priorities 1..N), unknown-want-type (wantType=7 for --cid next to a valid want for
         --control-cid). Then, on the same connection, it asks for --control-cid on a fresh stream:
         {"ok", "connected", "stream": "reset"|"eof"|"open"|..., "control_served", "presences",
          "blocks", "dont_haves", "dont_have_priorities": [min, max], "bad_entry_answered", ...}

MADDR is /ip4/127.0.0.1/tcp/PORT/ws/p2p/ID or .../wss/p2p/ID; for /wss the server certificate is checked
against --ca-file (or SSL_CERT_FILE). Exit status 0 when "ok" is true. Refuses to run outside a
loopback-only network namespace; the host has no listen address, mDNS, UPnP or bootstrap peers.
"""
import argparse
import hashlib
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def make_host(a):
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID, Transport as NoiseTransport
    from libp2p.security.tls.transport import PROTOCOL_ID as TLS_ID, TLSTransport
    key_pair = create_new_key_pair()
    # py-libp2p offers noise, tls, secio and plaintext unless told otherwise: offer exactly one.
    if a.security == "noise":
        security = {NOISE_ID: NoiseTransport(key_pair, noise_privkey=create_x25519().private_key)}
    else:
        security = {TLS_ID: TLSTransport(key_pair)}
    tls_client = ssl.create_default_context(cafile=os.path.abspath(a.ca_file)) if a.ca_file else None
    return new_host(key_pair=key_pair, sec_opt=security, muxer_preference=a.muxer.upper(),
                    listen_addrs=None, enable_tcp=False, enable_websocket=True, enable_mDNS=False,
                    enable_upnp=False, bootstrap=None, tls_client_config=tls_client)


def negotiated(host, peer_id) -> dict:
    for conn in host.get_network().connections.get(peer_id, []):
        return {"security": conn.get_negotiated_security_protocol(),
                "muxer": conn.get_negotiated_muxer_protocol()}
    return {}


async def run(a) -> dict:
    import trio
    from multiaddr import Multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    host = make_host(a)
    result = {"ok": False, "connected": False}
    async with host.run(listen_addrs=[]), trio.open_nursery() as nursery:
        info = info_from_p2p_addr(Multiaddr(a.peer))
        t0 = time.monotonic()
        try:
            with trio.fail_after(a.timeout):
                await host.connect(info)
        except BaseException as e:  # noqa: BLE001 - trio.TooSlowError, OSError, handshake errors
            result["error"] = "connect: %r" % e
            nursery.cancel_scope.cancel()
            return result
        result.update(connected=True, connect_seconds=round(time.monotonic() - t0, 3))
        result.update(negotiated(host, info.peer_id))
        if a.action == "ping":
            await ping(host, info.peer_id, a, result)
        elif a.action == "bitswap-get":
            await bitswap_get(host, info.peer_id, a, result)
        elif a.action == "bitswap-probe":
            await bitswap_probe(host, info.peer_id, a, result)
        else:
            await fetch(host, nursery, info.peer_id, a, result)
        nursery.cancel_scope.cancel()
    return result


async def ping(host, peer_id, a, result: dict) -> None:
    import trio
    from libp2p.host.ping import ID as PING_ID, perform_ping_roundtrip
    rtts = []
    try:
        with trio.fail_after(a.timeout):
            stream = await host.new_stream(peer_id, [PING_ID])
            for _ in range(a.count):
                t0 = time.perf_counter()
                await perform_ping_roundtrip(stream)  # checks the echoed 32 bytes
                rtts.append(round((time.perf_counter() - t0) * 1000, 3))
            await stream.close()
    except BaseException as e:  # noqa: BLE001
        result["error"] = "ping: %r" % e
    result.update(rtts_ms=rtts, ok=len(rtts) == a.count)


async def fetch(host, nursery, peer_id, a, result: dict) -> None:
    import trio
    from libp2p.bitswap import BitswapClient, MemoryBlockStore
    from libp2p.bitswap.dag import MerkleDag
    bitswap = BitswapClient(host, block_store=MemoryBlockStore())
    await bitswap.start()
    bitswap.set_nursery(nursery)
    dag = MerkleDag(bitswap)
    os.makedirs(a.out_dir, exist_ok=True)
    results = []
    for i, cid in enumerate(a.cid):
        r = {"cid": cid, "ok": False}
        t0 = time.monotonic()
        try:
            with trio.fail_after(a.timeout):
                data, _name = await dag.fetch_file(cid, peer_id=peer_id, timeout=a.timeout)
            out = os.path.join(a.out_dir, "%d.bin" % i)
            with open(out, "wb") as f:
                f.write(data)
            r.update(ok=True, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), path=out)
        except BaseException as e:  # noqa: BLE001
            r["error"] = repr(e)[:300]
        r["seconds"] = round(time.monotonic() - t0, 3)
        results.append(r)
    result.update(results=results, ok=all(r["ok"] for r in results))


# ------------------------------------------------------------------ our own Bitswap 1.2.0 client


def cid_from_string(text: str) -> bytes:
    """CIDv0 (base58btc `Qm...`) or a base32 (`b...`) CIDv1, as bytes."""
    import base64
    if text.startswith("Qm"):
        return common.b58decode(text)
    if text.startswith("b"):
        body = text[1:].upper()
        return base64.b32decode(body + "=" * (-len(body) % 8))
    raise ValueError("unsupported CID string (want Qm... or b...): " + text)


def random_cid(v0: bool) -> bytes:
    digest = os.urandom(32)
    mh = bytes([0x12, 32]) + digest
    return mh if v0 else b"\x01\x55" + mh


class BitswapSession:
    """Sends wants on a stream we open, and reads the answers from the streams the server opens to us
    (the spec: the server "answers on a stream it opens itself"; kubo reads nothing else either)."""

    def __init__(self, host, peer_id):
        import math
        import trio
        import bitswap_wire as bw
        self.host, self.peer_id, self.bw = host, peer_id, bw
        self.send_ch, self.recv_ch = trio.open_memory_channel(math.inf)
        self.inbound_errors = []
        self.inbound_streams = 0
        self.out = None
        host.set_stream_handler(bw.PROTOCOL_120, self._handle)

    async def _handle(self, stream) -> None:
        self.inbound_streams += 1
        reader = self.bw.FrameReader()
        try:
            while True:
                data = await stream.read(1 << 16)
                if not data:
                    break
                for body in reader.feed(data):
                    await self.send_ch.send(self.bw.decode_message(body))
        except BaseException as e:  # noqa: BLE001 - EOF/reset at the end of the test is normal
            self.inbound_errors.append(repr(e)[:200])

    async def open(self):
        """A fresh outbound /ipfs/bitswap/1.2.0 stream (also the one wants go on)."""
        stream = await self.host.new_stream(self.peer_id, [self.bw.PROTOCOL_120])
        self.out = self.out or stream
        return stream

    async def send(self, message: bytes, stream=None) -> None:
        await (stream or self.out).write(self.bw.frame(message))

    async def next(self, timeout: float):
        """The next decoded message from the server, or None after `timeout` seconds."""
        import trio
        with trio.move_on_after(max(timeout, 0)):
            return await self.recv_ch.receive()
        return None


def classify_end(stream, error) -> str:
    """"reset" or "eof" for an exception a read or write on `stream` raised, else "error: ..."."""
    name = type(error).__name__
    if "Reset" in name or bool(getattr(getattr(stream, "muxed_stream", None), "reset_received", False)):
        return "reset"
    if "EOF" in name or "Closed" in name:
        return "eof"
    return "error: %r" % error


async def write_bad(stream, data: bytes):
    """Writes bad bytes; None if the write went through, else how the stream ended under it (the server
    may reset the stream while a long write is still in flight)."""
    import trio
    try:
        await stream.write(data)
        return None
    except trio.Cancelled:
        raise
    except BaseException as e:  # noqa: BLE001
        return classify_end(stream, e)


async def stream_outcome(stream, wait: float) -> str:
    """What the server did with a stream we wrote to: "reset", "eof" or "open" (nothing within `wait`).
    The server never writes on a want stream, so any read ends only by a close or a reset.

    py-libp2p 0.8.1's yamux forgets a stream as soon as a RST arrives, so the read that follows raises
    StreamEOF ("Stream closed") rather than StreamReset; the yamux stream object still records
    `reset_received`, which is what tells a RST from a FIN here."""
    import trio

    def was_reset() -> bool:
        return bool(getattr(getattr(stream, "muxed_stream", None), "reset_received", False))

    with trio.move_on_after(wait):
        try:
            data = await stream.read(1 << 16)
            return "reset" if was_reset() else ("eof" if not data else "data")
        except trio.Cancelled:
            raise  # the wait ran out: handled by move_on_after below
        except BaseException as e:  # noqa: BLE001
            return classify_end(stream, e)
    return "open"


async def bitswap_get(host, peer_id, a, result: dict) -> None:
    import trio
    import bitswap_wire as bw
    session = BitswapSession(host, peer_id)
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    roots = [cid_from_string(r) for r in a.root]
    missing = [random_cid(True) for _ in range(a.missing_v0)] + [random_cid(False) for _ in range(a.missing_v1)]
    wanted = {}     # CID bytes -> priority, asked and not yet answered
    blocks = {}     # CID bytes -> verified block bytes
    presences = []  # (CID bytes, type)
    counts = {"blocks_bad": 0, "duplicates": 0, "unverifiable": 0, "messages": 0}
    priority = [2 ** 31 - 1]

    async def want(cids):
        entries = []
        for cid in cids:
            wanted[cid] = priority[0]
            entries.append(bw.entry(cid, priority[0], want_type=bw.WANT_BLOCK, send_dont_have=True))
            priority[0] -= 1
        if entries:
            await session.send(bw.wantlist_message(entries))

    try:
        with trio.fail_after(a.timeout):
            await session.open()
            await want(roots + missing)
        # Random CIDs stay in `wanted` until their DONT_HAVE arrives, like every other want.
        while wanted and time.monotonic() < deadline:
            msg = await session.next(deadline - time.monotonic())
            if msg is None:
                break
            counts["messages"] += 1
            children = []
            for prefix, data in msg["blocks"]:
                cid = bw.cid_from_prefix(prefix, data)
                if cid is None:
                    counts["unverifiable"] += 1
                elif cid in blocks:
                    counts["duplicates"] += 1
                elif cid not in wanted:
                    # Bytes that hash to nothing we asked for: wrong data for the prefix.
                    counts["blocks_bad"] += 1
                else:
                    del wanted[cid]
                    blocks[cid] = data
                    for child, _name in bw.links_of(cid, data):
                        if child not in blocks and child not in wanted and child not in children:
                            children.append(child)
            for cid, kind in msg["presences"]:
                presences.append((cid, kind))
                if kind == bw.DONT_HAVE:
                    wanted.pop(cid, None)
            with trio.fail_after(max(deadline - time.monotonic(), 0.1)):
                await want(children)
    except BaseException as e:  # noqa: BLE001 - reported below
        result["error"] = "bitswap-get: %r" % e

    root_reports = []
    for root in roots:
        reachable, stack = set(), [root]
        while stack:
            cid = stack.pop()
            if cid in reachable:
                continue
            reachable.add(cid)
            if cid in blocks:
                stack.extend(c for c, _ in bw.links_of(cid, blocks[cid]))
        complete = reachable <= blocks.keys()
        r = {"root": common.cid_to_str(root), "complete": complete, "blocks": len(reachable & blocks.keys())}
        if complete:
            try:
                r["files"] = {path: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                              for path, data in bw.read_tree(root, blocks).items()}
            except Exception as e:  # noqa: BLE001
                r["error"] = "UnixFS: %r" % e
        root_reports.append(r)
    missing_reports = []
    for cid in missing:
        mh = common.cid_multihash(cid)
        echoed = [p.hex() for p, _ in presences if common.cid_multihash(p) == mh]
        missing_reports.append({"cid": common.cid_to_str(cid), "sent": cid.hex(), "echoed": echoed,
                                "dont_have": any(p == cid and k == bw.DONT_HAVE for p, k in presences)})
    result.update(counts, roots=root_reports, missing=missing_reports,
                  blocks_verified=len(blocks), received=sorted(common.cid_to_str(c) for c in blocks),
                  presences=[{"cid": c.hex(), "type": "dont_have" if k == bw.DONT_HAVE else "have"}
                             for c, k in presences],
                  inbound_streams=session.inbound_streams, seconds=round(time.monotonic() - t0, 3))
    result["ok"] = ("error" not in result and counts["blocks_bad"] == 0
                    and all(r["complete"] and "files" in r for r in root_reports)
                    and all(m["dont_have"] for m in missing_reports))


async def bitswap_probe(host, peer_id, a, result: dict) -> None:
    """One bad input on a bitswap stream; see the module docstring."""
    import trio
    import bitswap_wire as bw
    session = BitswapSession(host, peer_id)
    control = cid_from_string(a.control_cid) if a.control_cid else None
    blocks, presences, priorities = [], [], {}

    async def collect(until, quiet: float, hard: float):
        """Reads answers until `until()` holds, nothing came for `quiet` seconds, or `hard` passed."""
        end = time.monotonic() + hard
        while not until() and time.monotonic() < end:
            msg = await session.next(min(quiet, end - time.monotonic()))
            if msg is None:
                return
            for prefix, data in msg["blocks"]:
                blocks.append(bw.cid_from_prefix(prefix, data))
            presences.extend(msg["presences"])

    t0 = time.monotonic()
    try:
        with trio.fail_after(a.timeout):
            stream = await session.open()
            ended = None
            if a.kind == "malformed":
                # Message.wantlist (field 1) claims 100 bytes; 3 follow.
                ended = await write_bad(stream, bw.frame(b"\x0a\x64\x0a\x01\x00"))
            elif a.kind == "oversize":
                # A length prefix of 5 MiB (the limit is 4 MiB), then 64 KiB of the "message".
                ended = await write_bad(stream, common.uvarint(5 << 20) + bytes(1 << 16))
            elif a.kind == "huge-wantlist":
                entries = []
                for i in range(a.entries):
                    cid = random_cid(False)
                    priorities[cid] = i + 1
                    entries.append(bw.entry(cid, i + 1, want_type=bw.WANT_BLOCK, send_dont_have=True))
                message = bw.wantlist_message(entries)
                result["message_bytes"] = len(message)
                await stream.write(bw.frame(message))
            else:  # unknown-want-type
                bad = cid_from_string(a.cid)
                await stream.write(bw.frame(bw.wantlist_message([
                    bw.entry(bad, 10, want_type=7, send_dont_have=True),
                    bw.entry(control, 5, want_type=bw.WANT_BLOCK, send_dont_have=True)])))
        if a.kind in ("malformed", "oversize"):
            result["stream"] = ended or await stream_outcome(stream, a.quiet * 2)
        elif a.kind == "huge-wantlist":
            await collect(lambda: len(presences) >= a.entries, a.quiet, a.timeout)
            result["stream"] = await stream_outcome(stream, 0.2)
            answered = [priorities[c] for c, k in presences if c in priorities and k == bw.DONT_HAVE]
            result.update(dont_haves=len(answered), distinct=len(set(c for c, _ in presences)),
                          dont_have_priorities=[min(answered), max(answered)] if answered else [])
        else:
            await collect(lambda: control in blocks, a.quiet, a.timeout)
            await collect(lambda: False, a.quiet, a.quiet)  # anything late for the bad entry?
            result["stream"] = await stream_outcome(stream, 0.2)
            result["bad_entry_answered"] = (bad in blocks) or any(c == bad for c, _ in presences)
        # The connection must still serve: a valid want for the control block on a fresh stream.
        if control is not None:
            blocks.clear()
            with trio.fail_after(a.timeout):
                fresh = await session.open()
                await session.send(bw.wantlist_message([bw.entry(control, 1, send_dont_have=True)]), fresh)
            await collect(lambda: control in blocks, a.timeout, a.timeout)
            result["control_served"] = control in blocks
    except BaseException as e:  # noqa: BLE001
        result["error"] = "bitswap-probe: %r" % e
    result.update(blocks=len(blocks), presences=len(presences), inbound_streams=session.inbound_streams,
                  seconds=round(time.monotonic() - t0, 3))
    result["ok"] = "error" not in result and (control is None or result.get("control_served") is True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--security", choices=["noise", "tls"], default="noise")
    ap.add_argument("--muxer", choices=["yamux", "mplex"], default="yamux")
    ap.add_argument("--ca-file", help="PEM bundle to verify /wss servers against")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds for the dial, the pings, each CID")
    ap.add_argument("-v", "--verbose", action="store_true", help="py-libp2p debug logs on stderr")
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("ping")
    p.add_argument("--peer", required=True, help="multiaddr ending in /p2p/<peer ID>")
    p.add_argument("--count", type=int, default=3)
    f = sub.add_parser("fetch")
    f.add_argument("--peer", required=True, help="multiaddr ending in /p2p/<peer ID>")
    f.add_argument("--cid", action="append", required=True)
    f.add_argument("--out-dir", required=True, help="fetched files are written here as N.bin")
    g = sub.add_parser("bitswap-get")
    g.add_argument("--peer", required=True, help="multiaddr ending in /p2p/<peer ID>")
    g.add_argument("--root", action="append", default=[], help="a DAG root to fetch whole")
    g.add_argument("--missing-v0", type=int, default=0, help="random CIDv0 wants nobody can answer")
    g.add_argument("--missing-v1", type=int, default=0, help="random CIDv1 (raw) wants nobody can answer")
    b = sub.add_parser("bitswap-probe")
    b.add_argument("--peer", required=True, help="multiaddr ending in /p2p/<peer ID>")
    b.add_argument("--kind", required=True,
                   choices=["malformed", "oversize", "huge-wantlist", "unknown-want-type"])
    b.add_argument("--cid", help="unknown-want-type: the CID asked for with wantType=7")
    b.add_argument("--control-cid", help="a block the server holds, asked for after the bad input")
    b.add_argument("--entries", type=int, default=10000, help="huge-wantlist: entries in the one message")
    b.add_argument("--quiet", type=float, default=2.0, help="seconds without a reply that end a collection")
    a = ap.parse_args()

    common.require_private_netns()
    common.claim_stdout()
    import logging
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING, stream=sys.stderr)
    if a.action == "fetch":
        a.out_dir = os.path.abspath(a.out_dir)
    import trio
    result = trio.run(run, a)
    common.emit(result)
    os._exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
