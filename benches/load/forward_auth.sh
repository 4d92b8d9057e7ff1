#!/usr/bin/env bash
# Forward auth's cost (issue 21): nginx alone against nginx asking portcullis
# (`auth_request` to the `[server] auth` listener) before every request, on
# the same route, side by side in one run.
#
#   benches/load/forward_auth.sh [BINARY]     (default: target/release/portcullis)
#
#   alone   nginx (one worker, core 0) proxying GET /small to the upstream
#           nginx (core 1), keep-alive both ways.
#   auth    the same nginx config plus the example's auth_request block:
#           every request first asks portcullis (threads = 1, core 0, beside
#           nginx as on one host) over a keep-alive connection, with the
#           session cookie; the route needs a login, so the session is
#           verified each time (HMAC, lifetimes, the identity cache) and the
#           identity headers come back.
# Both over plain HTTP on loopback (TLS costs both the same). Two loads,
# ROUNDS (5) interleaved rounds of SECS (8) s each (alone auth alone ...):
#   latency  wrk -t1 -c1: one request at a time, so p50 is the path's
#            latency, not a queue; the added p50/p99 is auth - alone.
#   rate     wrk -t1 -c32: req/s; the ratio auth / alone.
# Prints the medians; appends nothing by itself (benches/RESULTS.md gets the
# printed block by hand, with the date and commit). Needs nginx, wrk, curl,
# openssl, taskset, python3; ports 18080, 18451, 18461, 18471, 18472.
set -euo pipefail
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "${1:-$root/target/release/portcullis}")
rounds=${ROUNDS:-5}; secs=${SECS:-8}
w=$(mktemp -d /tmp/forward-auth-bench.XXXX); chmod 755 "$w"; cd "$w"
cleanup() { kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null || true; sleep 0.3; rm -rf "$w"; }
trap cleanup EXIT
bench_certificate_and_upstream "$w"

keys="bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz"
pw=benchpass-123456
portcullis_config policy 18451 18080 "$w/state" \
  | sed 's|^threads = 1$|threads = 1\nauth = "127.0.0.1:18461"\ntrusted_proxies = ["127.0.0.1/32"]|' > p.toml
printf '%s\n' "$pw" | "$BIN" user add bench -c p.toml >/dev/null
PORTCULLIS_SESSION_KEYS=$keys taskset -c 0 "$BIN" run -c p.toml >/dev/null 2>p.err & echo $! > p.pid

front() { # name port auth(0|1)
  local d=$w/$1 auth_block="" auth_lines=""
  mkdir -p "$d/logs" "$d/tmp"
  if [ "$3" = 1 ]; then
    auth_block="upstream portcullis { server 127.0.0.1:18461; keepalive 16; }"
    auth_lines='auth_request /_portcullis_auth;
      auth_request_set $pc_user $upstream_http_x_forwarded_user;
      auth_request_set $pc_roles $upstream_http_x_forwarded_roles;
      proxy_set_header X-Forwarded-User $pc_user;
      proxy_set_header X-Forwarded-Roles $pc_roles;'
  fi
  cat > "$d/nginx.conf" <<N
daemon off; master_process off; worker_processes 1; error_log $d/logs/e.log; pid $d/pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 600s;
 client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
 upstream app { server 127.0.0.1:18080; keepalive 64; }
 $auth_block
 server { listen 127.0.0.1:$2;
  location = /_portcullis_auth { internal;
    proxy_pass http://portcullis/.portcullis/auth; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_pass_request_body off; proxy_set_header Content-Length "";
    proxy_set_header X-Original-Method \$request_method;
    proxy_set_header X-Original-URL https://localhost\$request_uri;
    proxy_set_header X-Portcullis-Auth-Mode nginx; }
  location / { $auth_lines
    proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
N
  # The auth location names an upstream only the auth config defines.
  [ "$3" = 1 ] || sed -i '/location = \/_portcullis_auth/,/X-Portcullis-Auth-Mode nginx; }/d' "$d/nginx.conf"
  taskset -c 0 nginx -p "$d" -c "$d/nginx.conf" >/dev/null 2>"$d/err" & echo $! > "$w/$1.pid"
}
front alone 18471 0
front auth 18472 1
for p in 18451 18461 18471 18472; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done

cookie=$(bench_login https://127.0.0.1:18451 bench "$pw") || { cat p.err >&2; exit 1; }
s=$(curl -s -o /dev/null -w '%{http_code}' -H "$cookie" http://127.0.0.1:18472/small)
[ "$s" = 200 ] || { echo "auth front answers $s with a session" >&2; cat "$w/auth/logs/e.log" p.err >&2; exit 1; }
s=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' http://127.0.0.1:18472/small)
[ "$s" = 401 ] || { echo "auth front serves without a session ($s)" >&2; exit 1; }

ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}' <<<"$1"; }
for m in alone auth; do port=18471; [ $m = auth ] && port=18472
  taskset -c 1 wrk -t1 -c32 -d2s -H "$cookie" "http://127.0.0.1:$port/small" >/dev/null; done
echo -e "round\tload\tmode\trps\tp50_ms\tp99_ms\tcpu_us_per_req"
for r in $(seq "$rounds"); do for load in latency rate; do for m in alone auth; do
  port=18471; [ $m = auth ] && port=18472
  c=1; [ $load = rate ] && c=32
  procs=$(cat "$w/$m.pid"); [ $m = auth ] && procs="$procs $(cat p.pid)"
  t0=0; for p in $procs; do t0=$((t0 + $(cpu_ticks "$p"))); done
  out=$(taskset -c 1 wrk -t1 -c$c -d"${secs}"s --latency -H "$cookie" "http://127.0.0.1:$port/small")
  t1=0; for p in $procs; do t1=$((t1 + $(cpu_ticks "$p"))); done
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); [ -z "$non2xx" ] || { echo "$m: $non2xx non-2xx" >&2; exit 1; }
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out"); n=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(ms "$(awk '$1=="50%" {print $2}' <<<"$out")"); p99=$(ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  echo -e "$r\t$load\t$m\t$rps\t$p50\t$p99\t$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN{printf "%.1f", (b-a)*10000/n}')"
done; done; done | tee results.tsv
python3 - <<P
import csv, statistics as st
rows = list(csv.reader(open("results.tsv"), delimiter="\t"))
def med(load, mode, col):
    return st.median(float(x[col]) for x in rows if x[1] == load and x[2] == mode)
print()
for load in ["latency", "rate"]:
    for m in ["alone", "auth"]:
        print(f"{load:8} {m:6} median req/s {med(load, m, 3):9.0f}  p50 {med(load, m, 4):6.3f} ms  "
              f"p99 {med(load, m, 5):6.3f} ms  CPU {med(load, m, 6):5.1f} us/req")
print(f"added by the auth subrequest, one request at a time: p50 {med('latency','auth',4) - med('latency','alone',4):+.3f} ms "
      f"(target <= 0.3 ms), p99 {med('latency','auth',5) - med('latency','alone',5):+.3f} ms")
print(f"req/s with 32 connections, auth / alone: {med('rate','auth',3) / med('rate','alone',3):.2f}")
P
