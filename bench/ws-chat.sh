#!/usr/bin/env bash
# ws-chat.sh: the chat example (examples/workers/chat) under `verge run` with 10,000
# WebSockets over 100 rooms (Durable Objects holding their sockets with hibernation). Every
# member sends messages, every member must receive every message of its room with each
# sender's in order, and verge's RSS is reported: with the sockets open, after the messages,
# and once every room was evicted (the sockets stay open in the host; EVICT=0 skips that
# stage, which waits for the 30 s object idle timeout).
#
#   bench/ws-chat.sh                      # N=10000 ROOMS=100 MSGS=2
#   N=2000 ROOMS=20 EVICT=0 bench/ws-chat.sh
#
# Env: BIN (default /tmp/verge-wschat), N, ROOMS, MSGS, EVICT (1), PORT (default 18090; the
# admin API listens on PORT+1). Needs 2 file descriptors per socket across the two
# processes: the script raises its soft limit to the hard one and refuses to run below N+1000.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-/tmp/verge-wschat}; N=${N:-10000}; ROOMS=${ROOMS:-100}; MSGS=${MSGS:-2}
EVICT=${EVICT:-1}; PORT=${PORT:-18090}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((N + 1000)) ]; then
  echo "ws-chat.sh: open file limit $(ulimit -n) is below $((N + 1000)); raise the hard limit (ulimit -Hn)" >&2
  exit 1
fi
WORK=$(mktemp -d)
VPID=""
cleanup() { [ -n "$VPID" ] && kill "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/verge)
(cd "$ROOT" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$WORK/chat.wasm" ./examples/workers/chat)
(cd "$ROOT/bench/tools" && go build -o "$WORK/wschat" ./wschat)
cat >"$WORK/verge.yaml" <<YAML
listeners: [{name: main, address: "127.0.0.1:$PORT"}]
admin: {address: "127.0.0.1:$((PORT + 1))"}
access_log: {output: "off"}
worker_data: "$WORK/data"
routes: [{name: chat, worker: chat}]
workers:
  - name: chat
    module: "$WORK/chat.wasm"
    durable_objects: [{binding: ROOMS, class: Room}]
YAML
"$BIN" run -c "$WORK/verge.yaml" 2>"$WORK/verge.log" &
VPID=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$PORT/room/probe/members" >/dev/null 2>&1 && break
  kill -0 "$VPID" 2>/dev/null || { cat "$WORK/verge.log" >&2; exit 1; }
  sleep 0.2
done
WAIT=0s; [ "$EVICT" = 1 ] && WAIT=120s
"$WORK/wschat" -addr "127.0.0.1:$PORT" -admin "127.0.0.1:$((PORT + 1))" -pid "$VPID" \
  -n "$N" -rooms "$ROOMS" -msgs "$MSGS" -evicted "$WAIT" || { tail -20 "$WORK/verge.log" >&2; exit 1; }
