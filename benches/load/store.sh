#!/usr/bin/env bash
# The identity store's cost on the hot path (issue 17): the TLS + policy
# chain (every request carries a session cookie that is verified) three ways,
# side by side in one run:
#
#   memory    BASELINE_BINARY: the version before the store (stateless
#             cookie checked against the users file held in memory)
#   sqlite    NEW_BINARY with [store] url = "sqlite:…" (the embedded default)
#   postgres  NEW_BINARY with [store] on a private PostgreSQL cluster
#
#   benches/load/store.sh BASELINE_BINARY NEW_BINARY
#
# compare.sh runs it as its last step (BASELINE=rev builds the baseline from
# that commit). Same method as ab.sh: one nginx upstream (core 1), each
# portcullis on core 0 with threads = 1, wrk -t1 -c64 on core 1, ROUNDS (5)
# interleaved rounds of SECS (8) s (memory sqlite postgres memory ...), then
# per mode the median req/s, CPU µs per request and p99, and each store's
# median req/s as a ratio to memory (the target: >= 0.95). Needs nginx, wrk,
# curl, openssl, taskset, python3, PostgreSQL's initdb/pg_ctl (run as the
# `postgres` user, so as root); ports 18080, 18451-18453 and one for
# PostgreSQL.
set -euo pipefail
[ $# = 2 ] || { sed -n 2,21p "$0" >&2; exit 2; }
# shellcheck source=benches/load/portcullis_config.sh
. "$(dirname "$0")/portcullis_config.sh"
OLD=$(realpath "$1"); NEW=$(realpath "$2"); rounds=${ROUNDS:-5}; secs=${SECS:-8}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
w=$(mktemp -d /tmp/store-bench.XXXX); chmod 755 "$w"; cd "$w"
cleanup() {
  kill $(cat "$w"/*.pid "$w"/up.pidfile 2>/dev/null) 2>/dev/null || true
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$w/pg/data" -m immediate stop >/dev/null 2>&1 || true
  sleep 0.5; rm -rf "$w"
}
trap cleanup EXIT
bench_certificate_and_upstream "$w"

# PostgreSQL: a private cluster, trust on loopback (a bench, not a deployment).
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p pg; chown postgres:postgres pg
runuser -u postgres -- "$pgbin/initdb" -D "$w/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$w/pg/data" -l "$w/pg/log" -w \
  -o "-p $pgport -k $w/pg -c listen_addresses=127.0.0.1" start >/dev/null
psql -h "$w/pg" -p "$pgport" -U postgres -q -c "CREATE ROLE portcullis LOGIN" -c "CREATE DATABASE identity OWNER portcullis"
pgpid=$(head -1 "$w/pg/data/postmaster.pid"); taskset -acp 1 "$pgpid" >/dev/null

keys="bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz"
pw=benchpass-123456
declare -A port=([memory]=18451 [sqlite]=18452 [postgres]=18453)
# memory: the baseline knows no [store]; its users file is users.toml beside
# the config (its default).
has_store "$OLD" && { echo "$OLD already has the identity store: give a binary from before it" >&2; exit 2; }
portcullis_config_for "$OLD" policy "${port[memory]}" 18080 "$w/memory.state" > memory.toml
printf '%s\n' "$pw" | "$OLD" user add bench -c memory.toml >/dev/null
# sqlite (identity.db beside the config), postgres: the new binary's store.
portcullis_config policy "${port[sqlite]}" 18080 "$w/sqlite.state" > sqlite.toml
portcullis_config policy "${port[postgres]}" 18080 "$w/postgres.state" \
  | sed "s|^url = \"sqlite:identity.db\"|url = \"postgres://portcullis@127.0.0.1:$pgport/identity\"|" > postgres.toml
for m in sqlite postgres; do printf '%s\n' "$pw" | "$NEW" user add bench -c "$m.toml" >/dev/null; done
for m in memory sqlite postgres; do
  bin=$NEW; [ $m = memory ] && bin=$OLD
  PORTCULLIS_SESSION_KEYS=$keys taskset -c 0 "$bin" run -c "$m.toml" >/dev/null 2>"$m.err" & echo $! > "$m.pid"
done
sleep 2
login() { bench_login "https://127.0.0.1:$1" bench "$pw"; }  # port -> a session cookie
declare -A cookie
for m in memory sqlite postgres; do
  cookie[$m]=$(login "${port[$m]}")
  s=$(curl -sk -o /dev/null -w '%{http_code}' -H "${cookie[$m]}" "https://127.0.0.1:${port[$m]}/small")
  [ "$s" = 200 ] || { echo "$m answers $s with its session" >&2; cat "$m.err" >&2; exit 1; }
  s=$(curl -sk -o /dev/null -w '%{http_code}' -H 'Accept: application/json' "https://127.0.0.1:${port[$m]}/small")
  [ "$s" = 401 ] || { echo "$m serves without a session ($s)" >&2; exit 1; }
done
for m in memory sqlite postgres; do taskset -c 1 wrk -t1 -c64 -d2s -H "${cookie[$m]}" "https://127.0.0.1:${port[$m]}/small" >/dev/null; done
# PostgreSQL's own count of transactions in the identity database: what the
# gateway asked of it while the postgres rounds ran (issue 22: an
# authenticated request makes no round trip; background work only).
xacts() { psql -h "$w/pg" -p "$pgport" -U postgres -tAq -c \
  "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'identity'"; }
x0=$(xacts); t_start=$(date +%s); : > pg_requests
echo -e "round\tmode\trps\tcpu_us_per_req\tp99"
for r in $(seq "$rounds"); do for m in memory sqlite postgres; do
  pid=$(cat $m.pid); t0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}"s --latency -H "${cookie[$m]}" "https://127.0.0.1:${port[$m]}/small")
  t1=$(cpu_ticks "$pid")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out"); n=$(awk '/requests in/ {print $1}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); [ -z "$non2xx" ] || { echo "$m: $non2xx non-2xx answers" >&2; exit 1; }
  [ $m = postgres ] && echo "$n" >> pg_requests
  echo -e "$r\t$m\t$rps\t$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN{printf "%.1f", (b-a)*10000/n}')\t$p99"
done; done | tee results.tsv
sleep 1 # the statistics are flushed at the end of a transaction, or within a second
x1=$(xacts)
echo "postgres: $((x1 - x0)) transactions in the identity database in $(( $(date +%s) - t_start )) s of rounds, while the postgres gateway served $(paste -sd+ pg_requests | bc) authenticated requests (its background polls; a request costs none)"
for m in memory sqlite postgres; do echo "$m: peak RSS $(awk '/VmHWM/ {print $2, $3}' /proc/"$(cat $m.pid)"/status)"; done
python3 - <<P
import csv, statistics as st
rows = list(csv.reader(open("results.tsv"), delimiter="\t"))
med = {}
for m in ["memory", "sqlite", "postgres"]:
    r = [float(x[2]) for x in rows if x[1] == m]
    c = [float(x[3]) for x in rows if x[1] == m]
    med[m] = st.median(r)
    print(f"{m:9} median req/s {med[m]:9.0f}   median CPU us/req {st.median(c):5.1f}")
for m in ["sqlite", "postgres"]:
    print(f"{m} / memory: {med[m] / med['memory']:.3f} (target >= 0.95)")
P
