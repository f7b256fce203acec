#!/usr/bin/env bash
# h2spec.sh: HTTP/2 conformance of Verge's h2 adapter. Builds h2spec and the h2 package's test
# target, then runs every h2spec test case against h2c with prior knowledge and against TLS
# with ALPN h2. Exits non-zero unless every case passes on both (docs/http2.md, h2spec).
set -euo pipefail
cd "$(dirname "$0")/.."

H2SPEC_VERSION="${H2SPEC_VERSION:-v2.2.1+incompatible}"
work="$(mktemp -d)"
target_pid=""
cleanup() {
  if [ -n "$target_pid" ]; then kill "$target_pid" 2>/dev/null || true; wait "$target_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

h2spec="$(command -v h2spec || true)"
if [ -z "$h2spec" ]; then
  GOBIN="$work/bin" go install "github.com/summerwind/h2spec/cmd/h2spec@${H2SPEC_VERSION}"
  h2spec="$work/bin/h2spec"
fi
go build -o "$work/h2spectarget" ./h2/internal/h2spectarget

# The target listens on free loopback ports and prints them.
"$work/h2spectarget" -h2c 127.0.0.1:0 -tls 127.0.0.1:0 >"$work/target.log" 2>&1 &
target_pid=$!
# Wait for its "listening" lines (the target listens before it prints), up to 60 s on a busy
# machine, and stop waiting at once if it died.
for _ in $(seq 1 600); do
  if grep -q "listening tls" "$work/target.log" 2>/dev/null; then break; fi
  kill -0 "$target_pid" 2>/dev/null || break
  sleep 0.1
done
h2c_port="$(sed -n 's/^listening h2c .*:\([0-9]*\)$/\1/p' "$work/target.log")"
tls_port="$(sed -n 's/^listening tls .*:\([0-9]*\)$/\1/p' "$work/target.log")"
if [ -z "$h2c_port" ] || [ -z "$tls_port" ]; then
  echo "h2spec target did not start:"; cat "$work/target.log"; exit 1
fi

# check NAME OUT: prints the summary of one run; fails unless it ran and every case passed.
check() {
  local name="$1" out="$2" summary
  summary="$(grep -aE '^[0-9]+ tests, ' "$out" || true)"
  echo "== h2spec $name: ${summary:-no summary}"
  if [ -z "$summary" ] || ! grep -qE '^[0-9]+ tests, [0-9]+ passed, 0 skipped, 0 failed$' <<<"$summary"; then
    echo "   FAILED:"
    if grep -aq '^Failures:' "$out"; then sed -n '/^Failures:/,$p' "$out"; else tail -n 40 "$out"; fi
    return 1
  fi
}

status=0
"$h2spec" -h 127.0.0.1 -p "$h2c_port" -o 5 >"$work/h2c.out" 2>&1 || true
check "h2c (prior knowledge, port $h2c_port)" "$work/h2c.out" || status=1
"$h2spec" -h 127.0.0.1 -p "$tls_port" -t -k -o 5 >"$work/tls.out" 2>&1 || true
check "TLS (ALPN h2, port $tls_port)" "$work/tls.out" || status=1
if [ "$status" -ne 0 ]; then
  echo "target log:"; cat "$work/target.log"
fi
exit "$status"
