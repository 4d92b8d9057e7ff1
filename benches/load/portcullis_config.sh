# Sourced by the load benches: the portcullis (and nginx) configs they run.
#
#   portcullis_config KIND HTTPS_PORT UPSTREAM_PORT STORAGE_DIR > file.toml
#
# KIND `policy`: every path needs a login (a session cookie verified on every
# request), a never-tripping per-IP limit, the default security headers.
# Anything else (`plain`): public, no limit, no security headers (as nginx's
# plain config sends none). The certificate is cert.pem/key.pem beside the
# config file; `policy` needs PORTCULLIS_SESSION_KEYS and an account (its
# identity store is identity.db beside the config: `portcullis user add
# NAME -c FILE`).
portcullis_config() {
  local kind=$1 https=$2 up=$3 storage=$4 extra
  if [ "$kind" = policy ]; then
    extra='[secrets]
session_keys = "env:PORTCULLIS_SESSION_KEYS"
[store]
url = "sqlite:identity.db"
[access]
default = "login"
[rate_limit]
default = "4294967295/day"
[[route]]
path = "/"
access = "login"'
  else
    extra='[access]
default = "public"
[rate_limit]
default = "off"
[headers]
hsts = ""
csp = ""
frame_options = ""
content_type_options = ""
referrer_policy = ""
permissions_policy = ""
coop = ""
remove = []'
  fi
  cat <<EOC
[server]
https = "127.0.0.1:$https"
threads = 1
[tls]
mode = "files"
domains = ["localhost"]
storage = "$storage"
cert = "cert.pem"
key = "key.pem"
[upstreams.app]
addrs = ["127.0.0.1:$up"]
$extra
EOC
}

# Whether BIN has the identity store (issue 17): binaries from before it
# refuse a [store] table and keep accounts in users.toml beside the config.
has_store() { "$1" user import --help >/dev/null 2>&1; }

#   portcullis_config_for BIN KIND HTTPS_PORT UPSTREAM_PORT STORAGE_DIR
# as portcullis_config, without [store] for a binary from before it.
portcullis_config_for() {
  local bin=$1; shift
  if has_store "$bin"; then portcullis_config "$@"; else portcullis_config "$@" | sed '/^\[store\]$/{N;d}'; fi
}

# bench_workdir NAME: a fresh directory /tmp/NAME.XXXX as $w, made the
# current one; on exit every process with a pid file there (*.pid, nginx's
# up.pidfile) is killed and the directory removed.
bench_workdir() {
  w=$(mktemp -d "/tmp/$1.XXXX"); chmod 755 "$w"; cd "$w"
  trap 'kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null || true; sleep 0.3; rm -rf "$w"' EXIT
}

#   bench_certificate_and_upstream DIR
# For the load benches: cert.pem/key.pem (ECDSA P-256, localhost) in DIR,
# and one nginx on core 1 serving DIR/up/small (13 B) and DIR/up/16k (16 KiB
# of random bytes) on 127.0.0.1:18080 (its pid in DIR/up.pidfile).
bench_certificate_and_upstream() {
  local w=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$w/key.pem" -out "$w/cert.pem" \
    -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
  mkdir -p "$w/up/logs" "$w/up/tmp"; printf 'hello, world\n' > "$w/up/small"
  head -c 16384 /dev/urandom > "$w/up/16k"
  cat > "$w/up/nginx.conf" <<N
daemon off; master_process off; worker_processes 1; error_log $w/up/logs/e.log; pid $w/up/pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 600s;
 client_body_temp_path $w/up/tmp; proxy_temp_path $w/up/tmp; fastcgi_temp_path $w/up/tmp; uwsgi_temp_path $w/up/tmp; scgi_temp_path $w/up/tmp;
 server { listen 127.0.0.1:18080; root $w/up; } }
N
  taskset -c 1 nginx -p "$w/up" -c "$w/up/nginx.conf" >/dev/null 2>&1 & echo $! > "$w/up.pidfile"
}

#   nginx_proxy_config PREFIX KIND PORT UPSTREAM_PORT CERT_DIR [WORKER_CONNECTIONS]
# compare.sh's nginx proxy, written to PREFIX/nginx.conf (PREFIX/logs and
# PREFIX/tmp created): one worker, TLS 1.3 (and h2 by ALPN) on 127.0.0.1:PORT
# with CERT_DIR/cert.pem, keep-alive to 127.0.0.1:UPSTREAM_PORT, the
# forwarding headers portcullis sets, one access-log line a request to
# /dev/null. KIND `policy` adds a never-tripping per-IP limit_req and
# portcullis's default security headers. Run it with
# `nginx -p PREFIX -c PREFIX/nginx.conf` (allocs.sh, compare.sh,
# instructions.sh).
nginx_proxy_config() {
  local p=$1 kind=$2 pt=$3 up=$4 certs=$5 wc=${6:-4096} zone="" policy=""
  mkdir -p "$p/logs" "$p/tmp"
  if [ "$kind" = policy ]; then
    zone="limit_req_zone \$binary_remote_addr zone=per_ip:10m rate=100000r/s;"
    policy="limit_req zone=per_ip burst=100000 nodelay;
      add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\" always;
      add_header Content-Security-Policy \"default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'\" always;
      add_header X-Frame-Options DENY always;
      add_header X-Content-Type-Options nosniff always;
      add_header Referrer-Policy strict-origin-when-cross-origin always;
      add_header Permissions-Policy \"camera=(), microphone=(), geolocation=()\" always;
      add_header Cross-Origin-Opener-Policy same-origin always;
      proxy_hide_header X-Powered-By;"
  fi
  cat >"$p/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
error_log $p/logs/error.log warn; pid $p/nginx.pid;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections $wc; }
http {
  access_log /dev/null combined;
  server_tokens off;
  keepalive_requests 100000000; keepalive_timeout 600s;
  client_body_temp_path $p/tmp; proxy_temp_path $p/tmp; fastcgi_temp_path $p/tmp;
  uwsgi_temp_path $p/tmp; scgi_temp_path $p/tmp;
  upstream up { server 127.0.0.1:$up; keepalive 128; keepalive_requests 100000000; keepalive_timeout 600s; }
  $zone
  server {
    listen 127.0.0.1:$pt ssl http2 backlog=4096;
    ssl_certificate $certs/cert.pem; ssl_certificate_key $certs/key.pem;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Request-Id \$request_id;
      $policy
    }
  }
}
EOF
}

#   cpu_ticks PID
# The process's CPU time so far, user + system, in clock ticks
# (getconf CLK_TCK a second; /proc/PID/stat fields 14 and 15, counted after
# the command name, which may hold spaces). The load benches turn two
# readings into CPU µs per request.
cpu_ticks() { awk '{print $14 + $15}' <(sed 's/^.*) //; s/^/x x /' "/proc/$1/stat"); }

#   cpu_us_per_request T0 T1 REQUESTS
# Two cpu_ticks readings and the requests served between them: CPU µs per
# request, two decimals.
cpu_us_per_request() {
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)*1e6/hz/n}'
}

#   wrk_result FILE
# What `wrk --latency` wrote to FILE, as "requests req/s p99" (p99 empty
# without --latency); fails, printing FILE, if any answer was not a 2xx or
# any socket error was counted: a bench never reports a broken run.
wrk_result() {
  if grep -qE 'Non-2xx|Socket errors' "$1"; then echo "$1: errors" >&2; cat "$1" >&2; return 1; fi
  awk '/requests in/ {n=$1} /^Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {print n, r, p}' "$1"
}

#   bench_login BASE_URL USER PASSWORD
# Signs in through the login form (CSRF binding cookie and token) and prints
# "Cookie: __Host-portcullis=…" for wrk -H; works in the current directory.
bench_login() {
  local u=$1 user=$2 pw=$3 binding token session
  curl -sk -D form.h -o form.html "$u/.portcullis/login?next=/"
  binding=$(sed -n 's/^set-cookie: __Host-portcullis-csrf=\([^;]*\).*/\1/Ip' form.h | tr -d '\r')
  token=$(grep -o 'name="csrf" value="[^"]*"' form.html | sed 's/.*value="//; s/"$//')
  curl -sk -D login.h -o /dev/null -H "Cookie: __Host-portcullis-csrf=$binding" --data-urlencode "csrf=$token" \
    --data-urlencode "username=$user" --data-urlencode "password=$pw" --data-urlencode next=/small "$u/.portcullis/login"
  session=$(sed -n 's/^set-cookie: __Host-portcullis=\([^;]*\).*/\1/Ip' login.h | tr -d '\r')
  [ -n "$session" ] || { echo "no session" >&2; cat login.h >&2; return 1; }
  echo "Cookie: __Host-portcullis=$session"
}

#   start_tls_and_policy BIN
# For allocs.sh and hooks.sh, in the current directory: compare.sh's `tls`
# config on 127.0.0.1:18451 and `policy` on 18452 (upstream 18080, an
# account "bench" / $BENCH_PASSWORD), each started on core 0 with its pid in
# tls.pid / policy.pid and its stderr in tls.err / policy.err.
BENCH_PASSWORD=benchpass-123456
start_tls_and_policy() {
  local bin=$1 m
  portcullis_config plain 18451 18080 "$PWD/tls.state" > tls.toml
  portcullis_config policy 18452 18080 "$PWD/policy.state" > policy.toml
  printf '%s\n' "$BENCH_PASSWORD" | "$bin" user add bench -c policy.toml >/dev/null
  for m in tls policy; do
    PORTCULLIS_SESSION_KEYS=bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz \
      taskset -c 0 "$bin" run -c "$m.toml" >/dev/null 2>"$m.err" & echo $! > "$m.pid"
  done
}
