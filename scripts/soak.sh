#!/usr/bin/env bash
# The long run of scripts/fuzz.sh: every libFuzzer target for about SECONDS in
# all (default 3600), split evenly between them, at least 10 s each. Each
# target starts from a copy of its seed corpus; a crash fails the run and
# leaves its input in build/fuzz/artifacts/<target>/.
#   scripts/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-3600}
case $total in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
targets=(tests/fuzz/fuzz_*.cpp)
each=$(( total / ${#targets[@]} ))
[ "$each" -ge 10 ] || each=10
echo "soak: ${#targets[@]} fuzz targets, ${each} s each"
exec scripts/fuzz.sh --seconds "$each"
