#!/usr/bin/env bash
# Issue 5, acceptance line 7: `pisecd manifest verify` hashing throughput on a
# 256 MiB file against `openssl dgst -sha256` and `sha256sum` on the same file,
# in the same run, page cache warm. BENCH_RUNS (5) runs each under hyperfine;
# prints the median run's MiB/s, the spread and the ratios.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
PISECD=${PISECD:-$src/build/host/pisecd}
build=${PISEC_BUILD:-$src/build/host}
size_mib=${BENCH_SIZE_MIB:-256}
runs=${BENCH_RUNS:-5}

work=$(mktemp -d "$build/bench-integrity-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

head -c "${size_mib}M" /dev/urandom >big.bin
"$PISECD" keygen -p k.pub -s k.sec >/dev/null
"$PISECD" manifest create -o MANIFEST big.bin >/dev/null
"$PISECD" manifest sign -s k.sec -m MANIFEST >/dev/null
cat big.bin >/dev/null  # warm the page cache: measure hashing, not the disk

# Same file, same digest: a benchmark of a wrong answer is worthless.
want=$(sha256sum big.bin | cut -d' ' -f1)
grep -q "^$want  big.bin\$" MANIFEST || { echo "FAIL: manifest digest differs from sha256sum" >&2; exit 1; }

hyperfine -N --warmup 1 --runs "$runs" --export-json times.json \
  -n pisecd "$PISECD manifest verify -p k.pub -m MANIFEST" \
  -n openssl "openssl dgst -sha256 big.bin" -n sha256sum "sha256sum big.bin" >/dev/null 2>&1
# MiB/s of the median run, and of the slowest and fastest.
read -r p p_lo p_hi o o_lo o_hi s s_lo s_hi < <(jq -r --argjson mib "$size_mib" \
  '[.results[] | ($mib / .median), ($mib / .max), ($mib / .min)] | map(. * 10 | round / 10) | join(" ")' times.json)
echo "file: $size_mib MiB, $runs runs each (hyperfine -N), page cache warm, MiB/s of the median run (slowest–fastest); load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-38s %8s (%s–%s)\n' "pisecd manifest verify (sig + sha256)" "$p" "$p_lo" "$p_hi" \
  "openssl dgst -sha256" "$o" "$o_lo" "$o_hi" "sha256sum" "$s" "$s_lo" "$s_hi"
r_o=$(awk -v a="$p" -v b="$o" 'BEGIN {printf "%.2f", a / b}')
r_s=$(awk -v a="$p" -v b="$s" 'BEGIN {printf "%.2f", a / b}')
echo "  ratio pisecd/openssl: $r_o   pisecd/sha256sum: $r_s"
if [ -n "${BENCH_SUMMARY:-}" ]; then
  # shellcheck source=scripts/bench/common.bash
  source "$src/scripts/bench/common.bash"
  summary "integrity hashing, $size_mib MiB, MiB/s (aim ≥ 0.9× openssl)" "$p ($p_lo–$p_hi)" \
    "openssl $o ($o_lo–$o_hi), sha256sum $s ($s_lo–$s_hi)" "$r_o× openssl, $r_s× sha256sum" \
    "$(awk -v r="$r_o" 'BEGIN {print (r >= 0.9) ? "met" : "not met"}')"
fi
