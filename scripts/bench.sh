#!/usr/bin/env bash
# Benchmarks: each scripts/bench/<name>.sh measures pisecd against the tool
# people would otherwise use, side by side in the same run, and prints ratios.
# Not part of the test suite: timings are never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/host/pisecd ]; then
  scripts/setup.sh
  cmake --preset host >/dev/null && cmake --build --preset host -j "$(nproc)"
fi
export PISECD=$PWD/build/host/pisecd PISEC_BUILD=$PWD/build/host PISEC_SOURCE=$PWD
only=${1:-}
for b in scripts/bench/*.sh; do
  name=$(basename "$b" .sh)
  [ -z "$only" ] || [ "$only" = "$name" ] || continue
  echo "== bench: $name =="
  bash "$b"
done
