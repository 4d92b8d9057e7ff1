#!/usr/bin/env bash
# portcullis and nginx loaded at the same time, on the same core: a
# throughput ratio that a busy host cannot skew (issue 22).
#
#   benches/load/paired.sh [BINARY]   (default: target/release/portcullis)
#
# compare.sh measures one server after another, 10 s each; on a shared VM
# the host's other tenants change how fast a core is from one 10 s to the
# next (the same nginx moved between 22 000 and 35 700 req/s in one run), so
# a ratio of two such runs can be off by 40 % either way. Here portcullis and
# nginx (compare.sh's configs, `tls` and `policy`) both run on core 0 at
# once, each driven by its own wrk -t1 -c64 on core 1 for SECS (10)
# seconds, ROUNDS (5) rounds a pair. The scheduler interleaves the two every
# few milliseconds, so whatever slows the core slows both alike. For each
# server the script reads the CPU time it used (utime + stime from
# /proc/PID/stat) and the requests it answered: CPU µs per request. Both
# are CPU-bound, so each one's req/s on a core of its own would be 1 / its
# CPU per request, and the ratio nginx-µs / portcullis-µs is portcullis's
# req/s relative to nginx's, as compare.sh's tables give it, measured side
# by side at every instant. A third pair, portcullis's `tls` and `policy`
# together, gives the chain's cost as compare.sh defines it (1 − policy
# req/s over tls req/s, here 1 − tls CPU per request over policy's); a
# fourth, portcullis and nginx in `tls` serving GET /16k (compare.sh's
# 16 KiB mode); a fifth, the same over HTTP/2 (compare.sh's `h2`: h2load
# -t1 -c16 -m8 instead of wrk). With FLOOR set to the `floor` example
# (`cargo build --release --example floor`, as floor.sh builds it), two more
# pairs put its `lean` mode (pingora-core's HTTP/1 sessions and connector,
# the request forwarded unchanged: no headers added, no access log) beside
# nginx, small and 16 KiB bodies: how near nginx this stack gets with no
# gateway in it, by the same method. Prints every round and the medians.
# The `policy` requests to nginx carry the same session cookie (nginx
# verifies none, as in compare.sh). Needs nginx, wrk, curl, openssl,
# taskset, python3, h2load (nghttp2-client); ports 18080, 18461-18465.
set -euo pipefail
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/portcullis}")
rounds=${ROUNDS:-5}; secs=${SECS:-10}
w=$(mktemp -d /tmp/paired.XXXX); chmod 755 "$w"; cd "$w"
trap 'kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null; sleep 0.5; rm -rf "$w"' EXIT
bench_certificate_and_upstream "$w"
declare -A port=([portcullis-tls]=18461 [portcullis-policy]=18462 [nginx-tls]=18463 [nginx-policy]=18464)
for m in tls policy; do
  kind=plain; [ "$m" = policy ] && kind=policy
  d="$w/p-$m"; mkdir -p "$d"; cp cert.pem key.pem "$d/"
  portcullis_config_for "$bin" "$kind" "${port[portcullis-$m]}" 18080 "$d/state" > "$d/p.toml"
  [ "$m" = policy ] && printf '%s\n' "$BENCH_PASSWORD" | "$bin" user add bench -c "$d/p.toml" >/dev/null
  PORTCULLIS_SESSION_KEYS=bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz \
    taskset -c 0 "$bin" run -c "$d/p.toml" >/dev/null 2>"$d/err" & echo $! > "portcullis-$m.pid"
  nginx_proxy_config "$w/n-$m" "$kind" "${port[nginx-$m]}" 18080 "$w"
  taskset -c 0 nginx -p "$w/n-$m" -c "$w/n-$m/nginx.conf" >/dev/null 2>&1 & echo $! > "nginx-$m.pid"
done
if [ -n "${FLOOR:-}" ]; then
  port[floor-tls]=18465
  taskset -c 0 "$(realpath "$FLOOR")" lean "127.0.0.1:${port[floor-tls]}" 127.0.0.1:18080 cert.pem key.pem >/dev/null 2>floor.err & echo $! > floor-tls.pid
fi
for p in "${port[@]}"; do
  for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$p/" && break; sleep 0.2; done
done
[ -z "${FLOOR:-}" ] || [ "$(curl -sk "https://127.0.0.1:${port[floor-tls]}/small")" = "hello, world" ] || { echo "the floor does not answer" >&2; exit 1; }
declare -A header=([tls]="X-Bench: 1" [16k]="X-Bench: 1" [h2]="X-Bench: 1")
header[policy]=$(bench_login "https://127.0.0.1:${port[portcullis-policy]}" bench "$BENCH_PASSWORD")
for s in portcullis nginx; do for m in tls policy; do
  got=$(curl -sk -H "${header[$m]}" "https://127.0.0.1:${port[$s-$m]}/small")
  [ "$got" = "hello, world" ] || { echo "$s $m answered: $got" >&2; exit 1; }
done; done
# modes 16k (GET /16k) and h2 (HTTP/2) load the tls instances
pidfile() { local k=$1; case ${k#*-} in 16k | h2) k=${k%%-*}-tls ;; esac; echo "$k.pid"; }
# pair SECS A B (each SERVER-MODE): both loaded together for SECS seconds;
# prints for each its req/s and CPU µs per request, tab-separated
pair() {
  local secs=$1 k pid out=""
  shift
  declare -A t0 t1 wrk
  for k in "$@"; do pid=$(cat "$(pidfile "$k")"); t0[$k]=$(cpu_ticks "$pid"); done
  for k in "$@"; do
    local m=${k#*-} s=${k%%-*}
    local to=$s-$m file=small
    [ "$m" = 16k ] && to=$s-tls file=16k
    if [ "$m" = h2 ]; then
      taskset -c 1 h2load -t1 -c16 -m8 -D "$secs" -H "${header[$m]}" "https://127.0.0.1:${port[$s-tls]}/$file" > "$k.wrk" 2>&1 &
    else
      taskset -c 1 wrk -t1 -c64 -d"${secs}s" -H "${header[$m]}" "https://127.0.0.1:${port[$to]}/$file" > "$k.wrk" &
    fi
    wrk[$k]=$!
  done
  for k in "$@"; do wait "${wrk[$k]}"; done
  for k in "$@"; do pid=$(cat "$(pidfile "$k")"); t1[$k]=$(cpu_ticks "$pid"); done
  for k in "$@"; do
    local n rps
    if [ "${k#*-}" = h2 ]; then
      n=$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1/p' "$k.wrk")
      rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$k.wrk")
      if ! grep -qE '^requests: .* [0-9]+ succeeded, 0 failed, 0 errored' "$k.wrk" || ! grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$k.wrk"; then
        echo "$k: errors" >&2; cat "$k.wrk" >&2; exit 1
      fi
    else
      read -r n rps _ < <(wrk_result "$k.wrk") && [ -n "$n" ] || exit 1
    fi
    out+="$rps\t$(cpu_us_per_request "${t0[$k]}" "${t1[$k]}" "$n")\t"
  done
  echo -e "${out%\\t}"
}
pairs=("portcullis-tls nginx-tls" "portcullis-policy nginx-policy" "portcullis-tls portcullis-policy" "portcullis-16k nginx-16k" "portcullis-h2 nginx-h2")
[ -z "${FLOOR:-}" ] || pairs+=("floor-tls nginx-tls" "floor-16k nginx-16k")
for p in "${pairs[@]}"; do read -r a b <<<"$p"; pair 2 "$a" "$b" >/dev/null; done   # warm-up
echo -e "round\tA\tB\tA_rps\tA_cpu_us\tB_rps\tB_cpu_us" | tee results.tsv
for r in $(seq "$rounds"); do
  for p in "${pairs[@]}"; do
    read -r a b <<<"$p"
    row=$(pair "$secs" "$a" "$b")   # an assignment, so that a failed round stops the script
    echo -e "$r\t$a\t$b\t$row" | tee -a results.tsv
  done
done
python3 - results.tsv <<'P'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def ratios(a, b):
    return [float(r["B_cpu_us"]) / float(r["A_cpu_us"]) for r in rows if r["A"] == a and r["B"] == b]
def cpu(k):
    return st.median([float(r["A_cpu_us"]) for r in rows if r["A"] == k] + [float(r["B_cpu_us"]) for r in rows if r["B"] == k])
for s, m in [("portcullis", m) for m in ("tls", "policy", "16k", "h2")] + [("floor", "tls"), ("floor", "16k")]:
    x = ratios(f"{s}-{m}", f"nginx-{m}")
    if x:
        print(f"{m:6} {s} / nginx (nginx CPU per request over {s}'s): median {st.median(x):.3f}; rounds "
              + " ".join(f"{v:.3f}" for v in x))
# As compare.sh reports it: the share of plain TLS throughput the chain costs.
x = [1 - 1 / v for v in ratios("portcullis-tls", "portcullis-policy")]
print(f"chain  portcullis, 1 - tls CPU per request / policy's: median {100 * st.median(x):.1f} %; rounds "
      + " ".join(f"{100 * v:+.1f}" for v in x))
print("CPU µs per request, medians: " + ", ".join(
    f"{k} {cpu(k):.1f}" for k in ("portcullis-tls", "portcullis-policy", "portcullis-16k", "portcullis-h2", "nginx-tls", "nginx-policy", "nginx-16k", "nginx-h2")))
P
