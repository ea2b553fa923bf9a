#!/usr/bin/env bash
# Time to reap 10,000 orphans: the payload (scripts/bench/payload.c, mode
# orphans) releases them in waves of 500 and times each wave from the release
# until the last of them is gone (kill(pid, 0) fails: reaped, not a zombie).
# Under pisecd the reaper is its init inside the sandbox; under `tini -s` it
# is tini as a subreaper. BENCH_REAP_RUNS (3) runs each, alternating, in a
# throwaway network namespace. Nothing here is asserted.
set -euo pipefail
# shellcheck source=scripts/bench/common.bash
source "$(dirname "$0")/common.bash"
build_payload
RUNS=${BENCH_REAP_RUNS:-3}
NS=pisec-bench-reap-$$
DIR=$(mktemp -d /tmp/pisec-bench-reap.XXXXXX); chmod 0755 "$DIR"
BENCH_OUT_DIR=$DIR/out; mkdir -m 0777 "$BENCH_OUT_DIR"
kill_ns() { for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done; }
cleanup() {
  set +e
  [ -n "${daemon:-}" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  kill_ns; ip netns del "$NS" 2>/dev/null; rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up

# wait_line FILE: the payload's "<ns> <count>" line, after at most 120 s.
wait_line() {
  for _ in $(seq 1200); do [ -s "$1" ] && { cat "$1"; return; }; sleep 0.1; done
  echo "reap: no result in $1" >&2; exit 1
}
pisecd_config "$DIR/pisecd.toml" "$DIR/pisecd.sock" orphans
p_ms="" t_ms=""
for _ in $(seq "$RUNS"); do
  rm -f "$BENCH_OUT_DIR"/*.out
  ip netns exec "$NS" "$PISECD" run -c "$DIR/pisecd.toml" >/dev/null 2>&1 &
  daemon=$!
  read -r ns n < <(wait_line "$BENCH_OUT_DIR/pisecd.out")
  kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
  p_ms+="$(awk -v t="$ns" 'BEGIN {printf "%.1f", t / 1e6}') "

  env BENCH_OUT="$BENCH_OUT_DIR/tini.out" ip netns exec "$NS" tini -s -- "$BENCH_PAYLOAD" orphans &
  read -r ns n < <(wait_line "$BENCH_OUT_DIR/tini.out")
  kill_ns; wait 2>/dev/null || true
  t_ms+="$(awk -v t="$ns" 'BEGIN {printf "%.1f", t / 1e6}') "
done
ps=$(echo "$p_ms" | tr ' ' '\n' | awk NF | stats) ts=$(echo "$t_ms" | tr ' ' '\n' | awk NF | stats)
echo "reaping $n orphans (waves of ${BENCH_WAVE:-500}), ms, median (min–max), $RUNS runs each; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  pisecd (init in the sandbox): $(echo "$ps" | fmt_stats 1 1)   runs: ${p_ms% }"
echo "  tini -s:                      $(echo "$ts" | fmt_stats 1 1)   runs: ${t_ms% }"
pm=${ps%% *} tm=${ts%% *}
echo "  ratio pisecd/tini: $(ratio "$pm" "$tm")"
summary "time to reap $n orphans, ms (aim ≤ tini)" "$(echo "$ps" | fmt_stats 1 1)" \
  "tini -s $(echo "$ts" | fmt_stats 1 1)" "$(ratio "$pm" "$tm")×" \
  "$(awk -v p="$pm" -v t="$tm" 'BEGIN {print (p <= t) ? "met" : "not met"}')"
