#!/usr/bin/env bash
# Work per request inside portcullis (issue 22): heap allocations, system
# calls and context switches per request, counted on the running release
# binary without rebuilding it — uprobes on mimalloc's entry points (the
# global allocator's alloc, alloc_zeroed and realloc) and the kernel's
# syscall and scheduler counters, read by `perf stat -p` while wrk runs.
#
#   benches/load/allocs.sh [BINARY]     (default: target/release/portcullis)
#
#   tls     TLS, HTTP/1.1, GET /small, everything public, no limit, no
#           security headers (compare.sh's "tls" config)
#   policy  the same with a session cookie on a login route, a per-IP limit
#           and the default security headers (compare.sh's "policy")
#   nginx   nginx as the same TLS proxy (compare.sh's plain nginx config:
#           one worker, keep-alive pool, the same forwarding headers, an
#           access log to /dev/null): syscalls and context switches only,
#           for the comparison the issue asks for (nginx allocates from its
#           own pools, so malloc probes would not count the same thing)
# SECS (10) of wrk -t1 -c16 on core 1 against portcullis (threads = 1) on
# core 0, after a 2 s warm-up; allocations by C code calling malloc directly
# (none seen on the request path) are not counted. Needs root (uprobes),
# perf, nginx, wrk, curl, openssl, taskset; ports 18080, 18451-18453.
set -euo pipefail
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "${1:-$root/target/release/portcullis}")
secs=${SECS:-10}
group=probe_$(basename "$BIN" | tr -c 'a-zA-Z0-9_\n' _)
w=$(mktemp -d /tmp/allocs-bench.XXXX); chmod 755 "$w"; cd "$w"
cleanup() {
  perf probe -q -d "$group:*" 2>/dev/null || true
  kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null || true
  sleep 0.3; rm -rf "$w"
}
trap cleanup EXIT
perf probe -q -d "$group:*" 2>/dev/null || true
bench_certificate_and_upstream "$w"

declare -A port=([tls]=18451 [policy]=18452)
start_tls_and_policy "$BIN"
nginx_proxy_config "$w/px" plain 18453 18080 "$w"
taskset -c 0 nginx -p "$w/px" -c "$w/px/nginx.conf" >/dev/null 2>&1 & echo $! > nginx.pid
sleep 2
declare -A header=([tls]="X-Bench: 1" [nginx]="X-Bench: 1")
port[nginx]=18453
header[policy]=$(bench_login "https://127.0.0.1:${port[policy]}" bench "$BENCH_PASSWORD")
# Two passes per mode: syscalls and context switches at full speed, then
# allocations with the uprobes on (each hit traps, so that pass is slow and
# its own syscall counts would be skewed).
measure() { # mode events output
  local m=$1 url="https://127.0.0.1:${port[$1]}/small"
  taskset -c 1 wrk -t1 -c16 -d2s -H "${header[$m]}" "$url" >/dev/null
  perf stat -x, -o "$m.$3.stat" -e "$2" -p "$(cat "$m.pid")" -- \
    taskset -c 1 wrk -t1 -c16 -d"${secs}"s -H "${header[$m]}" "$url" > "$m.$3.wrk"
  awk '/requests in/ {print $1}' "$m.$3.wrk"
}
count() { awk -F, -v e="$2" '$3 ~ e {s += $1} END {print s + 0}' "$1"; }
for m in tls policy nginx; do
  s=$(curl -sk -o /dev/null -w '%{http_code}' -H "${header[$m]}" "https://127.0.0.1:${port[$m]}/small")
  [ "$s" = 200 ] || { echo "$m answers $s" >&2; cat "$m.err" >&2; exit 1; }
  echo "$(measure "$m" raw_syscalls:sys_enter,context-switches sys)" > "$m.sys.n"
done
for f in mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned; do
  perf probe -q -x "$BIN" --add "$f"
done
for m in tls policy; do
  measure "$m" "$group:mi_malloc_aligned,$group:mi_zalloc_aligned,$group:mi_realloc_aligned" alloc > "$m.alloc.n"
done
echo -e "mode\treq/s\tallocs/req\tsyscalls/req\tcontext switches/req"
for m in tls policy nginx; do
  n=$(cat "$m.sys.n"); na=$(cat "$m.alloc.n" 2>/dev/null || echo 0)
  allocs=0
  [ -f "$m.alloc.stat" ] && allocs=$(( $(count "$m.alloc.stat" mi_malloc_aligned) + $(count "$m.alloc.stat" mi_zalloc_aligned) + $(count "$m.alloc.stat" mi_realloc_aligned) ))
  awk -v m="$m" -v n="$n" -v secs="$secs" -v na="$na" -v a="$allocs" \
    -v s="$(count "$m.sys.stat" sys_enter)" -v c="$(count "$m.sys.stat" context-switches)" \
    'BEGIN {printf "%s\t%.0f\t%s\t%.2f\t%.3f\n", m, n / secs, (na > 0 ? sprintf("%.1f", a / na) : "-"), s / n, c / n}'
done
