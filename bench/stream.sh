#!/usr/bin/env bash
# stream.sh: first-byte latency of a streamed worker response, Verge against workerd, in one
# run. Both workers write a first part, flush (workerd: a ReadableStream), pause 2 s and
# write a second part; firstbyte (bench/tools) measures when the first body byte and the
# whole body arrive, 5 requests each. Verge is also measured without the flush (what every
# response did before the SDK had Flush). Servers are pinned to core 0, the client to core 1.
# workerd comes from npm (WORKERD, default /tmp/wd/node_modules/.bin/workerd; install with
# `cd /tmp/wd && npm i workerd@1.20261117.1`); without it only Verge is measured.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN:-/tmp/verge-bench-bin}
WORKERD=${WORKERD:-/tmp/wd/node_modules/.bin/workerd}
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
(cd "$ROOT/examples/workers/stream" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$BIN/stream.wasm" .)
(cd "$HERE/tools" && CGO_ENABLED=0 go build -o "$BIN/" ./firstbyte)
W=$(mktemp -d /tmp/vstream.XXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

cat > "$W/verge.yaml" <<YAML
listeners: [{address: "127.0.0.1:18091"}]
admin: {disabled: true}
access_log: {output: "off"}
log: {level: warn}
pid_file: $W/verge.pid
worker_data: $W/data
routes: [{worker: stream}]
workers:
  - name: stream
    module: $BIN/stream.wasm
YAML
GOMAXPROCS=1 taskset -c 0 "$BIN/verge" run -c "$W/verge.yaml" >/dev/null 2>"$W/verge.err" &
PIDS+=("$!")

if [ -x "$WORKERD" ]; then
  cat > "$W/stream.js" <<'JS'
export default {
  async fetch(req) {
    const { readable, writable } = new TransformStream();
    const w = writable.getWriter();
    const enc = new TextEncoder();
    (async () => {
      await w.write(enc.encode("data: tick 1\n\n"));
      await new Promise(r => setTimeout(r, 2000));
      await w.write(enc.encode("data: tick 2\n\n"));
      await w.close();
    })();
    return new Response(readable, { headers: { "Content-Type": "text/event-stream" } });
  }
};
JS
  cat > "$W/config.capnp" <<'CAPNP'
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .mainWorker) ],
  sockets = [ ( name = "http", address = "127.0.0.1:18092", http = (), service = "main" ) ],
);
const mainWorker :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "stream.js") ],
  compatibilityDate = "2024-01-01",
);
CAPNP
  (cd "$W" && taskset -c 0 "$WORKERD" serve config.capnp >/dev/null 2>"$W/workerd.err") &
  PIDS+=("$!")
fi

for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:18091/ticks?n=1&ms=0" && break
  sleep 0.2
done
measure() { printf '%-28s ' "$1"; taskset -c 1 "$BIN/firstbyte" -n 5 "$2"; }
measure "verge, flushed" "http://127.0.0.1:18091/ticks?n=2&ms=2000"
measure "verge, not flushed" "http://127.0.0.1:18091/ticks?n=2&ms=2000&flush=0"
if [ -x "$WORKERD" ]; then
  for _ in $(seq 100); do
    curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:18092/" && break
    sleep 0.2
  done
  measure "workerd, ReadableStream" "http://127.0.0.1:18092/"
fi
