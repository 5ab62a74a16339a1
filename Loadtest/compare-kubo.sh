#!/usr/bin/env bash
# Bitswap serving cost: edgeswap vs kubo v0.22 on the same blocks, measured with `edgeswap load`.
#
#   Loadtest/compare-kubo.sh            (or `make loadtest`)
#
# Runs itself inside a private network namespace with only loopback (.ci/in-netns). Builds a release
# `edgeswap`, generates the fixtures, ingests them into a fresh store, starts a release `edgeswap serve` and a
# locked-down kubo (Loadtest/kubo_serve_cars.py) holding the same CARs' blocks, then runs `edgeswap load`
# against each with 1 and with 16 concurrent clients (same DAG, same rounds). For each run it reads the
# server's CPU time (utime + stime of /proc/PID/stat, in CLK_TCK ticks) before and after, and prints MB/s,
# blocks/s, server CPU-seconds, MB per server CPU-second and the edgeswap/kubo ratio of that last figure.
#
# Environment (all optional):
#   ROOT_CID      DAG to fetch (default: the 20 MiB CIDv0 fixture)
#   CLIENTS       client counts to run (default "1 16")
#   ROUNDS_1      rounds per client with 1 client (default 20); ROUNDS_N for the other counts (default 3)
#   WINDOW        wants outstanding per client (default 32)
#   SKIP_BUILD=1  use the existing .build/release/edgeswap (or EDGESWAP_BIN=PATH)
#   KEEP=1        keep the scratch directory (printed at the end)
#   RESULTS=FILE  also write every run as one JSON line to FILE
#   SERVE_WRAPPER command prefix for `edgeswap serve` (e.g. "perf record -g -o /tmp/perf.data --"); the
#                 CPU figures then include the wrapper's children, not the wrapper itself
#   MAX_SECONDS   hard limit for the whole run (default 1500)
#   KUBO_CLIENTS=N  also fetch the DAG N times with real kubo v0.22 clients (Tests/Interop/kubo_peer.py fetch,
#                 a fresh repo each, KUBO_PARALLEL at a time, default 2) from each server, every download checked
#                 against the fixture's sha256; default 0 (off)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${EDGESWAP_IN_NETNS:-}" != 1 ]; then
    exec bash "$ROOT/.ci/in-netns" bash "${BASH_SOURCE[0]}" "$@"
fi
# The whole run is bounded: `timeout` sends SIGTERM after MAX_SECONDS; the trap below then stops the servers.
if [ -z "${LOADTEST_BOUNDED:-}" ]; then
    export LOADTEST_BOUNDED=1
    exec timeout -k 15 "${MAX_SECONDS:-1500}" bash "${BASH_SOURCE[0]}" "$@"
fi
cd "$ROOT"

CLIENTS=${CLIENTS:-"1 16"}
ROUNDS_1=${ROUNDS_1:-20}
ROUNDS_N=${ROUNDS_N:-3}
WINDOW=${WINDOW:-32}
MAX_SECONDS=${MAX_SECONDS:-1500}
VENV=${EDGESWAP_VENV:-$HOME/.cache/edgeswap/venv}
PY=$VENV/bin/python
BIN=${EDGESWAP_BIN:-$ROOT/.build/release/edgeswap}
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/edgeswap-loadtest.XXXXXX)
SERVE_PID=""
KUBO_PID=""

log() { echo "compare-kubo: $*" >&2; }

# Stops only what this script started, by PID: SIGTERM, then SIGKILL after 5 s.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$SERVE_PID"
    stop_pid "$KUBO_PID"
    if [ "${KEEP:-}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU ticks (utime + stime, fields 14 and 15) of a process; the command name (field 2) may hold spaces.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

if [ "${SKIP_BUILD:-}" != 1 ]; then
    log "building release edgeswap"
    swift build -c release --product edgeswap >&2
fi
[ -x "$BIN" ] || { log "no $BIN (build it or unset SKIP_BUILD)"; exit 1; }
[ -x "$PY" ] || { log "no venv python at $PY (make deps)"; exit 1; }

log "fixtures and store in $WORK"
"$BIN" fixtures --output "$WORK/fixtures" >/dev/null
CARS=("$WORK"/fixtures/cars/*.car)
"$BIN" ingest --quiet --store "$WORK/store" "${CARS[@]}" >/dev/null
"$BIN" key new --output "$WORK/edgeswap.key" >/dev/null
ROOT_CID=${ROOT_CID:-$("$PY" -c 'import json,sys; print(next(f["root"] for f in json.load(open(sys.argv[1]))["fixtures"] if f["name"] == "cidv0-20mib"))' "$WORK/fixtures/fixtures.json")}

# Waits until FILE has a line matching PATTERN (or the process PID died, or 60 s passed) and prints it.
wait_line() {
    local file=$1 pattern=$2 pid=$3
    for _ in $(seq 600); do
        if grep -q "$pattern" "$file" 2>/dev/null; then grep -m1 "$pattern" "$file"; return 0; fi
        kill -0 "$pid" 2>/dev/null || { log "process $pid exited early:"; tail -20 "$file.err" >&2 || true; return 1; }
        sleep 0.1
    done
    log "timed out waiting for '$pattern' in $file"; return 1
}

log "starting edgeswap serve (release)"
# shellcheck disable=SC2086
${SERVE_WRAPPER:-} "$BIN" serve --store "$WORK/store" --key "$WORK/edgeswap.key" --log-level warning \
    --listen /ip4/127.0.0.1/tcp/4301/ws >"$WORK/serve.out" 2>"$WORK/serve.out.err" &
SERVE_PID=$!
EDGESWAP_ADDR=$(wait_line "$WORK/serve.out" '^listening ' "$SERVE_PID" | awk '{print $2}')
# With a wrapper (perf), measure the server process itself, the wrapper's only child.
MEASURED_SERVE_PID=$SERVE_PID
if [ -n "${SERVE_WRAPPER:-}" ]; then MEASURED_SERVE_PID=$(pgrep -P "$SERVE_PID" | head -1 || true); MEASURED_SERVE_PID=${MEASURED_SERVE_PID:-$SERVE_PID}; fi

log "starting kubo with the same blocks"
mkfifo "$WORK/kubo.stdin"
"$PY" "$ROOT/Loadtest/kubo_serve_cars.py" --repo "$WORK/kubo" --port 4302 --max-seconds "$MAX_SECONDS" \
    "${CARS[@]}" <"$WORK/kubo.stdin" >"$WORK/kubo.out" 2>"$WORK/kubo.out.err" &
KUBO_PID=$!
exec 3>"$WORK/kubo.stdin"   # kubo stops when this script's end closes the pipe (or on SIGTERM)
KUBO_ADDR=$(wait_line "$WORK/kubo.out" '"maddr"' "$KUBO_PID" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["maddr"])')
log "edgeswap: $EDGESWAP_ADDR"
log "kubo:     $KUBO_ADDR"

# Runs one load and prints its JSON extended with the server's CPU seconds.
measure() {
    local name=$1 addr=$2 pid=$3 clients=$4 rounds=$5
    local before after out
    before=$(cpu_ticks "$pid")
    out=$(timeout -k 5 600 "$BIN" load "$addr" --root "$ROOT_CID" --clients "$clients" --rounds "$rounds" \
        --window "$WINDOW" --round-timeout 120 --json) || { log "load against $name failed: $out"; return 1; }
    after=$(cpu_ticks "$pid")
    "$PY" -c '
import json, sys
r = json.loads(sys.argv[1]); cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
r.update(server=sys.argv[5], server_cpu_seconds=round(cpu, 3),
         mb_per_server_cpu_second=round(r["bytes"] / 1e6 / cpu, 3) if cpu > 0 else None)
print(json.dumps(r))' "$out" "$before" "$after" "$TICKS" "$name"
}

log "warm-up (not measured): one round against each server"
measure edgeswap "$EDGESWAP_ADDR" "$MEASURED_SERVE_PID" 1 1 >/dev/null
measure kubo "$KUBO_ADDR" "$KUBO_PID" 1 1 >/dev/null

LINES=()
for clients in $CLIENTS; do
    if [ "$clients" = 1 ]; then rounds=$ROUNDS_1; else rounds=$ROUNDS_N; fi
    for server in edgeswap kubo; do
        if [ $server = edgeswap ]; then addr=$EDGESWAP_ADDR pid=$MEASURED_SERVE_PID; else addr=$KUBO_ADDR pid=$KUBO_PID; fi
        log "$server: $clients client(s) x $rounds round(s)"
        line=$(measure "$server" "$addr" "$pid" "$clients" "$rounds")
        LINES+=("$line")
        [ -n "${RESULTS:-}" ] && echo "$line" >>"$RESULTS"
    done
done

# Real kubo clients: each a fresh repo that dials the server and downloads the DAG (`ipfs get` path), checked.
KUBO_CLIENTS=${KUBO_CLIENTS:-0}
KUBO_PARALLEL=${KUBO_PARALLEL:-2}
FILE_SHA=$("$PY" -c 'import json,sys; print(next(f["sha256"] for f in json.load(open(sys.argv[1]))["fixtures"] if f["root"] == sys.argv[2]))' "$WORK/fixtures/fixtures.json" "$ROOT_CID" 2>/dev/null || true)
measure_kubo_clients() {
    local name=$1 addr=$2 pid=$3
    local before after start end done=0 bytes=0 failed=0
    before=$(cpu_ticks "$pid")
    start=$(date +%s.%N)
    while [ "$done" -lt "$KUBO_CLIENTS" ]; do
        local pids=() outs=()
        for _ in $(seq "$KUBO_PARALLEL"); do
            [ "$done" -lt "$KUBO_CLIENTS" ] || break
            done=$((done + 1))
            local dir="$WORK/kc-$name-$done"
            timeout -k 5 300 "$PY" "$ROOT/Tests/Interop/kubo_peer.py" --repo "$dir/repo" --timeout 120 fetch \
                --peer "$addr" --cid "$ROOT_CID" --out-dir "$dir/out" >"$dir.json" 2>"$dir.err" &
            pids+=($!); outs+=("$dir.json")
        done
        for p in "${pids[@]}"; do wait "$p" || true; done
        for o in "${outs[@]}"; do
            local got
            got=$("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); x=r["results"][0] if r.get("results") else {}; print("%s %s" % (x.get("bytes", 0), "ok" if r.get("ok") and x.get("sha256") == sys.argv[2] else "bad"))' "$o" "$FILE_SHA" 2>/dev/null || echo "0 bad")
            bytes=$((bytes + ${got% *}))
            [ "${got#* }" = ok ] || failed=$((failed + 1))
        done
        rm -rf "$WORK"/kc-"$name"-*/repo
    done
    end=$(date +%s.%N)
    after=$(cpu_ticks "$pid")
    "$PY" -c '
import json, sys
cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]); b = int(sys.argv[5]); secs = float(sys.argv[8]) - float(sys.argv[7])
print(json.dumps(dict(server=sys.argv[1], kubo_clients=int(sys.argv[6]), bytes=b, seconds=round(secs, 3),
      mb_per_s=round(b / 1e6 / secs, 3), server_cpu_seconds=round(cpu, 3), failed=int(sys.argv[9]),
      mb_per_server_cpu_second=round(b / 1e6 / cpu, 3) if cpu > 0 else None)))' \
        "$name" "$before" "$after" "$TICKS" "$bytes" "$KUBO_CLIENTS" "$start" "$end" "$failed"
}
KUBO_LINES=()
if [ "$KUBO_CLIENTS" -gt 0 ]; then
    for server in edgeswap kubo; do
        if [ $server = edgeswap ]; then addr=$EDGESWAP_ADDR pid=$MEASURED_SERVE_PID; else addr=$KUBO_ADDR pid=$KUBO_PID; fi
        log "$server: $KUBO_CLIENTS real kubo clients, $KUBO_PARALLEL at a time"
        line=$(measure_kubo_clients "$server" "$addr" "$pid")
        KUBO_LINES+=("$line")
        [ -n "${RESULTS:-}" ] && echo "$line" >>"$RESULTS"
    done
fi

printf '%s\n' "${LINES[@]}" | "$PY" -c '
import json, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
print("DAG %s, window %s" % (sys.argv[1], sys.argv[2]))
print("%-9s %7s %6s %9s %9s %10s %8s %8s %12s %6s" % ("server", "clients", "rounds", "MB", "MB/s", "blocks/s",
      "p50 ms", "p99 ms", "server CPU-s", "MB/CPU-s"))
for r in runs:
    print("%-9s %7d %6d %9.1f %9.1f %10.1f %8.2f %8.2f %12.2f %8.1f" % (r["server"], r["clients"],
          r["rounds"] // r["clients"], r["bytes"] / 1e6, r["mb_per_s"], r["blocks_per_s"], r["latency_p50_ms"],
          r["latency_p99_ms"], r["server_cpu_seconds"], r["mb_per_server_cpu_second"] or 0))
    if r["errors"]: print("  errors: %s" % r["error_samples"])
by = {(r["server"], r["clients"]): r for r in runs}
for clients in sorted({r["clients"] for r in runs}):
    e, k = by.get(("edgeswap", clients)), by.get(("kubo", clients))
    if e and k and e["mb_per_server_cpu_second"] and k["mb_per_server_cpu_second"]:
        print("%2d client(s): edgeswap/kubo MB per server CPU-second = %.2fx (throughput %.2fx)" % (clients,
              e["mb_per_server_cpu_second"] / k["mb_per_server_cpu_second"], e["mb_per_s"] / k["mb_per_s"]))
' "$ROOT_CID" "$WINDOW"
if [ "${#KUBO_LINES[@]}" -gt 0 ]; then
    printf '%s\n' "${KUBO_LINES[@]}" | "$PY" -c '
import json, sys
runs = {r["server"]: r for r in (json.loads(l) for l in sys.stdin if l.strip())}
print("real kubo v0.22 clients (fresh repo each), DAG fetched and checked:")
print("%-9s %8s %9s %9s %12s %9s %7s" % ("server", "fetches", "MB", "MB/s", "server CPU-s", "MB/CPU-s", "failed"))
for r in runs.values():
    print("%-9s %8d %9.1f %9.1f %12.2f %9.1f %7d" % (r["server"], r["kubo_clients"], r["bytes"] / 1e6, r["mb_per_s"],
          r["server_cpu_seconds"], r["mb_per_server_cpu_second"] or 0, r["failed"]))
e, k = runs.get("edgeswap"), runs.get("kubo")
if e and k and e["mb_per_server_cpu_second"] and k["mb_per_server_cpu_second"]:
    print("kubo clients: edgeswap/kubo MB per server CPU-second = %.2fx" % (e["mb_per_server_cpu_second"] / k["mb_per_server_cpu_second"]))
'
fi
