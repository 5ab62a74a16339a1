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
