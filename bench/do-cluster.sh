#!/usr/bin/env bash
# do-cluster.sh: one Durable Object counter (GET /counter/NAME of the counter example:
# read, increment, write, durable before the response) on a single node (SQLite), on the
# owner node of a three-node cluster (embedded JetStream, replicas 3), forwarded through
# another cluster node to that owner, and on workerd when WORKERD points at its binary
# (../shared/bench/workerd/README.md), alternating in the same run.
#
#   bench/do-cluster.sh                                     # DUR=8 ROUNDS=3
#   WORKERD=/tmp/wd/node_modules/.bin/workerd bench/do-cluster.sh
#
# Every Verge runs with GOMAXPROCS=1; the measured process is pinned to CPU 0, wrk
# (-t1 -c16) and the other processes to CPU 1. Lines:
#   "setup=S rps=R cpu_us=C [owner_cpu_us=O] p50=.. p99=.. requests=N non2xx=E"
# cpu_us is the measured process's user+system CPU per request (/proc/PID/stat); for the
# forwarded scenario the measured process is the forwarding node, and owner_cpu_us is the
# owner's CPU per request in the same interval.
# Env: BIN (default /tmp/verge-dobench), DUR, ROUNDS, PORT_BASE (default 39080), WORKERD,
# WORKERD_DIR (worker.js and config.capnp; default ../shared/bench/workerd from the repo).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORKERD_DIR=${WORKERD_DIR:-$ROOT/../shared/bench/workerd}
BIN=${BIN:-/tmp/verge-dobench}; DUR=${DUR:-8}; ROUNDS=${ROUNDS:-3}; PORT_BASE=${PORT_BASE:-39080}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
(cd "$ROOT/examples/workers/counter" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$BIN/counter.wasm" .)
W=$(mktemp -d /tmp/vdb.XXXX)
PIDS=()
cleanup() {
  [ -n "${WORKERD:-}" ] && pkill -f "$WORKERD serve config.capnp" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; rm -rf "$W"
}
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
wait_ok() { # URL
  for _ in $(seq 900); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  echo "do-cluster.sh: $1 never answered 200 (last: $code)" >&2; fail_log; exit 1
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# measure SETUP PID URL [OWNER-PID]
measure() {
  local setup=$1 pid=$2 url=$3 owner=${4:-}
  local t0 o0=0; t0=$(cpu_ticks "$pid"); [ -n "$owner" ] && o0=$(cpu_ticks "$owner")
  local out; out=$(taskset -c 1 wrk -t1 -c16 -d"${DUR}s" --latency "$url" 2>&1)
  local t1 o1=0; t1=$(cpu_ticks "$pid"); [ -n "$owner" ] && o1=$(cpu_ticks "$owner")
  local req; req=$(awk '/requests in/ {print $1}' <<<"$out")
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
  local p50; p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  local p99; p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local cpu; cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v n="$req" 'BEGIN { printf "%.1f", (b-a)/hz*1e6/n }')
  local extra=""
  [ -n "$owner" ] && extra=" owner_cpu_us=$(awk -v a="$o0" -v b="$o1" -v hz="$HZ" -v n="$req" 'BEGIN { printf "%.1f", (b-a)/hz*1e6/n }')"
  echo "setup=$setup rps=$rps cpu_us=$cpu$extra p50=$p50 p99=$p99 requests=$req non2xx=$non2xx"
}

P=$PORT_BASE
config single $P $((P+10))
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
start n2 1; N2=$LAST
start n3 1
WD=""
if [ -n "${WORKERD:-}" ]; then
  mkdir -p "$W/wd/data"
  cp "$WORKERD_DIR/worker.js" "$W/wd/"
  sed "s/127.0.0.1:18090/127.0.0.1:$((P+40))/" "$WORKERD_DIR/config.capnp" > "$W/wd/config.capnp"
  (cd "$W/wd" && taskset -c 0 "$WORKERD" serve config.capnp >/dev/null 2>"$W/workerd.err") &
  WD=$!; PIDS+=("$WD")
fi
wait_ok "http://127.0.0.1:$P/counter/bench"
# The cluster's object is placed on n1 by its first request through n1.
wait_ok "http://127.0.0.1:$((P+1))/counter/bench"
wait_ok "http://127.0.0.1:$((P+2))/counter/bench"
[ -n "$WD" ] && wait_ok "http://127.0.0.1:$((P+40))/counter/bench"
# workerd's own pid (the subshell that started it is its parent).
WDP=""
[ -n "$WD" ] && WDP=$(pgrep -f "$WORKERD serve config.capnp" | head -1)
for r in $(seq "$ROUNDS"); do
  measure single "$SINGLE" "http://127.0.0.1:$P/counter/bench"
  measure cluster-owner "$N1" "http://127.0.0.1:$((P+1))/counter/bench"
  measure cluster-forwarded "$N2" "http://127.0.0.1:$((P+2))/counter/bench" "$N1"
  [ -n "$WD" ] && measure workerd "$WDP" "http://127.0.0.1:$((P+40))/counter/bench"
done
