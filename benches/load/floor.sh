#!/usr/bin/env bash
# The floor under portcullis (issue 22): how fast can this stack proxy at
# all, and how much of the gap to nginx is pingora-proxy's machinery?
#
#   benches/load/floor.sh [PORTCULLIS_BINARY]   (default: target/release/portcullis)
#
# Builds `cargo build --release --example floor` (gateway/examples/floor.rs)
# and runs, side by side, four TLS proxies in front of one nginx upstream
# (core 1), each on core 0 with one worker/thread:
#   nginx       compare.sh's `tls` config (proxy_pass, keep-alive upstream)
#   lean        floor.rs on pingora-core's HTTP/1 sessions and connector
#   proxy       floor.rs on pingora-proxy, every hook left at its default
#   portcullis  compare.sh's `tls` config (public, no limits, no headers)
# ROUNDS (5) interleaved rounds, in each for each body size (13 B and
# 16 KiB) every server once: wrk -t1 -c64 for SECS (8) s on core 1. Prints
# each run (req/s, the proxy's CPU µs per request from utime+stime, p99)
# and the medians with ratios to nginx. Needs nginx, wrk, curl, openssl,
# taskset, python3, cargo; ports 18080 and 18461-18464.
set -euo pipefail
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "${1:-$root/target/release/portcullis}")
rounds=${ROUNDS:-5}; secs=${SECS:-8}
(cd "$root" && cargo build -q --release --example floor)
FLOOR=$root/target/release/examples/floor
w=$(mktemp -d /tmp/floor-bench.XXXX); cd "$w"
trap 'kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null; sleep 0.5; rm -rf "$w"' EXIT
bench_certificate_and_upstream "$w"
declare -A port=([nginx]=18461 [lean]=18462 [proxy]=18463 [portcullis]=18464)

mkdir -p nginx/logs nginx/tmp
cat > nginx/nginx.conf <<N
daemon off; master_process off; worker_processes 1; error_log $w/nginx/logs/e.log; pid $w/nginx/pid;
events { worker_connections 4096; }
http { access_log off; server_tokens off; keepalive_requests 100000000; keepalive_timeout 600s;
 client_body_temp_path $w/nginx/tmp; proxy_temp_path $w/nginx/tmp; fastcgi_temp_path $w/nginx/tmp; uwsgi_temp_path $w/nginx/tmp; scgi_temp_path $w/nginx/tmp;
 upstream up { server 127.0.0.1:18080; keepalive 128; keepalive_requests 100000000; keepalive_timeout 600s; }
 server { listen 127.0.0.1:${port[nginx]} ssl; ssl_certificate $w/cert.pem; ssl_certificate_key $w/key.pem; ssl_protocols TLSv1.3;
  location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host;
   proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host;
   proxy_set_header X-Real-IP \$remote_addr; proxy_set_header X-Request-Id \$request_id; } } }
N
taskset -c 0 nginx -p "$w/nginx" -c "$w/nginx/nginx.conf" >/dev/null 2>&1 & echo $! > nginx.pid
for m in lean proxy; do
  taskset -c 0 "$FLOOR" "$m" "127.0.0.1:${port[$m]}" 127.0.0.1:18080 cert.pem key.pem >/dev/null 2>"$m.err" & echo $! > "$m.pid"
done
portcullis_config plain "${port[portcullis]}" 18080 "$w/portcullis.state" > portcullis.toml
taskset -c 0 "$BIN" run -c portcullis.toml >/dev/null 2>portcullis.err & echo $! > portcullis.pid
sleep 2
servers=(nginx lean proxy portcullis)
for s in "${servers[@]}"; do for f in small 16k; do
  c=$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' "https://127.0.0.1:${port[$s]}/$f" || true)
  [ "$c" = 200 ] || { echo "$s answers $c for /$f" >&2; cat "$s.err" 2>/dev/null >&2; exit 1; }
  taskset -c 1 wrk -t1 -c64 -d2s "https://127.0.0.1:${port[$s]}/$f" >/dev/null
done; done
echo -e "round\tbody\tserver\trps\tcpu_us_per_req\tp99"
for r in $(seq "$rounds"); do for f in small 16k; do for s in "${servers[@]}"; do
  pid=$(cat "$s.pid"); t0=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c64 -d"${secs}"s --latency "https://127.0.0.1:${port[$s]}/$f" > "$s.wrk"
  t1=$(cpu_ticks "$pid")
  read -r n rps p99 < <(wrk_result "$s.wrk") && [ -n "$n" ] || exit 1
  echo -e "$r\t$f\t$s\t$rps\t$(cpu_us_per_request "$t0" "$t1" "$n")\t$p99"
done; done; done | tee results.tsv
python3 - <<'P'
import csv, statistics as st
rows = list(csv.reader(open("results.tsv"), delimiter="\t"))
print("\nbody\tserver\tmedian_rps\tx_nginx\tmedian_cpu_us_per_req")
for f in ["small", "16k"]:
    med = {}
    for s in ["nginx", "lean", "proxy", "portcullis"]:
        r = [float(x[3]) for x in rows if x[1] == f and x[2] == s]
        c = [float(x[4]) for x in rows if x[1] == f and x[2] == s]
        med[s] = (st.median(r), st.median(c))
    for s, (r, c) in med.items():
        print(f"{f}\t{s}\t{r:.0f}\t{r / med['nginx'][0]:.2f}\t{c:.1f}")
P
