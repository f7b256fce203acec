#!/usr/bin/env bash
# waits.sh: five concurrent 300 ms waits on one Durable Object, through `verge run` with a
# worker route (examples/workers/waits), and optionally through workerd.
#
#   bench/gate/waits.sh [VERGE_BINARY] [ROUNDS]
#
# Each round sends five requests at once to one object (bench/tools/concurrent) and takes
# the wall time until the last answer; it prints the median, for three kinds of wait: sdk.Sleep (the input gate opens), a subrequest
# to a local origin that answers after 300 ms (it opens too) and time.Sleep (it stays
# closed). With WORKERD=path/to/workerd it runs bench/gate/workerd.capnp the same way
# (setTimeout and a subrequest). Loopback only; stops by itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
verge=${1:-}
rounds=${2:-5}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
if [ -z "$verge" ]; then
	(cd "$root" && CGO_ENABLED=0 go build -o "$work/verge" ./cmd/verge)
	verge=$work/verge
fi
(cd "$root" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$work/waits.wasm" ./examples/workers/waits)

# The slow origin: answers every request after 300 ms.
cat >"$work/origin.go" <<'GO'
package main

import (
	"net/http"
	"time"
)

func main() {
	http.ListenAndServe("127.0.0.1:18095", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("ok"))
	}))
}
GO
(cd "$work" && go build -o origin origin.go)
"$work/origin" &
pids+=($!)

cat >"$work/verge.yaml" <<YAML
listeners: [{name: main, address: "127.0.0.1:18094"}]
access_log: {output: "off"}
routes: [{name: waits, worker: waits}]
workers:
  - name: waits
    module: "$work/waits.wasm"
    durable_objects: [{binding: ROOM, class: Room}]
    fetch: {allow: ["127.0.0.1"]}
YAML
"$verge" run -c "$work/verge.yaml" 2>"$work/verge.log" &
pids+=($!)

wait_up() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
wait_up "http://127.0.0.1:18094/warm/log"
wait_up "http://127.0.0.1:18095/"

(cd "$root/bench/tools" && go build -o "$work/concurrent" ./concurrent)
# run prints the median wall time of five concurrent requests (one client process, its
# connections opened beforehand) over the rounds.
run() { printf '%-34s %s\n' "$1" "$("$work/concurrent" -n 5 -rounds "$rounds" "$2")"; }
o=http://127.0.0.1:18094
run "verge sdk.Sleep(300ms)" "$o/s1/sleep?name=NAME&ms=300"
run "verge subrequest (300 ms origin)" "$o/f1/wait?name=NAME&u=http%3A%2F%2F127.0.0.1%3A18095%2F"
run "verge time.Sleep(300ms)" "$o/t1/sleep?name=NAME&ms=300&go=1"

if [ -n "${WORKERD:-}" ]; then
	mkdir -p "$work/wd/data"
	cp "$root/bench/gate/workerd.js" "$root/bench/gate/workerd.capnp" "$work/wd/"
	(cd "$work/wd" && exec "$WORKERD" serve workerd.capnp 2>"$work/workerd.log") &
	pids+=($!)
	wait_up "http://127.0.0.1:18096/warm/sleep?ms=1"
	w=http://127.0.0.1:18096
	run "workerd setTimeout(300ms)" "$w/s1/sleep?name=NAME&ms=300"
	run "workerd subrequest (300 ms origin)" "$w/f1/wait?name=NAME&u=http%3A%2F%2F127.0.0.1%3A18095%2F"
fi
