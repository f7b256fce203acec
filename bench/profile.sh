#!/usr/bin/env bash
# profile.sh [SCENARIO] [OUT]: a CPU profile of verge (built into $BIN) under one bench1.sh
# scenario (default h1-1k), through the binary's hidden VERGE_CPUPROFILE hook, then the top
# flat and cumulative functions. The profile covers the first DUR+1 s (the 2 s warm-up and most of the run).
#   bench/profile.sh h1-1k /tmp/h1.pprof      (PROFILE_SECONDS overrides the DUR+1 s window)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
S=${1:-h1-1k}; OUT=${2:-/tmp/verge-$S.pprof}
export BIN=${BIN:-/tmp/verge-bench} DUR=${DUR:-8}
rm -f "$OUT"
SCENARIOS=$S VERGE_ENV="VERGE_CPUPROFILE=$OUT VERGE_CPUPROFILE_SECONDS=${PROFILE_SECONDS:-$((DUR + 1))}" "$HERE/bench1.sh" verge
[ -s "$OUT" ] || { echo "no profile written (the run ended before VERGE_CPUPROFILE_SECONDS?)" >&2; exit 1; }
go tool pprof -top -nodecount=35 "$BIN/verge" "$OUT" 2>/dev/null
go tool pprof -top -cum -nodecount=45 "$BIN/verge" "$OUT" 2>/dev/null
