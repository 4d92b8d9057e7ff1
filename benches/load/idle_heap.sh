#!/usr/bin/env bash
# Where the memory of an idle TLS connection goes (issue 22): heaptrack's
# peak heap, by allocation site, divided by the connections held.
#
#   benches/load/idle_heap.sh [BINARY]
#
# BINARY must be built with the system allocator, which heaptrack hooks
# (mimalloc's allocations are invisible to it); the default builds one:
#   cargo build --release --features system-alloc --target-dir target/heap
# (its own target directory, so target/release keeps the mimalloc build;
# the first build compiles every dependency again, ~10 minutes on 2 cores).
# Then as idle.sh: a fresh instance (compare.sh's `tls` config, one thread,
# core 0), IDLE (2000) TLS 1.3 connections opened by idle_conns.py on core
# 1, one request on each, held; the peak is while they are held. Prints the
# RSS, then every allocation site (the allocating function and its caller,
# as heaptrack names them) holding at least 64 bytes per connection at the
# peak, largest first. The heap is not all of the RSS (allocator slack,
# stacks, code), and heaptrack slows allocation, not what is held. Needs
# heaptrack, nginx, openssl, curl, taskset, python3; ports 18080, 18460.
set -euo pipefail
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ $# -ge 1 ]; then
  bin=$(realpath "$1")
else
  (cd "$root" && cargo build -q --release --features system-alloc --target-dir target/heap)
  bin=$root/target/heap/release/portcullis
fi
idle=${IDLE:-2000}
ulimit -n "$(ulimit -Hn)"
bench_workdir idle-heap
bench_certificate_and_upstream "$w"
portcullis_config plain 18460 18080 "$w/state" > p.toml
taskset -c 0 heaptrack -o "$w/heap" "$bin" run -c p.toml >/dev/null 2>p.err &
for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/18460) 2>/dev/null && break; sleep 0.1; done
pid=$(pgrep -f "^$bin run -c p.toml" | head -1); echo "$pid" > gw.pid
curl -sk -o /dev/null https://127.0.0.1:18460/small
before=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
taskset -c 1 python3 "$root/benches/load/idle_conns.py" 127.0.0.1 18460 /small "$idle" ready done 300 \
  >/dev/null 2>idle.err & echo $! > client.pid
for _ in $(seq 1800); do [ -f ready ] && break; sleep 0.1; done
sleep 2
held=$(cat ready 2>/dev/null || echo 0)
[ "$held" -gt 0 ] || { echo "no connection held" >&2; cat idle.err p.err >&2; exit 1; }
now=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
touch done; wait "$(cat client.pid)" || true; rm -f client.pid
# heaptrack writes its file when the process exits.
kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; rm -f gw.pid
for _ in $(seq 100); do [ -s heap.zst ] && ! pgrep -f "heaptrack.*$w/heap" >/dev/null && break; sleep 0.2; done
echo "connections held: $held; VmRSS $before KiB before, $now KiB held: $(awk -v a="$before" -v b="$now" -v n="$held" 'BEGIN {printf "%.1f", (b - a) / n}') KiB each"
heaptrack_print -f heap.zst --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
  --print-histogram 0 --peak-limit 60 --sub-peak-limit 40 2>/dev/null > peaks.txt
python3 - peaks.txt "$held" <<'P'
import re, sys
held = int(sys.argv[2])
units = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}
def size(s):
    m = re.match(r"([0-9.]+)([KMG]?)B?$", s)
    return float(m.group(1)) * units[m.group(2)]
def name(line):
    n = re.sub(r"(::h[0-9a-f]{16}|\.llvm\.[0-9]+)$", "", line.strip())
    for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$C$", ","), ("$u7b$", "{"), ("$u7d$", "}"), ("..", "::")):
        n = n.replace(a, b)
    return re.sub(r"^_<", "<", n).replace("::_{", "::{")[:110]
lines = open(sys.argv[1]).read().splitlines()
rows, site = [], "?"
# heaptrack lists each allocating function ("<size> peak memory consumed
# over <n> calls from" and its name), then the call paths into it
# ("<size> consumed over <n> calls from:" and their frames, innermost
# first, each followed by an "in"/"at" line; unnamed frames are 0x...).
for i, line in enumerate(lines):
    if re.match(r"[0-9.]+[KMG]?B? peak memory consumed over", line):
        site = name(lines[i + 1])
        continue
    m = re.match(r"\s*([0-9.]+[KMG]?B?) consumed over (\d+) calls from:", line)
    if m:
        frames = [l for l in lines[i + 1:i + 13] if l.strip() and not l.strip().startswith(("in ", "at "))]
        caller = next((f for f in frames if not f.strip().startswith("0x")), "?")
        rows.append((size(m.group(1)), int(m.group(2)), site, name(caller)))
rows.sort(reverse=True)
print(f"{'bytes/conn':>10} {'calls':>7}  allocated in / called from")
for b, calls, where, caller in rows:
    if b / held >= 64:
        print(f"{b / held:10.0f} {calls:7d}  {where}\n{'':20}{caller}")
P
