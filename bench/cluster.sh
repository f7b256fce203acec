#!/usr/bin/env bash
# cluster.sh: KV through a worker, single node (SQLite) against one node of a three-node
# cluster (embedded JetStream, replicas 3), in the same run.
#
#   bench/cluster.sh                 # DUR=8 ROUNDS=3
#   DUR=4 ROUNDS=1 bench/cluster.sh  # a quick look
#
# Every Verge runs the counter example worker (GET/PUT /kv/KEY on a KV namespace) with
# GOMAXPROCS=1. The measured node is pinned to CPU 0, wrk and the other two cluster nodes
# to CPU 1. Reported per scenario:
#   kv-read   GET of one 1 KiB key, wrk -t1 -c16: requests/s, CPU microseconds per request of
#             the measured process (user+system from /proc/PID/stat over the run)
#   kv-write  PUT of distinct keys (a wrk Lua script), wrk -t1 -c16: writes/s, latency p50
#             and p99 (wrk --latency), CPU microseconds per write
# Lines: "setup=single|cluster scenario=S rps=R cpu_us=C p50_ms=.. p99_ms=..".
# Env: BIN (default /tmp/verge-clusterbench), DUR, ROUNDS, PORT_BASE (default 38080).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-/tmp/verge-clusterbench}; DUR=${DUR:-8}; ROUNDS=${ROUNDS:-3}; PORT_BASE=${PORT_BASE:-38080}
. "$ROOT/bench/lib-cluster.sh"
cat > "$W/put.lua" <<'EOF'
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/kv/w-" .. math.random(1, 1e9) .. "-" .. n, nil, string.rep("x", 1024))
end
EOF
head -c 1024 /dev/zero | tr '\0' 'a' > "$W/1k"

# measure SETUP PID URL
measure() {
  local setup=$1 pid=$2 url=$3
  for sc in kv-read kv-write; do
    local args=(-t1 -c16 -d"${DUR}s" --latency)
    [ $sc = kv-write ] && args+=(-s "$W/put.lua")
    local t0; t0=$(cpu_ticks "$pid")
    local out; out=$(taskset -c 1 wrk "${args[@]}" "$url/kv/hot" 2>&1)
    local t1; t1=$(cpu_ticks "$pid")
    wrk_stats "$out"
    echo "setup=$setup scenario=$sc rps=$RPS cpu_us=$(cpu_us "$t0" "$t1" "$REQ") p50=$P50 p99=$P99 requests=$REQ non2xx=$NON2XX"
  done
}

P=$PORT_BASE
configs
start single 0; SINGLE=$LAST
start n1 0; N1=$LAST
start n2 1; start n3 1
for port in $P $((P+1)) $((P+2)) $((P+3)); do
  wait_code "http://127.0.0.1:$port/kv/hot" 204 -X PUT --data-binary @"$W/1k"
done
for r in $(seq "$ROUNDS"); do
  measure single "$SINGLE" "http://127.0.0.1:$P"
  measure cluster "$N1" "http://127.0.0.1:$((P+1))"
done
