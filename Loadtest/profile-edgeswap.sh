#!/usr/bin/env bash
# Profiles a release `edgeswap serve` under `edgeswap load` (16 clients by default) with `perf record` on the
# software cpu-clock event. This VM has no hardware counters (`perf stat -e instructions` reports "not
# supported"), and valgrind 3.19's callgrind cannot read Swift 6.3's DWARF 5 ("unhandled dwarf2 abbrev form
# code 0x25", then "I can't recover"); with the debug info stripped it dies in libdispatch's sigsuspend.
#
#   Loadtest/profile-edgeswap.sh [OUT_DIR]        (default OUT_DIR: /tmp/edgeswap-profile)
#
# Writes OUT_DIR/perf.data (perf report -i ...) and OUT_DIR/top.txt (the costliest functions, self and
# inclusive, demangled). Runs in a loopback-only namespace; stops only
# the server and perf it started, by PID. Environment: CLIENTS (16), ROUNDS (3), ROOT_CID (the 20 MiB fixture),
# SKIP_BUILD=1, CALL_GRAPH (fp, or dwarf for exact callers of leaf functions such as memmove).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${EDGESWAP_IN_NETNS:-}" != 1 ]; then
    exec bash "$ROOT/.ci/in-netns" bash "${BASH_SOURCE[0]}" "$@"
fi
cd "$ROOT"
OUT=${1:-/tmp/edgeswap-profile}
CLIENTS=${CLIENTS:-16}
ROUNDS=${ROUNDS:-3}
BIN=$ROOT/.build/release/edgeswap
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/edgeswap-profile-work.XXXXXX)
SERVE_PID=""
cleanup() {
    if [ -n "${PERF_PID:-}" ]; then kill -INT "$PERF_PID" 2>/dev/null || true; fi
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

"$BIN" serve --store "$WORK/store" --key "$WORK/key" --log-level warning \
    --listen /ip4/127.0.0.1/tcp/4311/ws >"$WORK/serve.out" 2>"$OUT/serve.err" &
SERVE_PID=$!
for _ in $(seq 600); do grep -q '^listening ' "$WORK/serve.out" && break; sleep 0.1; done
ADDR=$(awk '/^listening /{print $2; exit}' "$WORK/serve.out")
[ -n "$ADDR" ] || { echo "server did not start" >&2; tail "$OUT/serve.err" >&2; exit 1; }
# Warm the index cache, then sample only the measured load.
"$BIN" load "$ADDR" --root "$ROOT_CID" --json >/dev/null
perf record -e cpu-clock -F 1999 --call-graph "${CALL_GRAPH:-fp}" -p "$SERVE_PID" -o "$OUT/perf.data" 2>"$OUT/perf-record.err" &
PERF_PID=$!
sleep 1
timeout -k 5 600 "$BIN" load "$ADDR" --root "$ROOT_CID" --clients "$CLIENTS" --rounds "$ROUNDS" --json | tee "$OUT/load.json"
kill -INT "$PERF_PID"
wait "$PERF_PID" || true
{
    echo "== self time by symbol (perf cpu-clock samples of edgeswap serve)"
    perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio -g none --percent-limit 0.7 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | swift-demangle --simplified | cut -c1-220
    echo
    echo "== inclusive (children) time by symbol"
    perf report -i "$OUT/perf.data" --children --sort symbol --stdio -g none --percent-limit 4 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | swift-demangle --simplified | cut -c1-220
} >"$OUT/top.txt"
echo "profile: $OUT/perf.data, summary: $OUT/top.txt" >&2
