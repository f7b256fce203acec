# lib-cluster.sh: what bench/cluster.sh and bench/do-cluster.sh share, sourced after they set
# ROOT, BIN and PORT_BASE: wrk, the verge binary and the counter example built into $BIN, a
# scratch folder $W removed at exit (with every process started by `start`, and whatever
# the script's cleanup_extra stops), a single node's and a three-node cluster's configs,
# and the measuring helpers.
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/verge" ./cmd/verge)
(cd "$ROOT/examples/workers/counter" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$BIN/counter.wasm" .)
W=$(mktemp -d /tmp/vbench.XXXX)
PIDS=()
cleanup_extra() { :; }
cleanup() {
  cleanup_extra
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; rm -rf "$W"
}
trap cleanup EXIT
fail_log() { for f in "$W"/*.err; do echo "== $f" >&2; tail -5 "$f" >&2; done; }

# config NAME PUBLIC ADMIN [CLUSTER-YAML]
config() {
  cat > "$W/$1.yaml" <<EOF
listeners: [{address: "127.0.0.1:$2"}]
admin: {address: "127.0.0.1:$3"}
access_log: {output: "off"}
log: {level: warn}
pid_file: $W/$1.pid
worker_data: $W/$1-data
routes: [{worker: counter}]
workers:
  - name: counter
    module: $BIN/counter.wasm
    kv: [{binding: KV, namespace: bench}]
    durable_objects: [{binding: COUNTER, class: Counter}]
${4:-}
EOF
}

# configs writes "single" (public port P, admin P+10) and the cluster's n1..n3 (public
# P+i, admin P+10+i, NATS P+20+i, routes P+30+i).
configs() {
  local P=$PORT_BASE
  config single $P $((P+10))
  for i in 1 2 3; do
    config n$i $((P+i)) $((P+10+i)) "cluster:
  node: n$i
  embedded:
    listen: 127.0.0.1:$((P+20+i))
    cluster_listen: 127.0.0.1:$((P+30+i))
    routes: [127.0.0.1:$((P+31)), 127.0.0.1:$((P+32)), 127.0.0.1:$((P+33))]"
  done
}

# start NAME CPU: sets LAST to the pid
start() {
  GOMAXPROCS=1 taskset -c "$2" "$BIN/verge" run -c "$W/$1.yaml" >/dev/null 2>"$W/$1.err" &
  LAST=$!
  PIDS+=("$LAST")
}

# wait_code URL CODE [CURL-ARGS...]: until the URL answers CODE (90 s at most)
wait_code() {
  local url=$1 want=$2 code=
  shift 2
  for _ in $(seq 900); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" || true)
    [ "$code" = "$want" ] && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): $url never answered $want (last: $code)" >&2; fail_log; exit 1
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# cpu_us T0 T1 N: CPU microseconds per request between two cpu_ticks readings
cpu_us() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v n="$3" 'BEGIN { printf "%.1f", (b-a)/hz*1e6/n }'; }
# wrk_stats OUTPUT: sets REQ RPS NON2XX P50 P99 from wrk --latency's output
wrk_stats() {
  REQ=$(awk '/requests in/ {print $1}' <<<"$1")
  RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$1")
  NON2XX=$(awk '/Non-2xx/ {print $5}' <<<"$1"); NON2XX=${NON2XX:-0}
  P50=$(awk '$1=="50%" {print $2}' <<<"$1")
  P99=$(awk '$1=="99%" {print $2}' <<<"$1")
}
