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
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
(cd "$ROOT/examples/workers/counter" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$BIN/counter.wasm" .)
W=$(mktemp -d /tmp/vcb.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
fail_log() { for f in "$W"/*.err; do echo "== $f" >&2; tail -5 "$f" >&2; done; }

# config NAME PUBLIC ADMIN [CLUSTER-YAML]
config() {
  cat > "$W/$1.yaml" <<EOF
listeners: [{address: "127.0.0.1:$2"}]
admin: {address: "127.0.0.1:$3"}
access_log: {output: "off"}
log: {level: warn}
pid_file: $W/$1.pid
worker_data: $W/$1-data
routes: [{worker: counter}]
workers:
  - name: counter
    module: $BIN/counter.wasm
    kv: [{binding: KV, namespace: bench}]
    durable_objects: [{binding: COUNTER, class: Counter}]
${4:-}
EOF
}
# start NAME CPU: sets LAST to the pid
start() {
  GOMAXPROCS=1 taskset -c "$2" "$BIN/verge" run -c "$W/$1.yaml" >/dev/null 2>"$W/$1.err" &
  LAST=$!
  PIDS+=("$LAST")
}
wait_put() { # URL
  for _ in $(seq 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$W/1k" "$1" || true)
    [ "$code" = 204 ] && return 0
    sleep 0.1
  done
  echo "cluster.sh: $1 never accepted a write" >&2; fail_log; exit 1
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
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
    local req; req=$(awk '/requests in/ {print $1}' <<<"$out")
    local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    local non2xx; non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
    local p50; p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    local p99; p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local cpu; cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v n="$req" 'BEGIN { printf "%.1f", (b-a)/hz*1e6/n }')
    echo "setup=$setup scenario=$sc rps=$rps cpu_us=$cpu p50=$p50 p99=$p99 requests=$req non2xx=$non2xx"
  done
}

P=$PORT_BASE
config single $P $((P+10))
C=""
for i in 1 2 3; do
  C="cluster:
  node: n$i
  embedded:
    listen: 127.0.0.1:$((P+20+i))
    cluster_listen: 127.0.0.1:$((P+30+i))
    routes: [127.0.0.1:$((P+31)), 127.0.0.1:$((P+32)), 127.0.0.1:$((P+33))]"
  config n$i $((P+i)) $((P+10+i)) "$C"
done
start single 0; SINGLE=$LAST
start n1 0; N1=$LAST
start n2 1; start n3 1
wait_put "http://127.0.0.1:$P/kv/hot"
for i in 1 2 3; do wait_put "http://127.0.0.1:$((P+i))/kv/hot"; done
for r in $(seq "$ROUNDS"); do
  measure single "$SINGLE" "http://127.0.0.1:$P"
  measure cluster "$N1" "http://127.0.0.1:$((P+1))"
done
