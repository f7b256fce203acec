#!/usr/bin/env bash
# redirect.sh: CPU per request of the HTTP->HTTPS redirect on a plain listener, Verge's
# `redirect_https` against NGINX's `return 308 https://$host$request_uri`, in one run.
# The server is pinned to CPU 0 (one worker / GOMAXPROCS=1), wrk to CPU 1, 64 keep-alive
# connections on loopback, DUR seconds each (default 5). Prints requests/s and CPU
# microseconds of the server process per request.
set -euo pipefail
DUR=${DUR:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/redir.XXXX); chmod 755 "$W"
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
(cd "$HERE" && go build -o "$W/verge" ./cmd/verge)

# utime+stime in clock ticks of a process and its children (NGINX's worker)
cpu() { local t=0 p; for p in "$1" $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
measure() { # name pid
  local name=$1 pid=$2 t0 t1 reqs
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18090/ && break; sleep 0.1; done
  t0=$(cpu "$pid")
  reqs=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -H 'Host: example.com' http://127.0.0.1:18090/some/path?q=1 | awk '/^Requests\/sec/ {print $2}')
  t1=$(cpu "$pid")
  awk -v n="$name" -v r="$reqs" -v d="$DUR" -v c=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%-8s %10.0f req/s  %6.1f us CPU/req\n", n, r, c / hz * 1e6 / (r * d) }'
}

cat > "$W/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:18090 backlog=4096; location / { return 308 https://\$host\$request_uri; } } }
CONF
taskset -c 0 nginx -c "$W/nginx.conf" & PID=$!
measure nginx "$PID"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

cat > "$W/verge.yaml" <<CONF
listeners:
  - name: http
    address: 127.0.0.1:18090
    redirect_https: true
  - name: https
    address: 127.0.0.1:18443
    tls: {certificates: [{cert: $HERE/examples/certs/localhost.pem, key: $HERE/examples/certs/localhost-key.pem}]}
routes:
  - respond: {body: "x"}
admin: {disabled: true}
access_log: {output: "off"}
log: {level: warn}
pid_file: $W/verge.pid
CONF
GOMAXPROCS=1 taskset -c 0 "$W/verge" run -c "$W/verge.yaml" & PID=$!
measure verge "$PID"
