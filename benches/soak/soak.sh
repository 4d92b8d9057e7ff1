#!/usr/bin/env bash
# Soak: ~10 minutes of mixed traffic (logins, protected pages, a rate-limited
# route, WebSockets, public pages) against the release build at about half of
# its capacity measured first with wrk; samples the gateway's VmRSS and open
# fds every 5 s. Not part of CI. See docs/soak-and-faults.md.
#
# Needs: wrk (apt-get install -y wrk); gnuplot (optional, for a PNG).
# Usage: benches/soak/soak.sh [seconds (default 600)] [output dir (default target/soak)]
# Exit 0 only with zero unexpected errors and the gateway still running.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
out=$(realpath -m "${2:-target/soak}")
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
mkdir -p "$out"
# The bench profile is the release profile; the driver runs target/release/portcullis.
status=0
PORTCULLIS_SOAK=1 SOAK_SECONDS="$secs" SOAK_OUT="$out" \
  cargo bench --locked -q -p portcullis --bench soak 2>&1 | tee "$out/run.log" || status=$?
if command -v gnuplot >/dev/null && [ -s "$out/samples.csv" ]; then
  gnuplot <<GP
set terminal png size 900,500
set output "$out/soak.png"
set datafile separator ","
set key autotitle columnhead left top
set xlabel "seconds"
set ylabel "VmRSS (MiB)"
set y2label "open fds"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set title "portcullis soak: gateway RSS and fds"
plot "$out/samples.csv" using 1:(\$2/1024) with lines lw 2 title "VmRSS (MiB)", \
     "" using 1:3 axes x1y2 with lines title "open fds"
GP
  echo "plot: $out/soak.png"
fi
exit "$status"
