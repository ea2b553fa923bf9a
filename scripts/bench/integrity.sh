#!/usr/bin/env bash
# Issue 5, acceptance line 7: `pisecd manifest verify` hashing throughput on a
# 256 MiB file against `openssl dgst -sha256` and `sha256sum` on the same file,
# in the same run, page cache warm. Best of 3 runs each. Prints MiB/s and ratios.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
PISECD=${PISECD:-$src/build/host/pisecd}
build=${PISEC_BUILD:-$src/build/host}
size_mib=${BENCH_SIZE_MIB:-256}
runs=${BENCH_RUNS:-3}

work=$(mktemp -d "$build/bench-integrity-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

head -c "${size_mib}M" /dev/urandom >big.bin
"$PISECD" keygen -p k.pub -s k.sec >/dev/null
"$PISECD" manifest create -o MANIFEST big.bin >/dev/null
"$PISECD" manifest sign -s k.sec -m MANIFEST >/dev/null
cat big.bin >/dev/null  # warm the page cache: measure hashing, not the disk

# best_ns CMD...: fastest wall time of $runs runs, in nanoseconds.
best_ns() {
  local best=0 t0 t1 i
  for ((i = 0; i < runs; i++)); do
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    if ((best == 0 || t1 - t0 < best)); then best=$((t1 - t0)); fi
  done
  echo "$best"
}

pisecd_ns=$(best_ns "$PISECD" manifest verify -p k.pub -m MANIFEST)
openssl_ns=$(best_ns openssl dgst -sha256 big.bin)
sha256sum_ns=$(best_ns sha256sum big.bin)

# Same file, same digest: a benchmark of a wrong answer is worthless.
want=$(sha256sum big.bin | cut -d' ' -f1)
grep -q "^$want  big.bin\$" MANIFEST || { echo "FAIL: manifest digest differs from sha256sum" >&2; exit 1; }

awk -v mib="$size_mib" -v p="$pisecd_ns" -v o="$openssl_ns" -v s="$sha256sum_ns" -v runs="$runs" 'BEGIN {
  mp = mib / (p / 1e9); mo = mib / (o / 1e9); ms = mib / (s / 1e9)
  printf "file: %d MiB, best of %d runs, page cache warm\n", mib, runs
  printf "%-42s %8.1f MiB/s  (%.3f s)\n", "pisecd manifest verify (sig + sha256)", mp, p / 1e9
  printf "%-42s %8.1f MiB/s  (%.3f s)\n", "openssl dgst -sha256", mo, o / 1e9
  printf "%-42s %8.1f MiB/s  (%.3f s)\n", "sha256sum", ms, s / 1e9
  printf "ratio pisecd/openssl:   %.2f\n", mp / mo
  printf "ratio pisecd/sha256sum: %.2f\n", mp / ms
}'
