#!/usr/bin/env bash
# do-density.sh: the density of Durable Objects, Verge against workerd in one run (issue 16).
# Both servers run the counter (examples/workers/counter; workerd: ../shared/bench/workerd's
# worker.js), pinned to CPU 0 (Verge with GOMAXPROCS=1); curl and wrk run on CPU 1.
#
#   WORKERD=/tmp/wd/node_modules/.bin/workerd bench/do-density.sh
#   PER=1 PHASES=load bench/do-density.sh      # Verge alone, one object per instance
#
# Phases (PHASES, default "mem load evict"):
#   mem    RSS before and after touching N objects once each (GET /counter/dI, I=1..N):
#          "mem setup=S rss0_mb=A rss1_mb=B per_object_kb=K" (K = (B-A)/N), and for Verge
#          the live objects and the instances hosting them from /metrics.
#   load   ROUNDS times, alternating: hello world (wrk -t1 -c64; Verge /hello, workerd /),
#          one object (wrk -t1 -c16 /counter/bench), and 64 busy objects (wrk -t1 -c64, the
#          requests cycling over /counter/busy1..64): "setup=S scenario=C rps=R cpu_us=U
#          p50=.. p99=.. requests=N non2xx=E" (cpu_us: user+system CPU of the server per
#          request, /proc/PID/stat).
#   evict  RSS every STEP seconds for EVICT_WAIT seconds after the last request, while the
#          idle objects are evicted: "evict t=S setup=S rss_mb=R [live=L instances=I]".
# Env: BIN (default /tmp/verge-density), N (1000), DUR (8), ROUNDS (2), PER (Verge's
# limits.objects_per_instance; empty: the default), EVICT_WAIT (180), STEP (15), PORT_BASE
# (29180: below the ephemeral port range), WORKERD, WORKERD_DIR (default ../shared/bench/workerd from the repo).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORKERD_DIR=${WORKERD_DIR:-$ROOT/../shared/bench/workerd}
BIN=${BIN:-/tmp/verge-density}; N=${N:-1000}; DUR=${DUR:-8}; ROUNDS=${ROUNDS:-2}; PER=${PER:-}
EVICT_WAIT=${EVICT_WAIT:-180}; STEP=${STEP:-15}; PORT_BASE=${PORT_BASE:-29180}
PHASES=${PHASES:-mem load evict}
. "$ROOT/bench/lib-cluster.sh"
(cd "$ROOT/examples/workers/hello" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$BIN/hello.wasm" .)
cleanup_extra() { [ -n "${WORKERD:-}" ] && pkill -f "$WORKERD serve config.capnp" 2>/dev/null || true; }

P=$PORT_BASE
LIMITS=""
[ -n "$PER" ] && LIMITS="    limits: {objects_per_instance: $PER}"
cat > "$W/verge.yaml" <<EOF
listeners: [{address: "127.0.0.1:$P"}]
admin: {address: "127.0.0.1:$((P+10))"}
access_log: {output: "off"}
log: {level: warn}
worker_data: $W/data
routes:
  - {name: hello, match: {path_prefix: /hello}, worker: hello}
  - {name: counter, worker: counter}
workers:
  - name: hello
    module: $BIN/hello.wasm
  - name: counter
    module: $BIN/counter.wasm
    durable_objects: [{binding: COUNTER, class: Counter}]
$LIMITS
EOF
for port in $P $((P+10)) $((P+40)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$(basename "$0"): port $port is in use (a server of an earlier run still stopping?)" >&2; exit 1
  fi
done
start verge 0; VP=$LAST
WDP=""
if [ -n "${WORKERD:-}" ]; then
  mkdir -p "$W/wd/data"
  cp "$WORKERD_DIR/worker.js" "$W/wd/"
  sed "s/127.0.0.1:18090/127.0.0.1:$((P+40))/" "$WORKERD_DIR/config.capnp" > "$W/wd/config.capnp"
  (cd "$W/wd" && taskset -c 0 "$WORKERD" serve config.capnp >/dev/null 2>"$W/workerd.err") &
  PIDS+=("$!")
fi
V="http://127.0.0.1:$P"; WDU="http://127.0.0.1:$((P+40))"
wait_code "$V/counter/warm" 200
if [ -n "${WORKERD:-}" ]; then
  wait_code "$WDU/counter/warm" 200
  WDP=$(pgrep -f "$WORKERD serve config.capnp" | head -1)
fi
curl -s -o /dev/null "$V/hello"

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# vmetric NAME: a verge_worker_* gauge of the counter worker
vmetric() { curl -s "http://127.0.0.1:$((P+10))/metrics" | awk -v m="$1" '$1 ~ "^"m"\\{.*worker=\"counter\"" {print $2}'; }

if [[ " $PHASES " == *" mem "* ]]; then
  sleep 2
  for s in verge workerd; do
    if [ $s = verge ]; then pid=$VP; u=$V; else [ -n "$WDP" ] || continue; pid=$WDP; u=$WDU; fi
    r0=$(rss_mb "$pid")
    # curl's URL globbing: N requests on one keep-alive connection, each to a new object.
    taskset -c 1 curl -s -o /dev/null "$u/counter/d[1-$N]"
    sleep 1
    r1=$(rss_mb "$pid")
    extra=""
    [ $s = verge ] && extra=" live=$(vmetric verge_worker_durable_objects) instances=$(vmetric verge_worker_object_instances)"
    echo "mem setup=$s objects=$N rss0_mb=$r0 rss1_mb=$r1 per_object_kb=$(awk -v a="$r0" -v b="$r1" -v n="$N" 'BEGIN {printf "%.0f", (b-a)*1024/n}')$extra"
  done
fi

# load SETUP PID SCENARIO URL CONNS [LUA]
load() {
  local setup=$1 pid=$2 sc=$3 url=$4 c=$5 lua=${6:-}
  local t0; t0=$(cpu_ticks "$pid")
  local out
  if [ -n "$lua" ]; then
    out=$(taskset -c 1 wrk -t1 -c"$c" -d"${DUR}s" --latency -s "$lua" "$url" 2>&1)
  else
    out=$(taskset -c 1 wrk -t1 -c"$c" -d"${DUR}s" --latency "$url" 2>&1)
  fi
  local t1; t1=$(cpu_ticks "$pid")
  wrk_stats "$out"
  echo "setup=$setup scenario=$sc rps=$RPS cpu_us=$(cpu_us "$t0" "$t1" "$REQ") p50=$P50 p99=$P99 requests=$REQ non2xx=$NON2XX"
}

if [[ " $PHASES " == *" load "* ]]; then
  cat > "$W/busy.lua" <<'EOF'
local n = 0
request = function()
  n = n % 64 + 1
  return wrk.format("GET", "/counter/busy" .. n)
end
EOF
  for r in $(seq "$ROUNDS"); do
    load verge "$VP" hello "$V/hello" 64
    [ -n "$WDP" ] && load workerd "$WDP" hello "$WDU/" 64
    load verge "$VP" one-object "$V/counter/bench" 16
    [ -n "$WDP" ] && load workerd "$WDP" one-object "$WDU/counter/bench" 16
    load verge "$VP" busy-64 "$V" 64 "$W/busy.lua"
    [ -n "$WDP" ] && load workerd "$WDP" busy-64 "$WDU" 64 "$W/busy.lua"
  done
fi

if [[ " $PHASES " == *" evict "* ]]; then
  for t in $(seq 0 "$STEP" "$EVICT_WAIT"); do
    [ "$t" -gt 0 ] && sleep "$STEP"
    echo "evict t=$t setup=verge rss_mb=$(rss_mb "$VP") live=$(vmetric verge_worker_durable_objects) instances=$(vmetric verge_worker_object_instances)"
    [ -n "$WDP" ] && echo "evict t=$t setup=workerd rss_mb=$(rss_mb "$WDP")"
  done
fi
