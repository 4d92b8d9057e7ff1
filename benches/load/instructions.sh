#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind (issue 22):
# unlike req/s and CPU time, the count is the same run after run for the
# same binary and requests, whatever else the machine is doing, so a change
# of a few percent is readable from one run of each binary.
#
#   benches/load/instructions.sh [BINARY...]   (default: target/release/portcullis)
#
# For each binary, compare.sh's `tls` and `policy` configs, and once the
# floor's `lean` proxy (gateway/examples/floor.rs; `cargo build --release
# --example floor`) and compare.sh's nginx in both configs (user-space
# instructions only, the kernel's are not counted: a ratio to nginx here is
# not the req/s ratio), each in front of one nginx upstream and run under
# callgrind with collection off. One client keeps one TLS connection: WARM
# (200) requests, then collection on for N (2000) sequential GETs of a 13 B
# file (FILE=16k: 16 KiB), then off; so the TLS handshake and start-up are
# not counted.
# Prints instructions per request and, with TOP (12) > 0, the functions with
# the most inclusive instructions per request (callgrind_annotate
# --inclusive=yes; inlined code counts in its caller). The client is
# sequential, so these are the instructions of one request at a time: no
# batching of wake-ups as under wrk's 16 connections. KEEP=DIR keeps each
# run's annotation and callgrind file there (NAME.annotated, NAME.callgrind).
# Needs valgrind, nginx, openssl, curl, python3, cargo; ports 18080,
# 18471-18475; about two minutes per binary.
set -euo pipefail
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
bins=()
for b in "${@:-$root/target/release/portcullis}"; do bins+=("$(realpath "$b")"); done
warm=${WARM:-200}; n=${N:-2000}; top=${TOP:-12}; file=${FILE:-small}
(cd "$root" && cargo build -q --release --example floor)
FLOOR=$root/target/release/examples/floor
w=$(mktemp -d /tmp/instructions-bench.XXXX); chmod 755 "$w"; cd "$w"
cleanup() { kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null || true; sleep 0.5; rm -rf "$w"; }
trap cleanup EXIT
bench_certificate_and_upstream "$w"
printf '%s\n' "$BENCH_PASSWORD" > password

# client URL HEADER PID: WARM requests, counting on, N requests, counting off.
cat > client.py <<'PY'
import http.client, ssl, subprocess, sys
port, header, pid, warm, n, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
expected = open(sys.argv[7], "rb").read()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
name, _, value = header.partition(": ")
def get():
    c.request("GET", path, headers={name: value, "Host": "localhost"})
    r = c.getresponse(); body = r.read()
    if r.status != 200 or body != expected:
        sys.exit(f"answered {r.status}: {body[:200]!r}")
for _ in range(warm): get()
subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
for _ in range(n): get()
subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
PY

wait_port() {
  for _ in $(seq 600); do
    curl -sk -o /dev/null "https://127.0.0.1:$1/" && return 0
    sleep 0.2
  done
  echo "nothing answers on port $1" >&2; return 1
}

# measure NAME LABEL PORT HEADER -- COMMAND...: COMMAND under callgrind, counted.
measure() {
  local name=$1 label=$2 port=$3 header=$4; shift 5
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$w/$name.cg" "$@" \
    >/dev/null 2>"$name.vg" & echo $! > "$name.pid"
  wait_port "$port"
  if [ "$header" = login ]; then
    header=$(bench_login "https://127.0.0.1:$port" bench "$BENCH_PASSWORD")
  fi
  python3 client.py "$port" "$header" "$(cat "$name.pid")" "$warm" "$n" "/$file" "$w/up/$file"
  local pid; pid=$(cat "$name.pid"); rm -f "$name.pid"
  kill -INT "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  local dump total
  dump=$(ls -S "$w/$name.cg"* | head -1)
  callgrind_annotate --inclusive=yes "$dump" 2>/dev/null > "$name.annotated"
  total=$(sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' "$name.annotated" | tr -d ,)
  printf '%-36s %10d instructions per request\n' "$label" "$((total / n))"
  if [ -n "${KEEP:-}" ]; then cp "$name.annotated" "$KEEP/$name.annotated"; cp "$dump" "$KEEP/$name.callgrind"; fi
  if [ "$top" -gt 0 ]; then
    grep -E '^ *[0-9,]+ ' "$name.annotated" | grep -v 'PROGRAM TOTALS' | head -"$top" |
      awk -v n="$n" '{ c=$1; gsub(",", "", c); $1=""; printf "    %8.0f %s\n", c / n, substr($0, 1, 150) }'
  fi
}

i=0
for bin in "${bins[@]}"; do
  i=$((i + 1))
  for m in tls policy; do
    [ "$m" = tls ] && port=18471 || port=18472
    d="$w/$i-$m"; mkdir -p "$d"; cp cert.pem key.pem "$d/"
    kind=plain; [ "$m" = policy ] && kind=policy
    portcullis_config_for "$bin" "$kind" "$port" 18080 "$d/state" > "$d/p.toml"
    [ "$m" = policy ] && "$bin" user add bench -c "$d/p.toml" < password >/dev/null
    header="X-Bench: 1"; [ "$m" = policy ] && header=login
    PORTCULLIS_SESSION_KEYS=bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz \
      measure "$i-$m" "$m ($bin)" "$port" "$header" -- "$bin" run -c "$d/p.toml"
  done
done
measure floor "floor lean ($FLOOR)" 18473 "X-Bench: 1" -- "$FLOOR" lean 127.0.0.1:18473 127.0.0.1:18080 cert.pem key.pem
# nginx as compare.sh runs it, for a ratio no busy neighbour can move: its
# `policy` request carries a cookie of the session cookie's length (nginx
# verifies none, as in compare.sh).
fake="Cookie: __Host-portcullis=v3|$(printf '0%.0s' {1..32})|1796649373186|1796649373186.$(printf 'A%.0s' {1..43})"
for m in tls policy; do
  [ "$m" = tls ] && port=18474 || port=18475
  kind=plain; [ "$m" = policy ] && kind=policy
  header="X-Bench: 1"; [ "$m" = policy ] && header=$fake
  nginx_proxy_config "$w/nginx-$m" "$kind" "$port" 18080 "$w"
  measure "nginx-$m" "nginx $m" "$port" "$header" -- nginx -p "$w/nginx-$m" -c "$w/nginx-$m/nginx.conf"
done
