#!/usr/bin/env python3
"""Throwaway TLS material for /wss tests, made with the `openssl` command (Debian package openssl).

    test_tls.py certs --dir DIR [--rsa]
        DIR/ca.pem, DIR/ca.key       a fresh test CA (valid 2 days; the key never leaves DIR)
        DIR/server.pem, server.key   a server certificate signed by it for DNS:localhost and
                                     IP:127.0.0.1 (EC P-256, or RSA-2048 with --rsa)
        prints {"ok", "ca", "cert", "key"}. Peers trust the CA through SSL_CERT_FILE=DIR/ca.pem
        (kubo: Go's crypto/x509 reads it on Linux; Python's ssl default context too) or through
        --ca-file of kubo_peer.py / pylibp2p_peer.py.

    test_tls.py proxy --listen PORT --target PORT --cert PEM --key PEM
        A TLS-terminating TCP forwarder on 127.0.0.1:PORT to 127.0.0.1:TARGET, so that a /ws-only
        listener (kubo) can be dialed as /wss: it proves the CA and certificate work with real
        clients before edgeswap serves /wss itself. Prints {"ok", "listen"} when ready and runs
        until SIGTERM or --max-seconds. It refuses to run outside a loopback-only namespace.
"""
import argparse
import asyncio
import os
import signal
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        common.fail("openssl %s failed: %s" % (args[0], proc.stderr.strip()[-500:]))


def make_certs(directory: str, rsa: bool) -> dict:
    os.makedirs(directory, exist_ok=True)
    d = lambda name: os.path.join(directory, name)  # noqa: E731
    key_args = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    openssl("req", "-x509", *key_args, "-nodes", "-keyout", d("ca.key"), "-out", d("ca.pem"), "-days", "2",
            "-subj", "/CN=edgeswap interop test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *key_args, "-nodes", "-keyout", d("server.key"), "-out", d("server.csr"),
            "-subj", "/CN=localhost")
    with open(d("server.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", d("server.csr"), "-CA", d("ca.pem"), "-CAkey", d("ca.key"),
            "-set_serial", "0x%s" % os.urandom(8).hex(), "-days", "2", "-sha256",
            "-extfile", d("server.ext"), "-out", d("server.pem"))
    for name in ("ca.key", "server.key"):
        os.chmod(d(name), 0o600)
    return {"ok": True, "ca": d("ca.pem"), "cert": d("server.pem"), "key": d("server.key")}


async def proxy(a) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(a.cert, a.key)

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection("127.0.0.1", a.target)
        except OSError as e:
            common.log("proxy: cannot reach target: %r" % e)
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, target_writer), pipe(target_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", a.listen, ssl=context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    common.emit({"ok": True, "listen": "127.0.0.1:%d" % a.listen})
    try:
        await asyncio.wait_for(stop.wait(), a.max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="action", required=True)
    c = sub.add_parser("certs")
    c.add_argument("--dir", required=True)
    c.add_argument("--rsa", action="store_true", help="RSA-2048 keys instead of EC P-256")
    p = sub.add_parser("proxy")
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--max-seconds", type=float, default=300.0)
    a = ap.parse_args()
    if a.action == "certs":
        common.emit(make_certs(os.path.abspath(a.dir), a.rsa))
        return
    common.require_private_netns()
    asyncio.run(proxy(a))


if __name__ == "__main__":
    main()
