#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp; clang, ASan + UBSan) in
# build/fuzz and runs each over a copy of its seed corpus (tests/fuzz/corpus/
# <name without fuzz_>), so the repository's corpus is never modified.
#   scripts/fuzz.sh                 20000 runs per target (the test command's short mode)
#   scripts/fuzz.sh --runs N        N runs per target
#   scripts/fuzz.sh --seconds S     S seconds per target (scripts/soak.sh)
#   ... [fuzz_NAME...]              only these targets
# A crash leaves its input in build/fuzz/artifacts/<target>/ and fails the
# run; fix it and keep the input as a regression test (a unit test case, or
# a file in the target's corpus).
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-runs=20000)
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) limit=(-runs="$2"); shift 2 ;;
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    fuzz_*) targets+=("$1"); shift ;;
    *) echo "usage: $0 [--runs N | --seconds S] [fuzz_NAME...]" >&2; exit 2 ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.cpp; do
    name=${src##*/}
    targets+=("${name%.cpp}")
  done
fi

build=build/fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DPISEC_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# Only the fuzz targets: the rest of the tree is built (with GCC) by the host presets.
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  corpus=tests/fuzz/corpus/${target#fuzz_}
  mkdir -p "$work/$target" "$build/artifacts/$target"
  if [ -d "$corpus" ]; then cp -r "$corpus"/. "$work/$target/"; fi
  start=$(date +%s)
  # -timeout: one input taking 10 s is a hang (libFuzzer's default is 20 min);
  # every parser here runs on the daemon's one event loop.
  if "$build/tests/fuzz/$target" "${limit[@]}" -timeout=10 \
       -artifact_prefix="$build/artifacts/$target/" "$work/$target" >"$work/$target.log" 2>&1; then
    stats=$(grep -E '^#[0-9]+.*(DONE|pulse)' "$work/$target.log" | tail -1 | sed 's/\t/ /g')
    printf 'fuzz: %-16s ok   %3ss  %s\n' "$target" "$(( $(date +%s) - start ))" "$stats"
  else
    printf 'fuzz: %-16s FAILED after %ss; log:\n' "$target" "$(( $(date +%s) - start ))"
    grep -E -A30 'ERROR|runtime error|deadly signal|Test unit written' "$work/$target.log" | head -60 || tail -40 "$work/$target.log"
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
