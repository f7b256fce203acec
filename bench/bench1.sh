#!/usr/bin/env bash
# bench1.sh TARGET: one pass of every scenario against one proxy (verge, nginx or haproxy).
# Prints one line per scenario: "target=T scenario=S key=value ...". Called by run.sh, which
# alternates targets round by round; it can be run alone for a quick look.
#
# Setup (the same as ../../shared/bench/proxybench.sh): the origin is NGINX with one worker
# serving /1k and /64k from files; the proxy runs on CPU 0 with one worker / one thread /
# GOMAXPROCS=1; origin and load generators share CPU 1. CPU per request is the proxy process
# tree's user+system time (/proc/PID/stat) over the measured run divided by requests served.
#
# Env: BIN (tools and verge binary; default /tmp/verge-bench), DUR (seconds per measured run,
#      default 8), RATE (fixed-rate scenario, requests/s, default 10000), IDLE_N (default 8000),
#      SCENARIOS (space-separated subset of: h1-1k h1-64k close-1k rate-1k idle h2c-1k tls;
#      default all; hit-1k, cache hits of /1k (NGINX proxy_cache vs Verge's cache with a disk
#      tier, then a Verge restart that must still hit), runs only when listed), CERT_DIR (cert.pem, key.pem, combined.pem; default $BIN/cert),
#      PORT_BASE (origin port; the proxy listens on +1, TLS on +2; default 28080),
#      VERGE_ENV (extra environment for verge, e.g. VERGE_CPUPROFILE=/tmp/p.pprof).
set -euo pipefail
TARGET=${1:?target: verge, nginx or haproxy}
BIN=${BIN:-/tmp/verge-bench}; DUR=${DUR:-8}; RATE=${RATE:-10000}; IDLE_N=${IDLE_N:-8000}
SCENARIOS=${SCENARIOS:-"h1-1k h1-64k close-1k rate-1k idle h2c-1k tls"}
CERT_DIR=${CERT_DIR:-$BIN/cert}
PORT_BASE=${PORT_BASE:-28080}
ORIGIN=$PORT_BASE; PORT=$((PORT_BASE + 1)); TLSPORT=$((PORT_BASE + 2))
for p in $ORIGIN $PORT $TLSPORT; do
  if ss -Hltn "sport = :$p" | grep -q .; then echo "bench1.sh: port $p is in use; set PORT_BASE" >&2; exit 1; fi
done

W=$(mktemp -d /tmp/vb.XXXX); chmod 755 "$W"
ORIGIN_PID=""; PROXY_PID=""
stop_proxy() {
  if [ -n "$PROXY_PID" ]; then
    kill "$PROXY_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
  fi
}
cleanup() {
  stop_proxy
  [ -n "$ORIGIN_PID" ] && { kill "$ORIGIN_PID" 2>/dev/null || true; wait "$ORIGIN_PID" 2>/dev/null || true; }
  rm -rf "$W"
}
trap cleanup EXIT
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# origin: NGINX, one worker, CPU 1
head -c 1024 /dev/zero | tr '\0' 'a' > "$W/1k"; head -c 65536 /dev/zero | tr '\0' 'b' > "$W/64k"
cat > "$W/origin.conf" <<EOF
worker_processes 1; daemon off; pid $W/origin.pid; error_log $W/origin.err;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN reuseport backlog=4096; root $W;
    location = /1k { } location = /64k { } } }
EOF
taskset -c 1 nginx -c "$W/origin.conf" & ORIGIN_PID=$!

# start_proxy MODE: MODE is h1 (plain HTTP/1.1), h2c (HTTP/2 prior knowledge) or tls.
start_proxy() {
  local mode=$1 listen
  case "$TARGET" in
  nginx)
    case $mode in
    h1|cache) listen="listen 127.0.0.1:$PORT backlog=4096;" ;;
    h2c) listen="listen 127.0.0.1:$PORT backlog=4096 http2;" ;;
    tls) listen="listen 127.0.0.1:$TLSPORT backlog=4096 ssl http2; ssl_certificate $CERT_DIR/cert.pem; ssl_certificate_key $CERT_DIR/key.pem; ssl_protocols TLSv1.2 TLSv1.3;" ;;
    esac
    cat > "$W/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/p.pid; error_log $W/p.err; worker_rlimit_nofile 65536;
events { worker_connections 32768; }
http { access_log off; keepalive_requests 1000000;
  $( [ "$mode" = cache ] && echo "proxy_cache_path $W/ncache levels=1:2 keys_zone=c:10m max_size=1g inactive=10m;" )
  upstream o { server 127.0.0.1:$ORIGIN; keepalive 256; }
  server { $listen location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on;
    $( [ "$mode" = cache ] && echo "proxy_cache c; proxy_cache_valid 200 10m; proxy_cache_lock on;" ) } } }
EOF
    taskset -c 0 nginx -c "$W/nginx.conf" >"$W/proxy.log" 2>&1 & PROXY_PID=$! ;;
  haproxy)
    case $mode in
    h1) listen="bind 127.0.0.1:$PORT" ;;
    h2c) listen="bind 127.0.0.1:$PORT proto h2" ;;
    tls) listen="bind 127.0.0.1:$TLSPORT ssl crt $CERT_DIR/combined.pem alpn h2,http/1.1" ;;
    esac
    cat > "$W/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9500
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  $listen
  default_backend b
backend b
  server o 127.0.0.1:$ORIGIN
EOF
    taskset -c 0 haproxy -f "$W/haproxy.cfg" >"$W/proxy.log" 2>&1 & PROXY_PID=$! ;;
  verge)
    # verge run with the config that `verge proxy --upstream ... --access-log off` builds, plus
    # an upstream pool of 256 idle connections like NGINX's "keepalive 256" above (the default,
    # 128, is below the 256 concurrent streams of the h2c scenario and would re-dial).
    local addr="127.0.0.1:$PORT" tlsconf=""
    if [ "$mode" = tls ]; then
      addr="127.0.0.1:$TLSPORT"
      tlsconf=$(printf '    tls:\n      certificates:\n        - cert: "%s"\n          key: "%s"' "$CERT_DIR/cert.pem" "$CERT_DIR/key.pem")
    fi
    cat > "$W/verge.yaml" <<EOF
listeners:
  - name: proxy
    address: "$addr"
$tlsconf
routes:
  - name: proxy
    upstream: origin
$( [ "$mode" = cache ] && printf '    cache: {ttl: {"200": 10m}}\ncache: {disk: {path: "%s"}}' "$W/vcache" )
upstreams:
  - name: origin
    servers:
      - address: "127.0.0.1:$ORIGIN"
upstream_pool:
  max_idle_per_server: 256
admin:
  disabled: true
access_log:
  output: "off"
log:
  level: warn
EOF
    env ${VERGE_ENV:-} GOMAXPROCS=1 taskset -c 0 "$BIN/verge" run -c "$W/verge.yaml" --pid-file "$W/verge.pid" >"$W/proxy.log" 2>&1 & PROXY_PID=$! ;;
  *) echo "unknown target $TARGET" >&2; exit 2 ;;
  esac
  local url="http://127.0.0.1:$PORT/1k" cf=()
  [ "$mode" = h2c ] && cf=(--http2-prior-knowledge)
  [ "$mode" = tls ] && { url="https://127.0.0.1:$TLSPORT/1k"; cf=(-k); }
  for _ in $(seq 100); do curl -sf "${cf[@]}" -o /dev/null "$url" && return 0; sleep 0.1; done
  echo "$TARGET $mode: proxy did not answer; log:" >&2; cat "$W/proxy.log" >&2; exit 1
}

tree_pids() { local p=$1; echo "$p"; for c in $(pgrep -P "$p" || true); do tree_pids "$c"; done; }
cpu_ticks() { local t=0; for p in $(tree_pids "$PROXY_PID"); do
  [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
rss_kb() { local t=0; for p in $(tree_pids "$PROXY_PID"); do
  [ -r "/proc/$p/status" ] && t=$((t + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done; echo $t; }
HZ=$(getconf CLK_TCK)
us_per() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n; else print "nan" }'; }
# wrk prints latencies as 812.00us, 3.10ms or 1.02s; to_ms converts to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else if (v ~ /s$/) printf "%.3f", v*1000; else print "nan" }'; }
emit() { echo "target=$TARGET scenario=$*"; }

# wrk_run NAME PATH [wrk args...]: saturation with one wrk thread over 64 connections.
wrk_run() {
  local name=$1 path=$2; shift 2
  taskset -c 1 wrk -t1 -c64 -d2s "$@" "http://127.0.0.1:$PORT$path" >/dev/null
  local c0 c1 out
  c0=$(cpu_ticks)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" --latency "$@" "http://127.0.0.1:$PORT$path")
  c1=$(cpu_ticks)
  local reqs rps p50 p99 errs
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/{printf "%.0f", $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1=="50%"{print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%"{print $2}')")
  errs=$(echo "$out" | awk '/Non-2xx/{n+=$NF} /Socket errors/{gsub(",","");n+=$4+$6+$8+$10} END{print n+0}')
  emit "$name rps=$rps cpu_us=$(us_per $((c1 - c0)) "$reqs") p50_ms=$p50 p99_ms=$p99 errors=$errs"
}

if has h1-1k || has h1-64k || has close-1k || has rate-1k || has idle; then
  start_proxy h1
  has h1-1k && wrk_run h1-1k /1k
  has h1-64k && wrk_run h1-64k /64k
  has close-1k && wrk_run close-1k /1k -H "Connection: close"
  if has rate-1k; then
    c0=$(cpu_ticks)
    out=$(taskset -c 1 "$BIN/rateload" -addr "127.0.0.1:$PORT" -path /1k -rate "$RATE" -conns 64 -d "${DUR}s" -warmup 1s || true)
    c1=$(cpu_ticks)
    sent=$(echo "$out" | grep -o 'sent=[0-9]*' | cut -d= -f2)
    lat() { echo "$out" | grep -o "$1=[0-9.]*" | cut -d= -f2; }
    # the CPU window includes the 1 s warm-up, hence sent*(DUR+1)/DUR requests
    emit "rate-1k rate=$RATE cpu_us=$(us_per $((c1 - c0)) "$(awk -v s="${sent:-0}" -v d="$DUR" 'BEGIN{print int(s*(d+1)/d)}')") p50_ms=$(lat p50) p99_ms=$(lat p99) p999_ms=$(lat p999) max_ms=$(lat max) errors=$(lat errors)"
  fi
  if has idle; then
    sleep 1
    r0=$(rss_kb)
    taskset -c 1 "$BIN/idleconns" -addr "127.0.0.1:$PORT" -n "$IDLE_N" -hold 6s >"$W/idle.out" 2>&1 &
    ip=$!
    for _ in $(seq 200); do grep -q '^open' "$W/idle.out" 2>/dev/null && break; kill -0 $ip 2>/dev/null || break; sleep 0.1; done
    sleep 2
    r1=$(rss_kb); wait $ip || true
    opened=$(awk '/^open/{print $2}' "$W/idle.out"); opened=${opened:-0}
    emit "idle conns=$opened rss_base_kb=$r0 rss_kb=$r1 kb_per_conn=$(awk -v a="$r0" -v b="$r1" -v n="$opened" 'BEGIN{ if (n>0) printf "%.2f", (b-a)/n; else print "nan" }')"
  fi
  stop_proxy
fi

if has hit-1k && [ "$TARGET" != haproxy ]; then
  start_proxy cache
  has hit-1k && wrk_run hit-1k /1k
  if [ "$TARGET" = verge ]; then
    # The disk tier keeps the object across a restart: the first request must be a hit.
    stop_proxy; start_proxy cache
    emit "hit-restart hit=$(curl -s -o /dev/null -D - "http://127.0.0.1:$PORT/1k" | grep -ci '^cache-status: verge; hit' || true)"
  fi
  stop_proxy
fi

if has h2c-1k; then
  start_proxy h2c
  n=$((DUR * 20000))
  taskset -c 1 h2load -c16 -m16 -n 20000 "http://127.0.0.1:$PORT/1k" >/dev/null 2>&1 || true
  c0=$(cpu_ticks)
  out=$(taskset -c 1 h2load -c16 -m16 -n "$n" "http://127.0.0.1:$PORT/1k" 2>&1 || true)
  c1=$(cpu_ticks)
  ok=$(echo "$out" | awk '/^requests:/{print $8}')
  rps=$(echo "$out" | awk '/^finished in/{printf "%.0f", $4}')
  emit "h2c-1k rps=$rps cpu_us=$(us_per $((c1 - c0)) "${ok:-0}") ok=${ok:-0} of=$n"
  stop_proxy
fi

if has tls; then
  start_proxy tls
  taskset -c 1 "$BIN/tlsload" -addr "127.0.0.1:$TLSPORT" -c 16 -d 1s >/dev/null 2>&1 || true
  c0=$(cpu_ticks)
  out=$(taskset -c 1 "$BIN/tlsload" -addr "127.0.0.1:$TLSPORT" -c 16 -d "${DUR}s" 2>/dev/null || true)
  c1=$(cpu_ticks)
  conns=$(echo "$out" | grep -o 'conns=[0-9]*' | cut -d= -f2)
  emit "tls rate=$(echo "$out" | grep -o 'rate=[0-9]*' | cut -d= -f2) cpu_us=$(us_per $((c1 - c0)) "${conns:-0}") p99_ms=$(echo "$out" | grep -o 'p99=[0-9.]*' | cut -d= -f2) errors=$(echo "$out" | grep -o 'errors=[0-9]*' | cut -d= -f2)"
  stop_proxy
fi
