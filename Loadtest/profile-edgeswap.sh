#!/usr/bin/env bash
# Profiles a release `edgeswap serve` under `edgeswap load` (16 clients by default) with valgrind's callgrind
# (this VM has no hardware counters: `perf stat -e instructions` reports "not supported").
#
#   Loadtest/profile-edgeswap.sh [OUT_DIR]        (default OUT_DIR: /tmp/edgeswap-profile)
#
# Writes OUT_DIR/callgrind.out (open with callgrind_annotate or kcachegrind) and OUT_DIR/top.txt (the
# costliest functions, exclusive and inclusive, demangled). Runs in a loopback-only namespace; stops only
# the server it started, by PID. Environment: CLIENTS (16), ROUNDS (1), ROOT_CID (the 20 MiB fixture),
# SKIP_BUILD=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${EDGESWAP_IN_NETNS:-}" != 1 ]; then
    exec bash "$ROOT/.ci/in-netns" bash "${BASH_SOURCE[0]}" "$@"
fi
cd "$ROOT"
OUT=${1:-/tmp/edgeswap-profile}
CLIENTS=${CLIENTS:-16}
ROUNDS=${ROUNDS:-1}
BIN=$ROOT/.build/release/edgeswap
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/edgeswap-profile-work.XXXXXX)
SERVE_PID=""
cleanup() {
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID"
        for _ in $(seq 300); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product edgeswap >&2
"$BIN" fixtures --output "$WORK/fixtures" >/dev/null
"$BIN" ingest --quiet --store "$WORK/store" "$WORK"/fixtures/cars/*.car >/dev/null
"$BIN" key new --output "$WORK/key" >/dev/null
ROOT_CID=${ROOT_CID:-$(python3 -c 'import json,sys; print(next(f["root"] for f in json.load(open(sys.argv[1]))["fixtures"] if f["name"] == "cidv0-20mib"))' "$WORK/fixtures/fixtures.json")}

valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "$BIN" serve --store "$WORK/store" --key "$WORK/key" --log-level warning \
    --listen /ip4/127.0.0.1/tcp/4311/ws >"$WORK/serve.out" 2>"$OUT/serve.err" &
SERVE_PID=$!
for _ in $(seq 600); do grep -q '^listening ' "$WORK/serve.out" && break; sleep 0.1; done
ADDR=$(awk '/^listening /{print $2; exit}' "$WORK/serve.out")
[ -n "$ADDR" ] || { echo "server did not start" >&2; tail "$OUT/serve.err" >&2; exit 1; }
# Warm the index cache, then the measured load (the whole process is profiled; startup is small).
"$BIN" load "$ADDR" --root "$ROOT_CID" --round-timeout 600 --json >/dev/null
timeout -k 5 1200 "$BIN" load "$ADDR" --root "$ROOT_CID" --clients "$CLIENTS" --rounds "$ROUNDS" \
    --round-timeout 900 --json | tee "$OUT/load.json"
kill -TERM "$SERVE_PID"
for _ in $(seq 600); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
SERVE_PID=""
DEMANGLE=$(command -v swift-demangle || echo cat)
{
    echo "== exclusive (self) cost, top 40"
    callgrind_annotate --threshold=99 "$OUT/callgrind.out" 2>/dev/null | head -60 | $DEMANGLE --simplified 2>/dev/null || true
    echo
    echo "== inclusive cost, top 60"
    callgrind_annotate --inclusive=yes --threshold=99 "$OUT/callgrind.out" 2>/dev/null | head -80 | $DEMANGLE --simplified 2>/dev/null || true
} >"$OUT/top.txt"
echo "profile: $OUT/callgrind.out, summary: $OUT/top.txt" >&2
