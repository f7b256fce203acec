#!/usr/bin/env bash
# l4.sh: layer 4 TCP proxying, Verge against HAProxy `mode tcp`, in one run: bytes moved per
# CPU second of the proxy. Each proxy is pinned to core 0 (Verge with GOMAXPROCS=1, HAProxy
# with nbthread 1); the Go source/sink (bench/tools/l4stream) runs on core 1. CONNS
# connections each send BYTES to the sink while the sink sends BYTES back, through the
# proxy; the proxy's CPU time is read from /proc/<pid>/stat (utime+stime) before and after.
# HAProxy is measured twice: as configured by default (no splicing) and with
# `option splice-auto`. HAProxy: apt-get install -y haproxy; without it only Verge is measured.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN:-/tmp/verge-bench-bin}
BYTES=${BYTES:-1073741824}
CONNS=${CONNS:-4}
ROUNDS=${ROUNDS:-3}
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
(cd "$HERE/tools" && CGO_ENABLED=0 go build -o "$BIN/" ./l4stream)
W=$(mktemp -d /tmp/vl4.XXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }   # clock ticks
TCK=$(getconf CLK_TCK)

taskset -c 1 "$BIN/l4stream" server -listen 127.0.0.1:18201 -bytes "$BYTES" & PIDS+=($!)
waitport 18201

cat > "$W/verge.yaml" <<YAML
l4: [{name: bench, address: "127.0.0.1:18202", upstream: sink}]
upstreams: [{name: sink, servers: [{address: "127.0.0.1:18201"}]}]
admin: {disabled: true}
access_log: {output: "off"}
log: {level: warn}
pid_file: $W/verge.pid
YAML
GOMAXPROCS=1 taskset -c 0 "$BIN/verge" run -c "$W/verge.yaml" 2>"$W/verge.err" & VPID=$!; PIDS+=($VPID)
waitport 18202

HPID=
if command -v haproxy >/dev/null; then
  cat > "$W/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend f
  bind 127.0.0.1:18203
  default_backend b
backend b
  server s1 127.0.0.1:18201
CFG
  taskset -c 0 haproxy -f "$W/haproxy.cfg" -db & HPID=$!; PIDS+=($HPID)
  waitport 18203
  # The same with kernel splicing (not HAProxy's default), as Verge splices TCP to TCP.
  sed -e 's/18203/18204/' -e 's/^defaults$/defaults\n  option splice-auto/' "$W/haproxy.cfg" > "$W/haproxy-splice.cfg"
  taskset -c 0 haproxy -f "$W/haproxy-splice.cfg" -db & SPID=$!; PIDS+=($SPID)
  waitport 18204
fi

measure() { # name pid port
  local best=
  for _ in $(seq "$ROUNDS"); do
    local c0 c1 out
    c0=$(cpu "$2")
    out=$(taskset -c 1 "$BIN/l4stream" client -addr "127.0.0.1:$3" -bytes "$BYTES" -conns "$CONNS")
    c1=$(cpu "$2")
    read -r total secs <<<"$out"
    awk -v n="$1" -v t="$total" -v s="$secs" -v c=$((c1 - c0)) -v k="$TCK" 'BEGIN {
      cs = c / k; printf "%-8s %6.2f GB moved in %5.2f s (%5.2f GB/s), proxy CPU %5.2f s: %5.2f GB per CPU-second\n", n, t/1e9, s, t/1e9/s, cs, t/1e9/cs }'
  done
}
measure verge "$VPID" 18202
if [ -n "$HPID" ]; then
  measure haproxy "$HPID" 18203
  measure hap-splc "$SPID" 18204
fi
true
