#!/usr/bin/env bash
# report.sh RESULTS: the median of every figure per target and scenario from bench1.sh lines,
# as a markdown table with Verge's ratios to HAProxy and NGINX, then the spread (min..max over
# rounds) of the figures the targets are judged on.
set -euo pipefail
F=${1:?results file}
awk '
/^target=/ {
  t = ""; s = ""
  for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "target") t = kv[2]; else if (kv[1] == "scenario") s = kv[2] }
  if (!(t in seen)) { seen[t] = 1; tl[++nt] = t }
  for (i = 1; i <= NF; i++) { split($i, kv, "="); k = kv[1]
    if (k == "target" || k == "scenario" || kv[2] == "" || kv[2] == "nan") continue
    key = t SUBSEP s SUBSEP k; n[key]++; v[key, n[key]] = kv[2] + 0 }
}
function med(key,   m, i, j, a, x) {
  m = n[key]; if (m == 0) return "-"
  for (i = 1; i <= m; i++) a[i] = v[key, i]
  for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
  return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
function spread(key,   m, i, lo, hi) {
  m = n[key]; if (m == 0) return "-"
  lo = hi = v[key, 1]
  for (i = 2; i <= m; i++) { if (v[key, i] < lo) lo = v[key, i]; if (v[key, i] > hi) hi = v[key, i] }
  return sprintf("%g..%g", lo, hi)
}
function fmt(x) { return (x == "-") ? "-" : sprintf("%g", x) }
function ratio(a, b) { return (a == "-" || b == "-" || b == 0) ? "-" : sprintf("%.2f", a / b) }
END {
  nr = split("h1-1k cpu_us|h1-1k rps|h1-1k p99_ms|h1-64k cpu_us|h1-64k rps|h1-64k p99_ms|close-1k cpu_us|close-1k rps|close-1k p99_ms|rate-1k p50_ms|rate-1k p99_ms|rate-1k p999_ms|rate-1k cpu_us|h2c-1k cpu_us|h2c-1k rps|tls cpu_us|tls rate|tls p99_ms|idle kb_per_conn", rows, "|")
  desc["cpu_us"] = "CPU us/req"; desc["rps"] = "req/s"; desc["p99_ms"] = "p99 ms"; desc["p50_ms"] = "p50 ms"
  desc["p999_ms"] = "p99.9 ms"; desc["rate"] = "handshakes/s"; desc["kb_per_conn"] = "KB RSS per idle conn"
  hdr = "| scenario | figure |"; sep = "|---|---|"
  for (i = 1; i <= nt; i++) { hdr = hdr " " tl[i] " |"; sep = sep "---|" }
  if (("verge" in seen) && ("haproxy" in seen)) { hdr = hdr " verge/haproxy |"; sep = sep "---|" }
  if (("verge" in seen) && ("nginx" in seen)) { hdr = hdr " verge/nginx |"; sep = sep "---|" }
  print hdr; print sep
  for (r = 1; r <= nr; r++) {
    split(rows[r], p, " "); s = p[1]; k = p[2]
    d = desc[k]; if (s == "tls" && k == "cpu_us") d = "CPU us/handshake"
    line = "| " s " | " d " |"; any = 0
    for (i = 1; i <= nt; i++) { m = med(tl[i] SUBSEP s SUBSEP k); if (m != "-") any = 1; line = line " " fmt(m) " |" }
    if (!any) continue
    mv = med("verge" SUBSEP s SUBSEP k)
    if (("verge" in seen) && ("haproxy" in seen)) line = line " " ratio(mv, med("haproxy" SUBSEP s SUBSEP k)) " |"
    if (("verge" in seen) && ("nginx" in seen)) line = line " " ratio(mv, med("nginx" SUBSEP s SUBSEP k)) " |"
    print line
  }
  print ""
  print "Spread over rounds (min..max):"
  print ""
  hdr = "| scenario | figure |"; sep = "|---|---|"
  for (i = 1; i <= nt; i++) { hdr = hdr " " tl[i] " |"; sep = sep "---|" }
  print hdr; print sep
  for (r = 1; r <= nr; r++) {
    split(rows[r], p, " "); s = p[1]; k = p[2]
    if (k != "cpu_us" && k != "p99_ms" && k != "kb_per_conn") continue
    d = desc[k]; if (s == "tls" && k == "cpu_us") d = "CPU us/handshake"
    line = "| " s " | " d " |"; any = 0
    for (i = 1; i <= nt; i++) { m = spread(tl[i] SUBSEP s SUBSEP k); if (m != "-") any = 1; line = line " " m " |" }
    if (any) print line
  }
}' "$F"
