#!/usr/bin/env bash
# files.sh: static files and gzip compression, Verge against NGINX in the same run
# (docs/performance.md, "Static files and compression").
#   bench/files.sh                 # DUR=5 ROUNDS=2, about 3 minutes
#   DUR=8 ROUNDS=3 bench/files.sh
#   SCENARIOS="file-1k" VERGE_ONLY="" ROUNDS=1 bench/files.sh
# The server under test runs on CPU 0 with one worker (NGINX worker_processes 1, Verge
# GOMAXPROCS=1); wrk (1 thread, 64 keep-alive connections) runs on CPU 1. CPU per request is
# the server's user+system time from /proc/PID/stat over the measured run divided by the
# requests served. Scenarios:
#   file-1k, file-100k      a static text file, no compression (NGINX: sendfile on)
#   gzip1-100k, gzip5-100k  a 100 KiB text file compressed on the fly with gzip level 1 / 5
#                           (NGINX gzip_comp_level 1 / 5), Accept-Encoding: gzip
#   zstd-100k, br-100k      Verge only: the same file with zstd / brotli at level 5
# Compressed scenarios also print CPU ms per MB of input and the ratio of bytes sent.
# Needs nginx, wrk, curl, Go (apt-get install -y nginx wrk curl).
set -euo pipefail
DUR=${DUR:-5}; ROUNDS=${ROUNDS:-2}; BIN=${BIN:-/tmp/verge-bench}
PORT_BASE=${PORT_BASE:-28181}; PORT=$PORT_BASE; STARTS=0
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
W=$(mktemp -d /tmp/fb.XXXX); chmod 755 "$W"
SRV=""
stop() { # the server, and until its port is free (NGINX's worker exits after its master)
  if [ -n "$SRV" ]; then kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; SRV=""; fi
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" || return 0; sleep 0.1; done
}
trap 'stop; rm -rf "$W"' EXIT

# The site: text made of the repository's documentation (compresses like web pages do).
mkdir -p "$W/site"; chmod 755 "$W/site"
cat "$ROOT"/docs/*.md "$ROOT"/docs/*.md > "$W/text"
head -c 1024 "$W/text" > "$W/site/1k.txt"
head -c 102400 "$W/text" > "$W/site/100k.txt"
chmod 644 "$W/site/"*

next_port() { STARTS=$((STARTS + 1)); PORT=$((PORT_BASE + STARTS % 50)); } # a fresh port per start
start_nginx() { # level (0: no gzip)
  next_port
  local gz=""
  if [ "$1" -gt 0 ]; then
    gz="gzip on; gzip_comp_level $1; gzip_types text/plain; gzip_min_length 512; gzip_vary on;"
  fi
  cat > "$W/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; sendfile on; tcp_nopush on;
  types { text/plain txt; } default_type application/octet-stream; $gz
  server { listen 127.0.0.1:$PORT backlog=4096; root $W/site; } }
NGINX
  taskset -c 0 nginx -c "$W/nginx.conf" & SRV=$!
}
start_verge() { # algorithm level (level 0: no compression)
  next_port
  local comp=""
  if [ "$2" -gt 0 ]; then comp="    compress: {algorithms: [$1], level: $2}"; fi
  cat > "$W/verge.yaml" <<VERGE
listeners: [{name: main, address: "127.0.0.1:$PORT", protocols: [h1]}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: $W/verge.pid
worker_data: $W/vdata
routes:
  - name: static
    files: {root: $W/site}
$comp
VERGE
  GOMAXPROCS=1 taskset -c 0 "$BIN/verge" run -c "$W/verge.yaml" >"$W/verge.log" 2>&1 & SRV=$!
}
wait_up() {
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/1k.txt" && return 0; sleep 0.1; done
  echo "server did not answer on port $PORT" >&2; cat "$W"/*.err "$W/verge.log" >&2 2>/dev/null; exit 1
}
tree_ticks() { # user+system ticks of $SRV and its children (NGINX's worker)
  local t=0 p
  for p in $SRV $(pgrep -P "$SRV" || true); do
    if [ -r "/proc/$p/stat" ]; then t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); fi
  done
  echo $t
}
measure() { # name server path accept-encoding
  local name=$1 server=$2 path=$3 ae=$4
  local hdr=(-H "X-Bench: 1")
  if [ -n "$ae" ]; then hdr=(-H "Accept-Encoding: $ae"); fi
  local size in_bytes c0 c1 out reqs rps p99 errs
  size=$(curl -s "${hdr[@]}" -o - "http://127.0.0.1:$PORT$path" | wc -c)
  in_bytes=$(stat -c %s "$W/site$path")
  taskset -c 1 wrk -t1 -c64 -d2s "${hdr[@]}" "http://127.0.0.1:$PORT$path" >/dev/null
  c0=$(tree_ticks)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}"s --latency "${hdr[@]}" "http://127.0.0.1:$PORT$path")
  c1=$(tree_ticks)
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/{print}' | tr '\n' ' ')
  awk -v n="$name" -v s="$server" -v t=$((c1 - c0)) -v r="$reqs" -v rps="$rps" -v p99="$p99" \
      -v out="$size" -v inb="$in_bytes" -v ae="$ae" -v e="$errs" 'BEGIN{
    us = t * 10000 / r
    line = sprintf("%-11s %-6s rps=%-9s cpu_us/req=%-7.1f p99=%-8s bytes/resp=%d", n, s, rps, us, p99, out)
    if (ae != "") line = line sprintf(" cpu_ms/MB_in=%.2f ratio=%.3f", us / 1000 / (inb / 1048576), out / inb)
    print line " " e }'
}
run_scenario() { # name server
  local name=$1 server=$2 level=0 alg=gzip path=/100k.txt ae=gzip
  case "$name" in
  file-1k) path=/1k.txt; ae="" ;;
  file-100k) ae="" ;;
  gzip1-100k) level=1 ;;
  gzip5-100k) level=5 ;;
  zstd-100k) alg=zstd; level=5; ae=zstd ;;
  br-100k) alg=br; level=5; ae=br ;;
  *) echo "unknown scenario $name" >&2; exit 2 ;;
  esac
  if [ "$server" = nginx ]; then start_nginx "$level"; else start_verge "$alg" "$level"; fi
  wait_up
  measure "$name" "$server" "$path" "$ae"
  stop
}
echo "# files.sh DUR=$DUR ROUNDS=$ROUNDS $(date -u +%FT%TZ) $(nginx -v 2>&1) verge $(cd "$ROOT" && git rev-parse --short HEAD)"
for round in $(seq "$ROUNDS"); do
  for s in ${SCENARIOS-file-1k file-100k gzip1-100k gzip5-100k}; do
    for server in nginx verge; do run_scenario "$s" "$server"; done
  done
  for s in ${VERGE_ONLY-zstd-100k br-100k}; do run_scenario "$s" verge; done
done
