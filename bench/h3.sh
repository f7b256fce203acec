#!/usr/bin/env bash
# h3.sh: Verge's CPU per request over HTTP/3 against its own HTTP/2 over TLS, on loopback.
# One listener serves both (TLS with h2 by ALPN, HTTP/3 on the same UDP port) and answers
# /1k with a fixed 1 KiB body, so the two runs differ only in the downstream protocol. The
# client (bench/tools/h3load) opens one connection with 16 concurrent streams. Verge runs on
# CPU 0 with GOMAXPROCS=1, the client on CPU 1; CPU per request is Verge's user+system time
# (/proc/PID/stat) over the run divided by the requests served.
#
#   DUR=8 ROUNDS=3 bench/h3.sh
#
# Env: DUR (seconds per run, default 8), ROUNDS (default 3), BIN (default /tmp/verge-bench),
#      PORT (default 28443), CONC (streams, default 16).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN:-/tmp/verge-bench}; DUR=${DUR:-8}; ROUNDS=${ROUNDS:-3}; PORT=${PORT:-28443}; CONC=${CONC:-16}
mkdir -p "$BIN"
(cd "$HERE/tools" && CGO_ENABLED=0 go build -o "$BIN/" ./mkcert ./h3load)
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
mkdir -p "$BIN/cert"; "$BIN/mkcert" -dir "$BIN/cert"
W=$(mktemp -d /tmp/vh3.XXXX)
PID=""
cleanup() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; rm -rf "$W"; }
trap cleanup EXIT
cat > "$W/verge.yaml" <<EOF
listeners:
  - name: tls
    address: "127.0.0.1:$PORT"
    tls: {certificates: [{cert: "$BIN/cert/cert.pem", key: "$BIN/cert/key.pem"}]}
    http3: {enabled: true}
routes:
  - name: one-k
    respond: {body: "$(head -c 1024 /dev/zero | tr '\0' 'a')"}
access_log: {output: "off"}
admin: {disabled: true}
log: {level: warn}
pid_file: "$W/verge.pid"
EOF
GOMAXPROCS=1 taskset -c 0 "$BIN/verge" run -c "$W/verge.yaml" & PID=$!
for _ in $(seq 50); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
hz=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
  for proto in h3 h2; do
    t0=$(ticks)
    out=$(taskset -c 1 "$BIN/h3load" -proto "$proto" -addr "127.0.0.1:$PORT" -path /1k -c "$CONC" -d "${DUR}s")
    t1=$(ticks)
    reqs=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
    us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$reqs" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "nan" }')
    echo "round=$r $out cpu_us_per_req=$us"
  done
done
