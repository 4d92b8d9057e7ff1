#!/usr/bin/env bash
# Memory per idle TLS keep-alive connection, for one or more portcullis
# binaries side by side (issue 22: an A/B of a change on one machine;
# compare.sh step 6 measures the same against nginx).
#
#   benches/load/idle.sh OLD_BINARY NEW_BINARY ...
#
# For each binary in turn: a fresh instance (compare.sh's plain `tls` config,
# threads = 1, core 0), one request, then idle_conns.py opens IDLE (10000)
# TLS 1.3 connections (200 handshakes at a time, one request on each) and
# holds them; VmRSS is read before and while they are held. Prints
# connections held, RSS before/held (KiB) and KiB per connection. Needs
# nginx (the upstream), openssl, curl, taskset, python3; ports 18080, 18460.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,13p "$0" >&2; exit 2; }
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
idle=${IDLE:-10000}
bins=(); for b in "$@"; do bins+=("$(realpath "$b")"); done
ulimit -n "$(ulimit -Hn)"
bench_workdir idle-bench
bench_certificate_and_upstream "$w"
portcullis_config plain 18460 18080 "$w/state" > p.toml
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
echo -e "binary\theld\trss_before_kib\trss_held_kib\tkib_per_connection"
for b in "${bins[@]}"; do
  taskset -c 0 "$b" run -c p.toml >/dev/null 2>p.err & echo $! > gw.pid
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18460) 2>/dev/null && break; sleep 0.1; done
  curl -sk -o /dev/null https://127.0.0.1:18460/small
  before=$(rss "$(cat gw.pid)")
  rm -f ready done
  taskset -c 1 python3 "$root/benches/load/idle_conns.py" 127.0.0.1 18460 /small "$idle" ready done 300 \
    >/dev/null 2>idle.err & echo $! > client.pid
  for _ in $(seq 1800); do [ -f ready ] && break; sleep 0.1; done
  sleep 2
  held=$(cat ready 2>/dev/null || echo 0); now=$(rss "$(cat gw.pid)")
  touch done; wait "$(cat client.pid)" || true; rm -f client.pid
  kill "$(cat gw.pid)"; wait "$(cat gw.pid)" 2>/dev/null || true; rm -f gw.pid
  echo -e "$b\t$held\t$before\t$now\t$(awk -v a="$before" -v b="$now" -v n="$held" 'BEGIN {printf "%.1f", n ? (b - a) / n : 0}')"
done
