#!/usr/bin/env bash
# Benchmarks (issue 13): the static pisecd, built as it ships (preset
# host-static), against the tools people would otherwise use, each figure
# side by side with its anchors in the same run, several repetitions, median
# and spread, the ratio last; one summary table at the end. The anchors come
# from Debian's packages (s6, runit and openrc unpacked under
# build/bench-tools, never installed). Everything runs in network namespaces
# the scripts create and remove; the host's firewall, clock and network are
# never touched. Not part of the test suite: nothing here is asserted.
#
#   scripts/bench.sh [NAME]    NAME: one of scripts/bench/*.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (network namespaces, nftables, anchors)" >&2; exit 1; }
start=$SECONDS
scripts/setup.sh --host  # the host's packages and trixie's libmnl.a; not the ARMv6 sysroot
cmake --preset host-static >/dev/null
cmake --build --preset host-static -j "$(nproc)" >/dev/null
export PISECD=$PWD/build/host-static/pisecd PISEC_BUILD=$PWD/build/host-static PISEC_SOURCE=$PWD
export BENCH_TOOLS=$PWD/build/bench-tools
BENCH_SUMMARY=$(mktemp /tmp/pisec-bench-summary.XXXXXX); export BENCH_SUMMARY
trap 'rm -f "$BENCH_SUMMARY"' EXIT

machine() {
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, kernel $(uname -r)"
  echo "pisecd: $("$PISECD" --version | head -1) (static, $(stat -c %s "$PISECD") bytes)"
}
machine
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%FT%TZ))"
only=${1:-}
# The table's rows first, in its order; then the other benchmarks.
for name in supervisors reap firewall integrity boot mux logs_redact; do
  [ -z "$only" ] || [ "$only" = "$name" ] || continue
  echo; echo "== bench: $name =="
  # "Killed" notices are the scripts' own clean-up of what they started.
  if ! bash "scripts/bench/$name.sh" 2> >(grep -v ' Killed ' >&2); then
    echo "bench $name FAILED (see above)"
    printf '%s\tFAILED\t\t\t\n' "$name" >> "$BENCH_SUMMARY"
  fi
done

echo; echo "== summary =="
machine
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg); bench.sh took $((SECONDS - start)) s"
echo "median (min–max, n) unless said otherwise; ratio = pisecd / anchor"
echo
echo "| figure | pisecd | anchors | ratio | aim |"
echo "| --- | --- | --- | --- | --- |"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}' "$BENCH_SUMMARY"
