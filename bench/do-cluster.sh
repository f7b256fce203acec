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
. "$ROOT/bench/lib-cluster.sh"
# workerd, when started, is not a child of this shell: stop it by name.
cleanup_extra() { [ -n "${WORKERD:-}" ] && pkill -f "$WORKERD serve config.capnp" 2>/dev/null || true; }

# measure SETUP PID URL [OWNER-PID]
measure() {
  local setup=$1 pid=$2 url=$3 owner=${4:-}
  local t0 o0=0; t0=$(cpu_ticks "$pid"); [ -n "$owner" ] && o0=$(cpu_ticks "$owner")
  local out; out=$(taskset -c 1 wrk -t1 -c16 -d"${DUR}s" --latency "$url" 2>&1)
  local t1 o1=0; t1=$(cpu_ticks "$pid"); [ -n "$owner" ] && o1=$(cpu_ticks "$owner")
  wrk_stats "$out"
  local extra=""
  [ -n "$owner" ] && extra=" owner_cpu_us=$(cpu_us "$o0" "$o1" "$REQ")"
  echo "setup=$setup rps=$RPS cpu_us=$(cpu_us "$t0" "$t1" "$REQ")$extra p50=$P50 p99=$P99 requests=$REQ non2xx=$NON2XX"
}

P=$PORT_BASE
configs
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
wait_code "http://127.0.0.1:$P/counter/bench" 200
# The cluster's object is placed on n1 by its first request through n1.
wait_code "http://127.0.0.1:$((P+1))/counter/bench" 200
wait_code "http://127.0.0.1:$((P+2))/counter/bench" 200
[ -n "$WD" ] && wait_code "http://127.0.0.1:$((P+40))/counter/bench" 200
# workerd's own pid (the subshell that started it is its parent).
WDP=""
[ -n "$WD" ] && WDP=$(pgrep -f "$WORKERD serve config.capnp" | head -1)
for r in $(seq "$ROUNDS"); do
  measure single "$SINGLE" "http://127.0.0.1:$P/counter/bench"
  measure cluster-owner "$N1" "http://127.0.0.1:$((P+1))/counter/bench"
  measure cluster-forwarded "$N2" "http://127.0.0.1:$((P+2))/counter/bench" "$N1"
  [ -n "$WD" ] && measure workerd "$WDP" "http://127.0.0.1:$((P+40))/counter/bench"
done
