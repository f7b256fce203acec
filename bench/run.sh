#!/usr/bin/env bash
# run.sh: Verge against NGINX and HAProxy on loopback, every scenario, alternating targets
# round by round (verge haproxy nginx, verge haproxy nginx, ...) so that the drift of a shared
# machine falls on all of them alike. Prints the medians as a markdown table with ratios.
#
#   bench/run.sh                      everything, DUR=8 ROUNDS=3 (about 12 minutes)
#   DUR=4 ROUNDS=1 bench/run.sh       a quick look
#   SCENARIOS="h1-1k h2c-1k" TARGETS="verge nginx" bench/run.sh
#
# Env: DUR, ROUNDS, TARGETS (default "verge haproxy nginx"), SCENARIOS, RATE, IDLE_N, PORT_BASE
#      (see bench1.sh), BIN (build directory, default /tmp/verge-bench), OUT (raw results file,
#      default $BIN/results-<time>.txt), VERGE_BIN (use this verge binary instead of building
#      one), NO_INSTALL=1 (do not apt-get missing tools).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export BIN=${BIN:-/tmp/verge-bench} DUR=${DUR:-8}
ROUNDS=${ROUNDS:-3}; TARGETS=${TARGETS:-"verge haproxy nginx"}
mkdir -p "$BIN"
OUT=${OUT:-$BIN/results-$(date +%Y%m%d-%H%M%S).txt}

need=()
for t in nginx haproxy wrk h2load curl taskset ss; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  [ "${NO_INSTALL:-}" = 1 ] && { echo "missing: ${need[*]}" >&2; exit 1; }
  echo "installing nginx haproxy wrk nghttp2-client curl (missing: ${need[*]})" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nginx haproxy wrk nghttp2-client curl util-linux iproute2 >/dev/null
fi
# The Debian packages start system services; they must not share our cores or ports.
if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then echo "note: system nginx service is running" >&2; fi

echo "building tools and verge (CGO_ENABLED=0) into $BIN" >&2
(cd "$HERE/tools" && CGO_ENABLED=0 go build -o "$BIN/" ./mkcert ./rateload ./tlsload ./idleconns)
if [ -n "${VERGE_BIN:-}" ]; then
  [ "$VERGE_BIN" -ef "$BIN/verge" ] || cp "$VERGE_BIN" "$BIN/verge"
else
  (cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
fi
export CERT_DIR=$BIN/cert
mkdir -p "$CERT_DIR"; "$BIN/mkcert" -dir "$CERT_DIR"

{
  echo "# $(date -u +%FT%TZ) DUR=$DUR ROUNDS=$ROUNDS RATE=${RATE:-10000} IDLE_N=${IDLE_N:-8000}"
  echo "# nproc=$(nproc) cpu=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo) kernel=$(uname -r)"
  echo "# $(nginx -v 2>&1 | tr -d '\n'); $(haproxy -v | head -1); verge $("$BIN/verge" version 2>&1); $(go version)"
} | tee "$OUT" >&2
for r in $(seq "$ROUNDS"); do
  for t in $TARGETS; do
    echo "round $r/$ROUNDS: $t (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "$HERE/bench1.sh" "$t" | tee -a "$OUT" >&2 || echo "# round $r $t failed" | tee -a "$OUT" >&2
  done
done
echo "raw results: $OUT" >&2
"$HERE/report.sh" "$OUT"
