#!/usr/bin/env bash
# Load bench: gateway throughput with the in-process rate-limit store against
# the Redis store, side by side in one interleaved run (machines are noisy;
# compare the ratio, not absolute numbers across runs).
#
# Every request counts against `[rate_limit] default` for one client IP (a hot
# key: the worst case for Redis, one script call on one key per request) and
# is answered by the gateway itself (`/.portcullis/health`), so no upstream
# shares the cores. Plain HTTP on loopback: TLS would cost both the same.
#
# Needs: wrk, redis-server (apt-get install -y wrk redis-server).
# Usage: benches/load/ratelimit_store.sh [seconds per round] [rounds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}; rounds=${2:-3}; conns=${3:-32}
command -v wrk >/dev/null && command -v redis-server >/dev/null \
  || { echo "needs wrk and redis-server (apt-get install -y wrk redis-server)" >&2; exit 1; }
cargo build --release -q -p portcullis
bin=target/release/portcullis
work=$(mktemp -d)
# Every background process writes its pid here: start_gateway runs in a
# command substitution (a subshell), so a shell array would not see them.
cleanup() {
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

rport=$(port)
redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no >/dev/null &
echo $! >"$work/redis-server.pid" # not redis.pid: that is the "redis" gateway's
wait_port "$rport"

start_gateway() { # name, extra [rate_limit] lines
  local p; p=$(port)
  cat >"$work/$1.toml" <<TOML
[server]
http = "127.0.0.1:$p"
threads = 1
[tls]
mode = "off"
[upstreams.app]
addrs = ["127.0.0.1:9"]
[access]
default = "public"
[rate_limit]
default = "10000000/minute"
$2
TOML
  "$bin" run -c "$work/$1.toml" >/dev/null 2>"$work/$1.err" &
  echo $! >"$work/$1.pid"
  wait_port "$p" || { cat "$work/$1.err" >&2; exit 1; }
  echo "$p"
}
mem=$(start_gateway memory 'store = "memory"')
red=$(start_gateway redis "store = \"redis\"
redis = \"redis://127.0.0.1:$rport/0\"
on_store_error = \"deny\"")

# Both answer, and the Redis one really uses Redis.
curl -sf "http://127.0.0.1:$red/.portcullis/health" >/dev/null
redis-cli -p "$rport" info commandstats | grep -q '^cmdstat_evalsha:' \
  || { echo "the redis gateway ran no script" >&2; exit 1; }

run() { # port -> "req/s p50 p99"
  wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$1/.portcullis/health" |
    awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$4} END {print r, p50, p99, (bad?bad:0)}'
}
declare -a m r
for i in $(seq "$rounds"); do
  m+=("$(run "$mem")"); r+=("$(run "$red")")
  echo "round $i: memory ${m[-1]} | redis ${r[-1]}   (req/s p50 p99 non-2xx)"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mm=$(printf '%s\n' "${m[@]}" | awk '{print $1}' | median)
rm_=$(printf '%s\n' "${r[@]}" | awk '{print $1}' | median)
echo "median req/s: memory $mm, redis $rm_, redis/memory $(awk -v a="$rm_" -v b="$mm" 'BEGIN {printf "%.2f", a/b}')"
