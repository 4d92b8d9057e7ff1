#!/usr/bin/env bash
# Where a request's CPU goes, by the gateway's pingora hooks, inclusive of
# everything they call (issue 22): the flat profile in RESULTS.md counts
# only self time, so a hook that spends its time in pingora's header maps
# shows up there as "pingora", not as the hook that asked for it.
#
#   benches/load/hooks.sh [BINARY]     (default: target/release/portcullis)
#
# The `tls` and `policy` configs of allocs.sh / compare.sh, one instance
# each (core 0, threads = 1), nginx upstream and wrk -t1 -c16 on core 1.
# For each mode: SECS (4) of perf record -F 1999 --call-graph dwarf on the
# proxy, then every sample is put in the first bucket whose function is on
# its stack (hooks before pingora's own phases), and each bucket is printed
# as CPU µs per request (samples / 1999 / requests) with, for the hooks,
# how much of it is spent inside pingora's header API or the http crate's
# header maps. Sampling at 1999 Hz over ~60 000 requests: read differences
# under ~0.2 µs as noise. Needs root, perf (with dwarf unwinding), nginx,
# wrk, curl, openssl, taskset, python3; ports 18080, 18451-18452; about
# 300 MB in /tmp while it runs.
set -euo pipefail
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(realpath "${1:-$root/target/release/portcullis}")
secs=${SECS:-4}
w=$(mktemp -d /tmp/hooks-bench.XXXX); chmod 755 "$w"; cd "$w"
cleanup() { kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null || true; sleep 0.3; rm -rf "$w"; }
trap cleanup EXIT
bench_certificate_and_upstream "$w"
declare -A port=([tls]=18451 [policy]=18452)
start_tls_and_policy "$BIN"
sleep 2
declare -A header=([tls]="X-Bench: 1")
header[policy]=$(bench_login "https://127.0.0.1:${port[policy]}" bench "$BENCH_PASSWORD")
for m in tls policy; do
  url="https://127.0.0.1:${port[$m]}/small"
  s=$(curl -sk -o /dev/null -w '%{http_code}' -H "${header[$m]}" "$url")
  [ "$s" = 200 ] || { echo "$m answers $s" >&2; cat "$m.err" >&2; exit 1; }
  taskset -c 1 wrk -t1 -c16 -d2s -H "${header[$m]}" "$url" >/dev/null
  perf record -q -e cpu-clock -F 1999 --call-graph dwarf,16384 -o "$m.data" -p "$(cat "$m.pid")" -- \
    taskset -c 1 wrk -t1 -c16 -d"${secs}"s -H "${header[$m]}" "$url" > "$m.wrk"
  perf script -i "$m.data" 2>/dev/null > "$m.script"
  rm -f "$m.data"
done
python3 - "$w" <<'PY'
import re, sys
w = sys.argv[1]
HZ = 1999
# (bucket, pattern on a frame's symbol); the first bucket with a frame on
# the stack takes the sample. Hooks first: they run inside pingora's phases.
BUCKETS = [
    ("hook new_ctx (request id, context)", r"Gateway as pingora_proxy::proxy_trait::ProxyHttp>::new_ctx"),
    ("hook request_filter (the stage pipeline)", r"Gateway as pingora_proxy::proxy_trait::ProxyHttp>::request_filter"),
    ("hook upstream_peer", r"Gateway as pingora_proxy::proxy_trait::ProxyHttp>::upstream_peer"),
    ("hook upstream_request_filter (headers to the app)", r"Gateway as pingora_proxy::proxy_trait::ProxyHttp>::upstream_request_filter"),
    ("hook response_filter (security headers, cookies)", r"Gateway as pingora_proxy::proxy_trait::ProxyHttp>::response_filter"),
    ("hook logging (access log, metrics)", r"Gateway as pingora_proxy::proxy_trait::ProxyHttp>::logging"),
    ("pingora: read and parse the request", r"v1::server::HttpSession::read_request|simple_head::classify"),
    ("pingora: write the response (TLS, socket)", r"write_response_tasks|v1::server::HttpSession::(write|finish)"),
    ("pingora: the upstream's connection, request and response", r"proxy_to_upstream|process_upstream_tasks|v1::client::HttpSession|connectors::http::v1::Connector|lean::Lean::(to_upstream|exchange|relay)"),
    ("pingora: rest of the request", r"HttpProxy<SV,C>::process_request|process_new_http|lean::Lean::request"),
    ("connection loop, TLS, tokio, rest", r"."),
]
HEADER_API = re.compile(r"^(pingora_http::|http::header::|<http::header|<&str as http::header)")
pats = [(name, re.compile(p)) for name, p in BUCKETS]

def samples(path):
    cur = []
    for line in open(path, errors="replace"):
        if not line.strip():
            if cur:
                yield cur
            cur = []
        elif line[0] in " \t":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                cur.append(re.sub(r"\+0x[0-9a-f]+ \(.*\)$|\s+\(.*\)$", "", parts[1]))
        # the sample's header line starts a new record
    if cur:
        yield cur

res = {}
for m in ("tls", "policy"):
    reqs = int(re.search(r"(\d+) requests in", open(f"{w}/{m}.wrk").read()).group(1))
    got, inner, total = {}, {}, 0
    for st in samples(f"{w}/{m}.script"):
        total += 1
        for name, p in pats:
            idx = next((i for i, f in enumerate(st) if p.search(f)), None)
            if idx is None:
                continue
            got[name] = got.get(name, 0) + 1
            if name.startswith("hook") and any(HEADER_API.search(f) for f in st[:idx]):
                inner[name] = inner.get(name, 0) + 1
            break
    us = lambda n: n / HZ / reqs * 1e6
    res[m] = ({k: us(v) for k, v in got.items()}, {k: us(v) for k, v in inner.items()}, us(total), reqs)

print("| CPU µs per request (inclusive) | tls | policy | policy − tls |")
print("|---|---|---|---|")
for name, _ in BUCKETS:
    t, p = res["tls"][0].get(name, 0.0), res["policy"][0].get(name, 0.0)
    print(f"| {name} | {t:.2f} | {p:.2f} | {p - t:+.2f} |")
    if name.startswith("hook"):
        ti, pi = res["tls"][1].get(name, 0.0), res["policy"][1].get(name, 0.0)
        if ti or pi:
            print(f"| … of which pingora's header API / http header maps | {ti:.2f} | {pi:.2f} | {pi - ti:+.2f} |")
t, p = res["tls"][2], res["policy"][2]
print(f"| **total** | **{t:.2f}** | **{p:.2f}** | **{p - t:+.2f}** |")
hooks = lambda m: sum(v for k, v in res[m][0].items() if k.startswith("hook"))
print(f"\nrequests sampled: tls {res['tls'][3]}, policy {res['policy'][3]}; "
      f"the gateway's hooks: tls {hooks('tls'):.2f} µs ({100 * hooks('tls') / t:.1f} %), "
      f"policy {hooks('policy'):.2f} µs ({100 * hooks('policy') / p:.1f} %)")
PY
