#!/usr/bin/env bash
# A/B of two portcullis binaries: did a change make the proxy faster?
#
#   benches/load/ab.sh OLD_BINARY NEW_BINARY     # e.g. a copy of target/release/portcullis before the change
#
# Starts one nginx as the upstream (core 1) and each binary twice (core 0,
# threads = 1): the `tls` and `policy` configs of compare.sh (policy: a
# session cookie verified on every request, a never-tripping per-IP limit,
# the default security headers). Then ROUNDS (5) interleaved rounds of wrk
# -t1 -c64 for SECS (8) seconds against each, A B A B, and prints per round
# req/s, the proxy's CPU µs per request (utime+stime delta) and p99, then the
# medians. Much shorter than compare.sh; no other servers. Needs nginx, wrk,
# curl, openssl, taskset, python3; uses ports 18080 and 18441-18444.
#   MODES ("tls policy"): add `16k` for GET /16k on the tls instances.
#   TOGETHER=1: A and B loaded at the same time (each its own wrk, both on
#   core 1) instead of one after the other, as paired.sh does for
#   portcullis and nginx: a busy host slows both alike, so a difference of
#   a few percent in CPU per request is readable (one after the other, the
#   same binary's rounds can differ by more than that).
set -euo pipefail
[ $# = 2 ] || { sed -n 2,13p "$0" >&2; exit 2; }
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
A=$(realpath "$1"); B=$(realpath "$2"); rounds=${ROUNDS:-5}; secs=${SECS:-8}
modes=${MODES:-tls policy}
w=$(mktemp -d /tmp/ab.XXXX); cd "$w"
trap 'kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null; sleep 0.5; rm -rf "$w"' EXIT
bench_certificate_and_upstream "$w"
keys="bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz"
conf() { # name port kind binary
  portcullis_config_for "$4" "$3" "$2" 18080 "$w/$1.state" >"$1.toml"
  # The account: users.toml or identity.db beside the config, shared by
  # both binaries when they keep accounts the same way.
  if [ "$3" = policy ]; then printf '%s\n' "$BENCH_PASSWORD" | "$4" user add bench -c "$1.toml" >/dev/null 2>&1 || true; fi
}
declare -A port=([A-tls]=18441 [B-tls]=18442 [A-policy]=18443 [B-policy]=18444)
for v in A B; do for m in tls policy; do
  bin=$A; [ $v = B ] && bin=$B
  conf "$v-$m" "${port[$v-$m]}" "$m" "$bin"
  PORTCULLIS_SESSION_KEYS=$keys taskset -c 0 "$bin" run -c "$v-$m.toml" >/dev/null 2>"$v-$m.err" & echo $! > "$v-$m.pid"
done; done
sleep 2
# a session cookie per binary (each logs in on its own policy instance: the
# cookie format may differ between the two versions)
login() { bench_login "https://127.0.0.1:$1" bench "$BENCH_PASSWORD"; }
declare -A cookie=([A]="$(login "${port[A-policy]}")" [B]="$(login "${port[B-policy]}")")
for v in A B; do for m in tls policy; do
  s=$(curl -sk -o /dev/null -w '%{http_code}' -H "${cookie[$v]}" "https://127.0.0.1:${port[$v-$m]}/small"); echo "$v-$m $s"; done; done
for v in A B; do for m in tls policy; do taskset -c 1 wrk -t1 -c64 -d2s -H "${cookie[$v]}" "https://127.0.0.1:${port[$v-$m]}/small" >/dev/null; done; done
# run V M OUT: wrk against V's instance for mode M, output to OUT.
run() {
  local inst=$1-$2 file=small
  [ "$2" = 16k ] && inst=$1-tls file=16k
  taskset -c 1 wrk -t1 -c64 -d"${secs}s" --latency -H "${cookie[$1]}" "https://127.0.0.1:${port[$inst]}/$file" > "$3"
}
pid_of() { local m=$2; [ "$m" = 16k ] && m=tls; cat "$1-$m.pid"; }
row() { # round mode V t0 t1 OUT
  local n rps p99
  read -r n rps p99 < <(wrk_result "$6") && [ -n "$n" ] || exit 1
  echo -e "$1\t$2\t$3\t$rps\t$(cpu_us_per_request "$4" "$5" "$n")\t$p99"
}
echo -e "round\tmode\tbin\trps\tcpu_us_per_req\tp99"
for r in $(seq "$rounds"); do for m in $modes; do
  if [ -n "${TOGETHER:-}" ]; then
    a0=$(cpu_ticks "$(pid_of A "$m")"); b0=$(cpu_ticks "$(pid_of B "$m")")
    run A "$m" A.out & ja=$!; run B "$m" B.out & jb=$!
    wait $ja $jb
    a1=$(cpu_ticks "$(pid_of A "$m")"); b1=$(cpu_ticks "$(pid_of B "$m")")
    row "$r" "$m" A "$a0" "$a1" A.out; row "$r" "$m" B "$b0" "$b1" B.out
  else
    for v in A B; do
      t0=$(cpu_ticks "$(pid_of $v "$m")"); run $v "$m" $v.out; t1=$(cpu_ticks "$(pid_of $v "$m")")
      row "$r" "$m" $v "$t0" "$t1" $v.out
    done
  fi
done; done | tee results.tsv
python3 - <<P
import csv,statistics as st
rows=list(csv.reader(open("results.tsv"),delimiter="\t"))
for m in "$modes".split():
  for v in "AB":
    r=[float(x[3]) for x in rows if x[1]==m and x[2]==v]; c=[float(x[4]) for x in rows if x[1]==m and x[2]==v]
    print(m,v,"median rps",st.median(r),"median cpu us/req",st.median(c))
  a=[float(x[4]) for x in rows if x[1]==m and x[2]=="A"]; b=[float(x[4]) for x in rows if x[1]==m and x[2]=="B"]
  print(m,"B/A cpu per request, per round:"," ".join(f"{y/x:.3f}" for x,y in zip(a,b)),"median",f"{st.median([y/x for x,y in zip(a,b)]):.3f}")
P
