#!/usr/bin/env bash
# Memory kept after connections that end abruptly: a release `edgeswap serve` on the fixture store, RSS read
# after a warm-up (the verified block cache then holds the DAG), then CONNECTIONS connections that each start
# fetching the 20 MiB DAG and reset (TCP RST) once RESET_AFTER answers have arrived, then RSS again after
# SETTLE seconds, with the server's own counts of what is left (connections, Bitswap sessions, lookup tasks).
#
#   Loadtest/reset-rss.sh          (or `make bench-resets`)
#
# Environment (all optional): CONNECTIONS (default 1000), CLIENTS (concurrent, default 20), RESET_AFTER
# (default 2 messages), SETTLE (seconds, default 20), CACHE_MIB (--block-cache-mib, default 128),
# SKIP_BUILD=1, MAX_SECONDS (default 900). Runs in a private network namespace with only loopback.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${EDGESWAP_IN_NETNS:-}" != 1 ]; then
    exec bash "$ROOT/.ci/in-netns" bash "${BASH_SOURCE[0]}" "$@"
fi
if [ -z "${LOADTEST_BOUNDED:-}" ]; then
    export LOADTEST_BOUNDED=1
    exec timeout -k 15 "${MAX_SECONDS:-900}" bash "${BASH_SOURCE[0]}" "$@"
fi
cd "$ROOT"
CONNECTIONS=${CONNECTIONS:-1000}
CLIENTS=${CLIENTS:-20}
RESET_AFTER=${RESET_AFTER:-2}
SETTLE=${SETTLE:-20}
CACHE_MIB=${CACHE_MIB:-128}
BIN=${EDGESWAP_BIN:-$ROOT/.build/release/edgeswap}
WORK=$(mktemp -d /tmp/edgeswap-resets.XXXXXX)
SERVE_PID=""
log() { echo "reset-rss: $*" >&2; }
cleanup() {
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${SKIP_BUILD:-}" != 1 ]; then swift build -c release --product edgeswap >&2; fi
"$BIN" fixtures --output "$WORK/fixtures" >/dev/null
"$BIN" ingest --quiet --store "$WORK/store" "$WORK"/fixtures/cars/*.car >/dev/null
"$BIN" key new --output "$WORK/key" >/dev/null
ROOT_CID=$(python3 -c 'import json,sys; print(next(f["root"] for f in json.load(open(sys.argv[1]))["fixtures"] if f["name"] == "cidv0-20mib"))' "$WORK/fixtures/fixtures.json")

"$BIN" serve --store "$WORK/store" --key "$WORK/key" --log-level error --block-cache-mib "$CACHE_MIB" \
    --listen /ip4/127.0.0.1/tcp/0/ws --admin-listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE_PID=$!
for _ in $(seq 600); do grep -q '^listening ' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -m1 '^listening ' "$WORK/serve.out" | awk '{print $2}')
ADMIN=$(grep -m1 '^admin ' "$WORK/serve.out" | awk '{print $2}')
[ -n "$ADDR" ] || { log "serve did not start"; cat "$WORK/serve.err" >&2; exit 1; }

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVE_PID/status"; }
metric() { curl -fsS "$ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

log "warm-up: two full rounds by a well-behaved client"
"$BIN" load "$ADDR" --root "$ROOT_CID" --clients 1 --rounds 2 --json >/dev/null
sleep 2
START_KB=$(rss_kb)
ROUNDS=$(( (CONNECTIONS + CLIENTS - 1) / CLIENTS ))
log "$((ROUNDS * CLIENTS)) connections ($CLIENTS at a time), each reset after $RESET_AFTER answers"
"$BIN" load "$ADDR" --root "$ROOT_CID" --clients "$CLIENTS" --rounds "$ROUNDS" --reset-after "$RESET_AFTER" \
    --round-timeout 60 --json >"$WORK/load.json" || { log "load failed"; cat "$WORK/load.json" >&2; exit 1; }
PEAK_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVE_PID/status")
sleep "$SETTLE"
END_KB=$(rss_kb)
printf '| connections reset | RSS after warm-up MB | peak MB | RSS %s s after MB | growth MB | open connections | bitswap sessions | lookup tasks |\n' "$SETTLE"
printf '|---|---|---|---|---|---|---|---|\n'
awk -v n="$((ROUNDS * CLIENTS))" -v s="$START_KB" -v p="$PEAK_KB" -v e="$END_KB" -v c="$(metric edgeswap_connections)" \
    -v b="$(metric edgeswap_bitswap_sessions)" -v t="$(metric edgeswap_bitswap_lookup_tasks)" \
    'BEGIN { printf "| %d | %.1f | %.1f | %.1f | %.1f | %s | %s | %s |\n", n, s/1024, p/1024, e/1024, (e-s)/1024, c, b, t }'
log "load: $(cat "$WORK/load.json")"
