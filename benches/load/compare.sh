#!/usr/bin/env bash
# Side-by-side load comparison (issue 8): portcullis against nginx, HAProxy
# and Caddy on loopback, each proxying to the same upstream.
#
#   benches/load/compare.sh            # the full run, about 11 minutes
#   SECS=3 ROUNDS=1 benches/load/compare.sh   # a quick smoke run
#
# Writes benches/RESULTS.md (keeping its hand-written "Notes" section) and
# prints the same tables. Not part of CI. See benches/README.md for the method.
#
# What it does:
#  1. Installs what is missing (apt-get, when root): nginx, haproxy, caddy,
#     wrk, nghttp2-client (h2load), linux-perf; builds portcullis in release.
#  2. Starts ONE upstream: an nginx instance (one worker, static files from a
#     temp dir, no access log) serving /small (13 bytes) and /16k (16 KiB).
#     nginx is about the cheapest HTTP/1.1 server there is, so it is not what
#     limits a proxy in front of it.
#  3. Starts, for each mode, one instance of each proxy (fresh process, so its
#     peak RSS is that mode's): nginx, HAProxy, Caddy, portcullis; configs are
#     generated here. One worker / thread each (nginx worker_processes 1 and
#     master_process off, HAProxy nbthread 1, Caddy GOMAXPROCS=1, portcullis
#     [server] threads = 1), keep-alive to the upstream (a pool of 128), the
#     same self-signed ECDSA P-256 certificate, TLS 1.3 only, h2 and http/1.1
#     by ALPN, one access-log line per request written to /dev/null (HAProxy
#     and Caddy to stdout, which is /dev/null) since portcullis always logs.
#     Every proxy sets X-Forwarded-For/-Proto/-Host, X-Real-IP and
#     X-Request-Id towards the upstream, as portcullis does.
#     With 2+ cores the proxies are pinned (taskset) to core 0; the load
#     generator, the upstream and the idle-connection client to core 1.
#  4. Modes:
#     tls     TLS proxy, GET /small over HTTP/1.1 (wrk -t1 -c64).
#     policy  TLS + policy chain, GET /small with a session cookie:
#             portcullis: every path needs a login (the cookie is verified on
#               every request: HMAC, expiry, user lookup), a never-tripping
#               per-IP rate limit (4294967295/day), default security headers.
#             nginx: limit_req (per IP, burst, nodelay) + the same headers
#               (add_header ... always) + proxy_hide_header X-Powered-By.
#             HAProxy: a stick-table per-IP request-rate limit + the same
#               headers (http-response set-header) + del-header Server.
#             Caddy: the same headers (header directive, -Server); Debian's
#               Caddy has no rate limiter (that is a plugin), so none.
#             Nobody but portcullis verifies the cookie: nginx, HAProxy and
#             Caddy cannot check an HMAC session without scripting. The cookie
#             header is sent to all four.
#             In the tls mode portcullis has its default security headers
#             switched off ("") and no rate limit, so tls -> policy is the
#             whole cost of the chain.
#     16k     as tls, GET /16k (16 KiB bodies).
#     h2      as tls over HTTP/2: h2load -t1 -c16 -m8 (128 streams in flight).
#     Rounds are interleaved: for each round, for each mode, nginx HAProxy
#     Caddy portcullis one after the other (A B C D A B C D ...), so machine
#     drift hits all alike. Each instance gets a short warm-up first.
#  5. Per server and mode: median over rounds of req/s, p50 and p99 latency
#     (wrk --latency; h2load --log-file), CPU per request (utime+stime of the
#     proxy process from /proc/PID/stat over the run / requests done), and
#     peak RSS (VmHWM of that instance after all rounds); each as a ratio to
#     nginx. Also the share of its core the proxy got ("busy"): far below 100 %
#     means it was not the bottleneck (or another process took its core).
#  6. Idle connections: a fresh nginx and a fresh portcullis (tls configs);
#     idle_conns.py (python asyncio + ssl) opens 10 000 TLS keep-alive
#     connections to each, one request on each, holds them; RSS and VmHWM are
#     read while they are held. Each held connection repeats its request every
#     5 s (KEEPALIVE_EVERY), so neither server's idle timeout (portcullis 10 s,
#     nginx 75 s) closes connections while the rest are still being opened.
#     ulimit -n is raised to the hard limit.
#  7. A profile of portcullis in the policy mode: perf record -g (cpu-clock)
#     on the process during a wrk run; the top symbols by self time go into
#     RESULTS.md. Without a working perf: valgrind --tool=callgrind.
#  8. The Redis-store target: benches/load/ratelimit_store.sh (short rounds)
#     when redis-server is installed.
#  9. The identity-store target (issue 17): with BASELINE_BIN (a portcullis
#     binary from before the store, e.g. built from e071593),
#     benches/load/store.sh BASELINE_BIN NEW: the policy chain with the
#     memory-only baseline, the SQLite store and the PostgreSQL store,
#     interleaved; its table goes into RESULTS.md.
#
# Environment: SECS (per measured run, default 10), ROUNDS (3), WARMUP (2),
# CONNS (wrk connections, 64), IDLE (idle connections, 10000; 0 skips),
# PROFILE (1; 0 skips), REDIS (1; 0 skips), RESULTS (output file),
# BUILD (1; 0 uses target/release/portcullis as it is), NICE (-10: the
# session's autogroup priority when root; 0 leaves it alone), KEEP (1 keeps
# the temp dir with every config, log and raw output).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
# shellcheck source=benches/load/portcullis_config.sh
. "$root/benches/load/portcullis_config.sh"
secs=${SECS:-10}; rounds=${ROUNDS:-3}; warmup=${WARMUP:-2}; conns=${CONNS:-64}
idle=${IDLE:-10000}; profile=${PROFILE:-1}; redis=${REDIS:-1}
results=${RESULTS:-$root/benches/RESULTS.md}
started=$(date +%s)

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- 1. tools -------------------------------------------------------------
declare -A pkg_of=([nginx]=nginx [haproxy]=haproxy [caddy]=caddy [wrk]=wrk [h2load]=nghttp2-client)
missing=()
for t in "${!pkg_of[@]}"; do command -v "$t" >/dev/null || missing+=("${pkg_of[$t]}"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}"
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "missing: ${missing[*]} (apt-get install -y ${missing[*]})" >&2; exit 1
  fi
fi
# perf is optional (the profile falls back to valgrind, or is skipped).
if ! command -v perf >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q linux-perf >/dev/null 2>&1 || true
fi
for t in nginx haproxy caddy wrk h2load python3 openssl curl taskset; do
  command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }
done
# Debian starts the packaged daemons on install where systemd runs; ours are
# separate processes on their own ports, so that does not matter here.

if [ "${BUILD:-1}" = 1 ]; then
  log "building portcullis (release)"
  cargo build --release -q -p portcullis
fi
bin=$root/target/release/portcullis
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)

if [ "$(nproc)" -ge 2 ]; then
  pin_proxy=(taskset -c 0); pin_load=(taskset -c 1); pinning="proxies on core 0; load generator, upstream and idle client on core 1"
else
  pin_proxy=(); pin_load=(); pinning="one core: no pinning"
fi
# On a shared machine the benchmarked processes otherwise get whatever share
# of a core the scheduler leaves them, and the comparison measures the other
# load. Linux schedules sessions (autogroups) fairly against each other, so
# per-process nice does nothing against other sessions: as root the script
# raises its own session's autogroup priority to NICE (default -10: about
# nine times another session's weight, not a full starvation of the rest)
# and restores it at exit. NICE=0 leaves it alone.
nice_level=${NICE:--10}
old_autogroup=""
if [ "$nice_level" != 0 ] && [ "$(id -u)" = 0 ] && [ -w /proc/self/autogroup ]; then
  old_autogroup=$(awk '{print $3}' /proc/self/autogroup)
  echo "$nice_level" >/proc/self/autogroup
  pinning="$pinning; the bench's session (autogroup) at nice $nice_level"
fi

work=$(mktemp -d /tmp/portcullis-compare.XXXXXX)
# Every background process writes its pid file here; cleanup kills them all.
cleanup() {
  set +e
  [ -n "$old_autogroup" ] && echo "$old_autogroup" >/proc/self/autogroup
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
echo "$(loadavg)" >"$work/loadavg"

# --- certificate, upstream ------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/combined.pem"

mkdir -p "$work/www"
printf 'hello, world\n' >"$work/www/small"
head -c 16384 /dev/zero | tr '\0' 'x' >"$work/www/16k"

# nginx needs a prefix with its temp dirs; each instance gets its own.
nginx_prefix() { mkdir -p "$work/$1"/{logs,tmp}; echo "$work/$1"; }

up=$(port)
p=$(nginx_prefix upstream)
cat >"$p/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
error_log $p/logs/error.log warn; pid $p/nginx.pid;
worker_rlimit_nofile $nofile;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nodelay on;
  keepalive_requests 100000000; keepalive_timeout 600s;
  open_file_cache max=16 inactive=600s; open_file_cache_valid 600s;
  client_body_temp_path $p/tmp; proxy_temp_path $p/tmp; fastcgi_temp_path $p/tmp;
  uwsgi_temp_path $p/tmp; scgi_temp_path $p/tmp;
  types { } default_type text/plain;
  server { listen 127.0.0.1:$up backlog=4096; root $work/www; }
}
EOF
"${pin_load[@]}" nginx -p "$p" -e "$p/logs/error.log" -c "$p/nginx.conf" >/dev/null 2>&1 &
echo $! >"$work/upstream.pid"
wait_port "$up" || { cat "$p/logs/error.log" >&2; exit 1; }
curl -sf "http://127.0.0.1:$up/16k" | wc -c | grep -qx 16384 || { echo "upstream does not serve /16k" >&2; exit 1; }

# --- proxies --------------------------------------------------------------
hsts="max-age=31536000; includeSubDomains"
csp="default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
frame="DENY"; ctype="nosniff"; referrer="strict-origin-when-cross-origin"
perms="camera=(), microphone=(), geolocation=()"; coop="same-origin"

declare -A port_of
servers=(nginx haproxy caddy portcullis)
modes=(tls policy 16k h2)
config_of() { [ "$1" = policy ] && echo policy || echo plain; } # mode -> config kind

start_nginx() { # instance name, config kind [worker_connections]
  # nginx allocates and touches its whole connection table at start, so
  # worker_connections stays at 4096 (enough for the load runs) except in the
  # idle-connection test.
  local name=$1 kind=$2 wc=${3:-4096} p pt; p=$(nginx_prefix "$name"); pt=$(port)
  nginx_proxy_config "$p" "$kind" "$pt" "$up" "$work" "$wc"
  "${pin_proxy[@]}" nginx -p "$p" -e "$p/logs/error.log" -c "$p/nginx.conf" >/dev/null 2>&1 &
  echo $! >"$work/$name.pid"
  wait_port "$pt" || { cat "$p/logs/error.log" >&2; exit 1; }
  port_of[$name]=$pt
}

start_haproxy() {
  local name=$1 kind=$2 pt policy=""; pt=$(port)
  if [ "$kind" = policy ]; then
    policy="stick-table type ip size 100k expire 60s store http_req_rate(10s)
  http-request track-sc0 src
  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 100000000 }
  http-response set-header Strict-Transport-Security \"$hsts\"
  http-response set-header Content-Security-Policy \"$csp\"
  http-response set-header X-Frame-Options $frame
  http-response set-header X-Content-Type-Options $ctype
  http-response set-header Referrer-Policy $referrer
  http-response set-header Permissions-Policy \"$perms\"
  http-response set-header Cross-Origin-Opener-Policy $coop
  http-response del-header Server
  http-response del-header X-Powered-By"
  fi
  cat >"$work/$name.cfg" <<EOF
global
  nbthread 1
  maxconn $((nofile / 2 - 100))
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 600s
  timeout server 60s
  timeout http-keep-alive 600s
frontend fe
  bind 127.0.0.1:$pt ssl crt $work/combined.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3
  option forwardfor
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Request-Id %[uuid]
  $policy
  default_backend be
backend be
  server up 127.0.0.1:$up pool-max-conn 128
EOF
  "${pin_proxy[@]}" haproxy -db -f "$work/$name.cfg" >/dev/null 2>"$work/$name.err" &
  echo $! >"$work/$name.pid"
  wait_port "$pt" || { cat "$work/$name.err" >&2; exit 1; }
  port_of[$name]=$pt
}

start_caddy() {
  local name=$1 kind=$2 pt policy=""; pt=$(port)
  if [ "$kind" = policy ]; then
    policy="header {
    Strict-Transport-Security \"$hsts\"
    Content-Security-Policy \"$csp\"
    X-Frame-Options $frame
    X-Content-Type-Options $ctype
    Referrer-Policy $referrer
    Permissions-Policy \"$perms\"
    Cross-Origin-Opener-Policy $coop
    -Server
    -X-Powered-By
  }"
  fi
  mkdir -p "$work/$name.home"
  cat >"$work/$name.Caddyfile" <<EOF
{
  admin off
  auto_https off
  default_sni localhost
  servers {
    protocols h1 h2
  }
}
https://:$pt {
  bind 127.0.0.1
  tls $work/cert.pem $work/key.pem {
    protocols tls1.3
  }
  log {
    output stdout
  }
  $policy
  reverse_proxy 127.0.0.1:$up {
    header_up X-Real-IP {remote_host}
    header_up X-Request-Id {http.request.uuid}
    transport http {
      keepalive 600s
      keepalive_idle_conns 128
      keepalive_idle_conns_per_host 128
    }
  }
}
EOF
  HOME="$work/$name.home" XDG_DATA_HOME="$work/$name.home" XDG_CONFIG_HOME="$work/$name.home" GOMAXPROCS=1 \
    "${pin_proxy[@]}" caddy run --adapter caddyfile --config "$work/$name.Caddyfile" >/dev/null 2>"$work/$name.err" &
  echo $! >"$work/$name.pid"
  wait_port "$pt" || { cat "$work/$name.err" >&2; exit 1; }
  port_of[$name]=$pt
}

session_keys="bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz"
bench_pw="bench-password-0123"
# Every policy instance's config is in $work, so all share $work/identity.db.
portcullis_config policy 1 "$up" "$work/account.state" >"$work/account.toml"
printf '%s\n' "$bench_pw" | "$bin" user add bench -c "$work/account.toml" >/dev/null

start_portcullis() {
  local name=$1 kind=$2 pt; pt=$(port)
  portcullis_config "$kind" "$pt" "$up" "$work/$name.state" >"$work/$name.toml"
  # The access log (one JSON line per request, mandatory) goes to /dev/null,
  # as nginx's does; a terminal or a pipe nobody reads would slow it down.
  PORTCULLIS_SESSION_KEYS=$session_keys "${pin_proxy[@]}" "$bin" run -c "$work/$name.toml" \
    >/dev/null 2>"$work/$name.err" &
  echo $! >"$work/$name.pid"
  wait_port "$pt" || { cat "$work/$name.err" >&2; exit 1; }
  port_of[$name]=$pt
}

log "starting the proxies (one instance per server and mode)"
for m in "${modes[@]}"; do
  for s in "${servers[@]}"; do "start_$s" "$s-$m" "$(config_of "$m")"; log "  $s-$m on ${port_of[$s-$m]}"; done
done

# --- the session cookie -----------------------------------------------------
base="https://127.0.0.1:${port_of[portcullis-policy]}"
curl -sk -D "$work/form.h" -o "$work/form.html" "$base/.portcullis/login?next=/"
binding=$(sed -n 's/^set-cookie: __Host-portcullis-csrf=\([^;]*\).*/\1/Ip' "$work/form.h" | tr -d '\r')
token=$(grep -o 'name="csrf" value="[^"]*"' "$work/form.html" | sed 's/.*value="//; s/"$//')
curl -sk -D "$work/login.h" -o /dev/null -H "Cookie: __Host-portcullis-csrf=$binding" \
  --data-urlencode "csrf=$token" --data-urlencode username=bench \
  --data-urlencode "password=$bench_pw" --data-urlencode next=/small "$base/.portcullis/login"
session=$(sed -n 's/^set-cookie: __Host-portcullis=\([^;]*\).*/\1/Ip' "$work/login.h" | tr -d '\r')
[ -n "$session" ] || { echo "login failed:" >&2; cat "$work/login.h" >&2; exit 1; }
cookie="Cookie: __Host-portcullis=$session"

# --- sanity: every instance answers, the policy is really applied -----------
status() { curl -sk -o /dev/null -w '%{http_code}' "$@"; }
[ "$(status -H 'Accept: application/json' "$base/small")" = 401 ] \
  || { echo "portcullis policy mode serves without a session" >&2; exit 1; }
for m in "${modes[@]}"; do
  for s in "${servers[@]}"; do
    u="https://127.0.0.1:${port_of[$s-$m]}"
    [ "$(status -H "$cookie" "$u/small")" = 200 ] || { echo "$s-$m does not answer 200" >&2; exit 1; }
    if [ "$m" = policy ]; then
      curl -sk -D - -o /dev/null -H "$cookie" "$u/small" | grep -qi '^strict-transport-security: max-age=31536000' \
        || { echo "$s-$m sends no HSTS" >&2; exit 1; }
    fi
  done
done
for s in "${servers[@]}"; do
  u="https://127.0.0.1:${port_of[$s-h2]}"
  [ "$(curl -sk --http2 -o /dev/null -w '%{http_version}' "$u/small")" = 2 ] \
    || { echo "$s does not speak h2" >&2; exit 1; }
  c=$(echo | openssl s_client -connect "127.0.0.1:${port_of[$s-tls]}" -servername localhost 2>/dev/null \
      | sed -n 's/^New, \(TLSv[^,]*\), Cipher is \(.*\)/\1 \2/p')
  echo "$s $c" >>"$work/ciphers"
done

# --- measurement ---------------------------------------------------------------
hz=$(getconf CLK_TCK)
to_ms() { # wrk latency "1.23ms" / "456.00us" / "1.02s" -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
# One run: prints "req/s p50_ms p99_ms requests errors"
drive() { # mode url seconds
  local mode=$1 url=$2 d=$3 out
  if [ "$mode" = h2 ]; then
    out=$("${pin_load[@]}" h2load -t1 -c16 -m8 -D "$d" -H "$cookie" --log-file="$work/h2.log" "$url" 2>&1) || true
    echo "$out" >"$work/last-run.txt"
    local rps done_ failed lat
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    done_=$(sed -n 's/^requests: .* \([0-9]*\) done, \([0-9]*\) succeeded.*/\2/p' <<<"$out")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2/p' <<<"$out" | awk '{print $1+$2}')
    # --log-file: one line per request, "start(us) status duration(us)".
    lat=$(awk '{print $3}' "$work/h2.log" | sort -n | awk '
      function at(q,  i) { i = int(NR * q + 0.5); if (i < 1) i = 1; return a[i] / 1000 }
      {a[NR] = $1} END {if (NR) printf "%.3f %.3f", at(0.5), at(0.99); else print "0 0"}')
    echo "${rps:-0} $lat ${done_:-0} ${failed:-0}"
  else
    out=$("${pin_load[@]}" wrk -t1 -c"$conns" -d"${d}s" --latency -H "$cookie" "$url" 2>&1) || true
    echo "$out" >"$work/last-run.txt"
    local rps p50 p99 n bad sock
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out"); p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    sock=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
    echo "${rps:-0} $(to_ms "${p50:-0}") $(to_ms "${p99:-0}") ${n:-0} $(( ${bad:-0} + ${sock:-0} ))"
  fi
}
path_of() { [ "$1" = 16k ] && echo /16k || echo /small; }

log "warm-up: ${warmup}s per instance"
for m in "${modes[@]}"; do
  for s in "${servers[@]}"; do
    drive "$m" "https://127.0.0.1:${port_of[$s-$m]}$(path_of "$m")" "$warmup" >/dev/null
  done
done

raw=$work/raw.tsv
printf 'round\tmode\tserver\trps\tp50_ms\tp99_ms\trequests\terrors\tcpu_s\tbusy\tloadavg\n' >"$raw"
total=$((rounds * ${#modes[@]} * ${#servers[@]})); i=0
for r in $(seq "$rounds"); do
  for m in "${modes[@]}"; do
    for s in "${servers[@]}"; do
      i=$((i + 1))
      pid=$(cat "$work/$s-$m.pid")
      t0=$(cpu_ticks "$pid"); w0=$(date +%s.%N)
      read -r rps p50 p99 n bad < <(drive "$m" "https://127.0.0.1:${port_of[$s-$m]}$(path_of "$m")" "$secs")
      t1=$(cpu_ticks "$pid"); w1=$(date +%s.%N)
      mkdir -p "$work/runs"; cp "$work/last-run.txt" "$work/runs/$r-$m-$s.txt"
      [ "${n:-0}" != 0 ] || { echo "no requests done:" >&2; cat "$work/last-run.txt" >&2; }
      cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')
      busy=$(awk -v c="$cpu" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.0f", 100 * c / (b - a)}')
      la=$(loadavg | cut -d' ' -f1)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$s" "$rps" "$p50" "$p99" "$n" "$bad" "$cpu" "$busy" "$la" >>"$raw"
      log "[$i/$total] round $r $m $s: $rps req/s, p50 ${p50}ms p99 ${p99}ms, ${n} requests, $bad errors, cpu ${cpu}s (${busy}% of a core), load $la"
    done
  done
done
for m in "${modes[@]}"; do
  for s in "${servers[@]}"; do
    printf '%s\t%s\t%s\n' "$m" "$s" "$(awk '/^VmHWM/ {print $2}' "/proc/$(cat "$work/$s-$m.pid")/status")" >>"$work/rss.tsv"
  done
done
echo "$(loadavg)" >>"$work/loadavg"

# --- 6. idle connections ------------------------------------------------------
rss_kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
if [ "$idle" -gt 0 ]; then
  for s in nginx portcullis; do
    "start_$s" "$s-idle" plain $((idle + 1000))
    pid=$(cat "$work/$s-idle.pid"); pt=${port_of[$s-idle]}
    curl -sk -o /dev/null "https://127.0.0.1:$pt/small"
    before=$(rss_kb "$pid" VmRSS)
    log "idle: $idle TLS connections to $s"
    rm -f "$work/ready" "$work/done"
    "${pin_load[@]}" python3 "$root/benches/load/idle_conns.py" 127.0.0.1 "$pt" /small "$idle" \
      "$work/ready" "$work/done" 300 >/dev/null 2>"$work/idle-$s.err" &
    echo $! >"$work/idle-client.pid"
    for _ in $(seq 1800); do [ -f "$work/ready" ] && break; sleep 0.1; done
    sleep 2
    held=$(cat "$work/ready" 2>/dev/null || echo 0)
    estab=$(ss -Htn state established "( sport = :$pt )" | wc -l)
    rss=$(rss_kb "$pid" VmRSS); hwm=$(rss_kb "$pid" VmHWM)
    touch "$work/done"; wait "$(cat "$work/idle-client.pid")" || true; rm -f "$work/idle-client.pid"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$held" "$estab" "$before" "$rss" "$hwm" >>"$work/idle.tsv"
    log "idle $s: $held held ($estab established at the server), RSS ${before} -> ${rss} KiB, VmHWM $hwm KiB"
    kill "$pid"; rm -f "$work/$s-idle.pid"
  done
fi

# --- 7. profile -----------------------------------------------------------------
if [ "$profile" = 1 ]; then
  pid=$(cat "$work/portcullis-policy.pid"); url="https://127.0.0.1:${port_of[portcullis-policy]}/small"
  if perf record -e cpu-clock -o "$work/probe.data" -- true >/dev/null 2>&1; then
    log "profile: perf record -g on portcullis (policy) for ${secs}s"
    "${pin_load[@]}" wrk -t1 -c"$conns" -d"$((secs + 2))s" -H "$cookie" "$url" >/dev/null 2>&1 &
    echo $! >"$work/wrk-profile.pid"
    sleep 1
    perf record -e cpu-clock -F 1999 -g -p "$pid" -o "$work/perf.data" -- sleep "$secs" >/dev/null 2>&1 || true
    wait "$(cat "$work/wrk-profile.pid")" || true; rm -f "$work/wrk-profile.pid"
    perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null >"$work/perf-dso.txt" || true
    perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
      >"$work/perf-sym.txt" || true
    grep -E '^ +[0-9]' "$work/perf-sym.txt" | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//; s/  +/  /g' \
      >"$work/profile-all.txt" || true
    {
      echo "tool: perf record -e cpu-clock -F 1999 -g -p PID (${secs}s, wrk -c$conns, policy mode)"
      echo "## by shared object"
      grep -E '^ +[0-9]' "$work/perf-dso.txt" | sed -E 's/[[:space:]]+$//' | sed -n 1,8p
      echo "## by symbol (self)"
      sed -n 1,40p "$work/profile-all.txt"
    } >"$work/profile.txt"
  elif command -v valgrind >/dev/null; then
    log "profile: perf unavailable; valgrind --tool=callgrind on a short run"
    cp "$work/portcullis-policy.toml" "$work/cg.toml"
    cgp=$(port); sed -i "s/^https = .*/https = \"127.0.0.1:$cgp\"/" "$work/cg.toml"
    PORTCULLIS_SESSION_KEYS=$session_keys valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
      "$bin" run -c "$work/cg.toml" >/dev/null 2>"$work/cg.err" &
    echo $! >"$work/cg.pid"
    wait_port "$cgp" || true; sleep 5
    wrk -t1 -c8 -d10s -H "$cookie" "https://127.0.0.1:$cgp/small" >/dev/null 2>&1 || true
    kill "$(cat "$work/cg.pid")"; wait "$(cat "$work/cg.pid")" 2>/dev/null || true; rm -f "$work/cg.pid"
    callgrind_annotate "$work/cg.out" >"$work/cg.txt" 2>/dev/null || true
    { echo "tool: valgrind --tool=callgrind (instructions, not time)"; echo "## by symbol (self)";
      grep -E '^ *[0-9,]+ ' "$work/cg.txt" | sed -n 1,40p; } >"$work/profile.txt"
  fi
fi

# --- 8. the Redis store target ---------------------------------------------------
if [ "$redis" = 1 ] && command -v redis-server >/dev/null; then
  log "redis store: benches/load/ratelimit_store.sh 5 3"
  timeout 300 "$root/benches/load/ratelimit_store.sh" 5 3 >"$work/redis.out" 2>&1 || true
  tail -1 "$work/redis.out" | grep '^median' >"$work/redis.txt" || rm -f "$work/redis.txt"
fi

# --- 9. the identity store target ------------------------------------------------
if [ -n "${BASELINE_BIN:-}" ]; then
  log "identity store: benches/load/store.sh $BASELINE_BIN (memory) against this build (sqlite, postgres)"
  timeout 900 "$root/benches/load/store.sh" "$BASELINE_BIN" "$bin" >"$work/store.out" 2>&1 || true
  sed -n '/median req\/s/,$p' "$work/store.out" >"$work/store.txt"
  [ -s "$work/store.txt" ] || rm -f "$work/store.txt"
fi

# --- report ----------------------------------------------------------------------
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
versions="nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), HAProxy $(haproxy -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p'), Caddy $(caddy version | cut -d' ' -f1), wrk $(wrk -v 2>&1 | sed -n 's/^wrk \([^ ]*\).*/\1/p'), $(h2load --version | sed 's/.*nghttp2\//h2load /'), portcullis $commit$dirty"
python3 "$root/benches/load/report.py" --work "$work" --out "$results" \
  --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --commit "$commit$dirty" --machine "$machine" \
  --versions "$versions" --pinning "$pinning" --secs "$secs" --rounds "$rounds" --conns "$conns" \
  --idle "$idle" --nofile "$nofile" --elapsed "$(( $(date +%s) - started ))"
log "wrote $results ($(( $(date +%s) - started )) s)"
