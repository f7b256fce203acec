#!/usr/bin/env bash
# auth.sh: the cost of basic auth and of a combined access log, Verge against NGINX, on the
# setup of bench1.sh (proxy pinned to CPU 0 with one worker / GOMAXPROCS=1; the NGINX origin
# and wrk share CPU 1; CPU per request from /proc/PID/stat over the measured run).
#   scenarios: plain  (proxy, no auth, no log)
#              basic  (basic auth, one user with a bcrypt hash of cost 10, the right password
#                      on every request: NGINX's auth_basic runs crypt(3) each time; Verge
#                      caches verified pairs)
#              combined (proxy, combined access log to a file)
# Env: BIN (default /tmp/verge-bench; verge is built there), DUR (default 5), PORT_BASE
#      (default 38080), TARGETS (default "verge nginx").
# Needs nginx, wrk, htpasswd-free: the hash is made with Go's bcrypt.
set -euo pipefail
BIN=${BIN:-/tmp/verge-bench}; DUR=${DUR:-5}; PORT_BASE=${PORT_BASE:-38080}
TARGETS=${TARGETS:-"verge nginx"}
ORIGIN=$PORT_BASE; PORT=$((PORT_BASE + 1))
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
W=$(mktemp -d /tmp/ab.XXXX); chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT

# A bcrypt hash of "pw" at cost 10, made with the module's own bcrypt.
mkdir -p "$W/hash"
cat > "$W/hash/main.go" <<'EOF'
package main

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

func main() { h, _ := bcrypt.GenerateFromPassword([]byte("pw"), 10); fmt.Print(string(h)) }
EOF
HASH=$(cd "$ROOT" && go run "$W/hash/main.go")
echo "u:$HASH" > "$W/htpasswd"; chmod 644 "$W/htpasswd"
AUTH="Authorization: Basic $(printf 'u:pw' | base64)"

head -c 1024 /dev/zero | tr '\0' 'a' > "$W/1k"
cat > "$W/origin.conf" <<EOF
worker_processes 1; daemon off; pid $W/origin.pid; error_log $W/origin.err;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN reuseport backlog=4096; root $W; location / { try_files /1k =404; } } }
EOF
taskset -c 1 nginx -c "$W/origin.conf" & PIDS+=($!)

tree_pids() { local p=$1; echo "$p"; for c in $(pgrep -P "$p" || true); do tree_pids "$c"; done; }
cpu_ticks() { local t=0; for p in $(tree_pids "$1"); do
  [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }

run() { # target scenario
  local target=$1 sc=$2 pid
  local log=off; [ "$sc" = combined ] && log=on
  if [ "$target" = nginx ]; then
    local al="access_log off;"; [ $log = on ] && al="access_log $W/nginx-access.log combined;"
    local ab=""; [ "$sc" = basic ] && ab="auth_basic staff; auth_basic_user_file $W/htpasswd;"
    cat > "$W/p.conf" <<EOF
worker_processes 1; daemon off; pid $W/p.pid; error_log $W/p.err; worker_rlimit_nofile 65536;
events { worker_connections 32768; }
http { $al keepalive_requests 1000000;
  upstream o { server 127.0.0.1:$ORIGIN; keepalive 256; }
  server { listen 127.0.0.1:$PORT backlog=4096; location / { $ab proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
    taskset -c 0 nginx -c "$W/p.conf" & pid=$!
  else
    local al='{output: "off"}'; [ $log = on ] && al="{output: $W/verge-access.log, format: combined}"
    local ab=""; [ "$sc" = basic ] && ab="auth: {basic: {realm: staff, users_file: $W/htpasswd}}"
    cat > "$W/v.yaml" <<EOF
listeners: [{name: main, address: "127.0.0.1:$PORT"}]
admin: {disabled: true}
access_log: $al
pid_file: $W/v.pid
upstream_pool: {max_idle_per_server: 256}
upstreams: [{name: o, servers: [{address: "127.0.0.1:$ORIGIN"}]}]
routes:
  - {name: all, upstream: o, $ab}
EOF
    GOMAXPROCS=1 taskset -c 0 "$BIN/verge" run -c "$W/v.yaml" 2>"$W/verge.err" & pid=$!
  fi
  for _ in $(seq 100); do curl -sf -H "$AUTH" -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
  [ "$target$sc" = nginxbasic ] || taskset -c 1 wrk -t1 -c64 -d1s -H "$AUTH" "http://127.0.0.1:$PORT/" >/dev/null
  local c0 c1 out reqs rps p99 errs conns=64
  # NGINX runs bcrypt on every request (~0.1 s of CPU): 64 connections would all time out.
  [ "$target$sc" = nginxbasic ] && conns=4
  c0=$(cpu_ticks $pid)
  out=$(taskset -c 1 wrk -t1 -c$conns -d${DUR}s --timeout 10s --latency -H "$AUTH" "http://127.0.0.1:$PORT/")
  c1=$(cpu_ticks $pid)
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/{print}' | tr '\n' ' ')
  [ -n "${DEBUG:-}" ] && echo "$out"
  echo "target=$target scenario=$sc conns=$conns rps=$rps cpu_us/req=$(awk -v t=$((c1-c0)) -v r="$reqs" 'BEGIN{printf "%.1f", t*10000/r}') p99=$p99 $errs"
  kill $pid; wait $pid 2>/dev/null || true
}

for sc in ${SCENARIOS:-plain basic combined}; do
  for t in $TARGETS; do run "$t" "$sc"; done
done
