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
set -euo pipefail
[ $# = 2 ] || { sed -n 2,13p "$0" >&2; exit 2; }
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
A=$(realpath "$1"); B=$(realpath "$2"); rounds=${ROUNDS:-5}; secs=${SECS:-8}
w=$(mktemp -d /tmp/ab.XXXX); cd "$w"
trap 'kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null; sleep 0.5; rm -rf "$w"' EXIT
bench_certificate_and_upstream "$w"
keys="bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz"
conf() { # name port kind binary
  portcullis_config_for "$4" "$3" "$2" 18080 "$w/$1.state" >"$1.toml"
  # The account: users.toml or identity.db beside the config, shared by
  # both binaries when they keep accounts the same way.
  if [ "$3" = policy ]; then printf 'benchpass-123456\n' | "$4" user add bench -c "$1.toml" >/dev/null 2>&1 || true; fi
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
login() { # port -> the session cookie
  local u=https://127.0.0.1:$1 binding token session
  curl -sk -D form.h -o form.html "$u/.portcullis/login?next=/"
  binding=$(sed -n 's/^set-cookie: __Host-portcullis-csrf=\([^;]*\).*/\1/Ip' form.h | tr -d '\r')
  token=$(grep -o 'name="csrf" value="[^"]*"' form.html | sed 's/.*value="//; s/"$//')
  curl -sk -D login.h -o /dev/null -H "Cookie: __Host-portcullis-csrf=$binding" --data-urlencode "csrf=$token" --data-urlencode username=bench --data-urlencode "password=benchpass-123456" --data-urlencode next=/small "$u/.portcullis/login"
  session=$(sed -n 's/^set-cookie: __Host-portcullis=\([^;]*\).*/\1/Ip' login.h | tr -d '\r')
  [ -n "$session" ] || { echo "no session" >&2; cat login.h >&2; exit 1; }
  echo "Cookie: __Host-portcullis=$session"
}
declare -A cookie=([A]="$(login "${port[A-policy]}")" [B]="$(login "${port[B-policy]}")")
for v in A B; do for m in tls policy; do
  s=$(curl -sk -o /dev/null -w '%{http_code}' -H "${cookie[$v]}" "https://127.0.0.1:${port[$v-$m]}/small"); echo "$v-$m $s"; done; done
for v in A B; do for m in tls policy; do taskset -c 1 wrk -t1 -c64 -d2s -H "${cookie[$v]}" "https://127.0.0.1:${port[$v-$m]}/small" >/dev/null; done; done
echo -e "round\tmode\tbin\trps\tcpu_us_per_req\tp99"
for r in $(seq $rounds); do for m in tls policy; do for v in A B; do
  pid=$(cat $v-$m.pid); t0=$(cpu_ticks $pid)
  out=$(taskset -c 1 wrk -t1 -c64 -d${secs}s --latency -H "${cookie[$v]}" "https://127.0.0.1:${port[$v-$m]}/small")
  t1=$(cpu_ticks $pid)
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out"); n=$(awk '/requests in/ {print $1}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo -e "$r\t$m\t$v\t$rps\t$(awk -v a=$t0 -v b=$t1 -v n=$n 'BEGIN{printf "%.1f", (b-a)*10000/n}')\t$p99"
done; done; done | tee results.tsv
python3 - <<P
import csv,statistics as st
rows=list(csv.reader(open("results.tsv"),delimiter="\t"))
for m in ["tls","policy"]:
  for v in "AB":
    r=[float(x[3]) for x in rows if x[1]==m and x[2]==v]; c=[float(x[4]) for x in rows if x[1]==m and x[2]==v]
    print(m,v,"median rps",st.median(r),"median cpu us/req",st.median(c))
P
