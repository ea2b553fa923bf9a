#!/usr/bin/env bash
# The static `pisecd run` against s6-supervise, runsv, supervise-daemon
# (Debian's openrc) and `tini -s`, each supervising the same payload
# (scripts/bench/payload.c) in one throwaway network namespace:
#   1. idle: all five side by side for BENCH_IDLE_SECONDS (60) after a settle,
#      sampled in 3 windows: wakeups (context switches of every thread of the
#      supervisor), RSS and private dirty (smaps_rollup); then the status round
#      trip, `pisecd status` against `s6-svstat`, under hyperfine
#   2. crash loop, one supervisor at a time (s6 and runit together, they
#      spend their 1 s floor asleep): restart latency from the payload's last
#      instruction to the next instance's first (CLOCK_MONOTONIC, written by
#      the payload itself) and the supervisor's own CPU time (schedstat, all
#      threads) per 1,000 restarts
# Nothing here is asserted.
set -euo pipefail
# shellcheck source=scripts/bench/common.bash
source "$(dirname "$0")/common.bash"
anchors; build_payload
SECS=${BENCH_IDLE_SECONDS:-60}
NS=pisec-bench-sup-$$
DIR=$(mktemp -d /tmp/pisec-bench-sup.XXXXXX); chmod 0755 "$DIR"
BENCH_OUT_DIR=$DIR/out; mkdir -m 0777 "$BENCH_OUT_DIR"
kill_ns() { for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done; }
cleanup() {
  set +e
  [ -n "${PISECD_PID:-}" ] && kill -TERM "$PISECD_PID" 2>/dev/null && wait "$PISECD_PID" 2>/dev/null
  kill_ns; ip netns del "$NS" 2>/dev/null; rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
anchor_env() {  # $1 mode, $2 name, then the command
  local mode=$1 name=$2; shift 2
  exec env LD_LIBRARY_PATH="$ANCHOR_LIBS" BENCH_MODE="$mode" BENCH_OUT="$BENCH_OUT_DIR/$name.out" "$@"
}

start_pisecd() {  # $1 mode, $2 extra TOML
  pisecd_config "$DIR/pisecd.toml" "$DIR/pisecd.sock" "$1" "${2:-}"
  ip netns exec "$NS" "$PISECD" run -c "$DIR/pisecd.toml" >/dev/null 2>&1 &
  PISECD_PID=$!
  for _ in $(seq 100); do "$PISECD" status -s "$DIR/pisecd.sock" >/dev/null 2>&1 && break; sleep 0.05; done
}
stop_pisecd() { kill -TERM "$PISECD_PID"; wait "$PISECD_PID" 2>/dev/null || true; PISECD_PID=; }
service_dir() {  # $1 dir: ./run is the payload itself (no shell in between)
  rm -rf "$1"; mkdir -p "$1"; ln -s "$BENCH_PAYLOAD" "$1/run"
}
# Each started so that $! is the supervisor itself (env and ip exec it).
start_s6() { service_dir "$DIR/s6"; (anchor_env "$1" s6 ip netns exec "$NS" "$S6_SUPERVISE" "$DIR/s6") & S6_PID=$!; }
start_runsv() { service_dir "$DIR/runsv"; (anchor_env "$1" runsv ip netns exec "$NS" "$RUNSV" "$DIR/runsv") & RUNSV_PID=$!; }
start_openrc() {  # $1 mode, [$2 = bwrap: the payload inside bwrap with pisecd's namespaces]
  local name=openrc cmd=("$BENCH_PAYLOAD")
  if [ "${2:-}" = bwrap ]; then
    # What pisecd's sandbox costs by itself: the namespaces it asks bwrap for
    # (src/sandbox/argv.cpp), without its seccomp filter and its init.
    name=openrc-bwrap
    cmd=(/usr/bin/bwrap -- --unshare-user --uid 41900 --gid 41900 --unshare-pid --unshare-ipc --unshare-uts
         --unshare-cgroup-try --die-with-parent --new-session --cap-drop ALL --tmpfs /tmp
         --ro-bind /usr /usr --ro-bind /lib /lib --ro-bind /lib64 /lib64 --ro-bind "$BENCH_TOOLS" "$BENCH_TOOLS"
         --bind "$BENCH_OUT_DIR" "$BENCH_OUT_DIR" --proc /proc --dev /dev "$BENCH_PAYLOAD")
  fi
  # No --respawn-delay: 0.45 refuses "0" there, and 0 is its default.
  # supervise-daemon keeps its state under /run/openrc: a private tmpfs on
  # /run in a mount namespace of its own, so this machine's /run is untouched.
  # shellcheck disable=SC2016  # expanded by that inner sh
  (anchor_env "$1" "$name" ip netns exec "$NS" unshare -m --propagation private sh -c '
    mount -t tmpfs tmpfs /run && mkdir /run/openrc && sd=$1 && shift &&
    RC_SVCNAME=bench exec "$sd" bench --start --respawn-max 0 --respawn-period 1 \
      --pidfile /run/bench.pid -e BENCH_MODE="$BENCH_MODE" -e BENCH_OUT="$BENCH_OUT" "$@"' \
    sh "$SUPERVISE_DAEMON" "${cmd[@]}" >/dev/null 2>&1)
  OPENRC_PID=
  for _ in $(seq 50); do OPENRC_PID=$(ns_pid "$NS" supervise-daemo); [ -n "$OPENRC_PID" ] && break; sleep 0.05; done
}
start_tini() {
  env BENCH_MODE=idle ip netns exec "$NS" tini -s -- "$BENCH_PAYLOAD" & TINI_PID=$!
}

# ---- 1. idle ------------------------------------------------------------------
# A binary linked moments ago sits in the page cache as dirty pages until
# writeback (30 s by default), and smaps counts its mapped text as private
# dirty until then: write it back first, so the figure is the process's own.
sync
start_pisecd idle; start_s6 idle; start_runsv idle; start_openrc idle; start_tini
declare -A PID=([pisecd]=$PISECD_PID [s6-supervise]=$S6_PID [runsv]=$RUNSV_PID
                [supervise-daemon]=$OPENRC_PID [tini]=$TINI_PID)
NAMES=(pisecd s6-supervise runsv supervise-daemon tini)
sleep 0.5
for n in "${NAMES[@]}"; do
  comm=$(cat "/proc/${PID[$n]}/comm" 2>/dev/null || true)
  [ "$comm" = "${n:0:15}" ] || { echo "supervisors: $n did not start (pid ${PID[$n]} is '$comm')" >&2; exit 1; }
done
# pisecd's readiness client arms a 10 s write deadline; Asio does not re-arm
# its timerfd when that timer is cancelled, so it still wakes the loop once.
sleep "${BENCH_SETTLE_SECONDS:-11}"
win=$((SECS / 3))
declare -A WAKE RSS DIRTY
for n in "${NAMES[@]}"; do WAKE[$n]=""; RSS[$n]=""; DIRTY[$n]=""; done
declare -A c0
for n in "${NAMES[@]}"; do c0[$n]=$(ctxsw "${PID[$n]}"); done
for _ in 1 2 3; do
  sleep "$win"
  for n in "${NAMES[@]}"; do
    c=$(ctxsw "${PID[$n]}")
    WAKE[$n]+="$((c - c0[$n])) "; c0[$n]=$c
    RSS[$n]+="$(smaps_kb "${PID[$n]}" Rss) "; DIRTY[$n]+="$(smaps_kb "${PID[$n]}" Private_Dirty) "
  done
done
echo "idle, ${SECS} s in 3 windows of ${win} s, all five side by side; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-26s %-26s %-22s %-22s\n' supervisor "wakeups/${SECS}s (per window)" "RSS KiB" "private dirty KiB"
declare -A WSUM DMED RMED
for n in "${NAMES[@]}"; do
  WSUM[$n]=$(echo "${WAKE[$n]}" | tr ' ' '\n' | awk 'NF {s += $1} END {print s}')
  RMED[$n]=$(echo "${RSS[$n]}" | tr ' ' '\n' | awk NF | stats | cut -d' ' -f1)
  DMED[$n]=$(echo "${DIRTY[$n]}" | tr ' ' '\n' | awk NF | stats | cut -d' ' -f1)
  printf '  %-26s %-26s %-22s %-22s\n' "$n" "${WSUM[$n]} (${WAKE[$n]% })" "${RMED[$n]} (${RSS[$n]% })" "${DMED[$n]} (${DIRTY[$n]% })"
done
summary "idle wakeups over ${SECS} s (aim 0)" "${WSUM[pisecd]}" \
  "s6-supervise ${WSUM[s6-supervise]}, runsv ${WSUM[runsv]}, supervise-daemon ${WSUM[supervise-daemon]}, tini ${WSUM[tini]}" \
  "pisecd − best anchor: $((WSUM[pisecd] - $(printf '%s\n' "${WSUM[s6-supervise]}" "${WSUM[runsv]}" "${WSUM[supervise-daemon]}" "${WSUM[tini]}" | sort -n | head -1)))" \
  "$([ "${WSUM[pisecd]}" -eq 0 ] && echo met || echo "not met")"
summary "idle RSS / private dirty, KiB (aim dirty ≤ s6-supervise)" "${RMED[pisecd]} / ${DMED[pisecd]}" \
  "s6-supervise ${RMED[s6-supervise]} / ${DMED[s6-supervise]}, runsv ${RMED[runsv]} / ${DMED[runsv]}, supervise-daemon ${RMED[supervise-daemon]} / ${DMED[supervise-daemon]}, tini ${RMED[tini]} / ${DMED[tini]}" \
  "dirty vs s6-supervise: $(ratio "${DMED[pisecd]}" "${DMED[s6-supervise]}" 1)×" \
  "$([ "${DMED[pisecd]}" -le "${DMED[s6-supervise]}" ] && echo met || echo "not met")"

# `pisecd status` (client + daemon, one control-socket round trip) against
# s6-svstat (reads the supervise/status file), both against the idle services.
HF=$DIR/status.json
hyperfine -N --warmup 20 --runs "${BENCH_STATUS_RUNS:-300}" --export-json "$HF" \
  -n "pisecd status" "$PISECD status -s $DIR/pisecd.sock" \
  -n "s6-svstat" "env LD_LIBRARY_PATH=$ANCHOR_LIBS $S6_SVSTAT $DIR/s6" >/dev/null
read -r st_p st_pmin st_pmax < <(jq -r '.results[0] | "\(.median * 1000) \(.min * 1000) \(.max * 1000)"' "$HF")
read -r st_s st_smin st_smax < <(jq -r '.results[1] | "\(.median * 1000) \(.min * 1000) \(.max * 1000)"' "$HF")
runs=$(jq '.results[0].times | length' "$HF")
printf 'status round trip, %d runs each (hyperfine -N), median (min–max):\n' "$runs"
printf '  pisecd status: %.2f ms (%.2f–%.2f)\n  s6-svstat:     %.2f ms (%.2f–%.2f)\n' \
  "$st_p" "$st_pmin" "$st_pmax" "$st_s" "$st_smin" "$st_smax"
summary "\`pisecd status\` round trip, ms (aim ≤ 2 median)" \
  "$(printf '%.2f (%.2f–%.2f)' "$st_p" "$st_pmin" "$st_pmax")" \
  "s6-svstat $(printf '%.2f (%.2f–%.2f)' "$st_s" "$st_smin" "$st_smax")" \
  "$(ratio "$st_p" "$st_s")×" "$(awk -v p="$st_p" 'BEGIN {print (p <= 2) ? "met" : "not met"}')"
stop_pisecd; kill_ns; sleep 0.2

# ---- 2. crash loop ------------------------------------------------------------
# crash_run NAME PID SECONDS MAX: until MAX restarts or SECONDS pass; prints
# "restarts cpu_ns" between the first and the last start seen.
crash_run() {
  local name=$1 pid=$2 secs=$3 max=$4 out=$BENCH_OUT_DIR/$1.out l0 l1 t0 cpu0 cpu1
  for _ in $(seq 500); do [ -s "$out" ] && break; sleep 0.02; done
  [ -s "$out" ] || { echo "supervisors: $name never started the payload" >&2; echo "0 0"; return; }
  l0=$(wc -l < "$out"); cpu0=$(cpu_ns "$pid"); t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$secs" ] && [ $(($(wc -l < "$out") - l0)) -lt "$max" ]; do sleep 0.1; done
  cpu1=$(cpu_ns "$pid"); l1=$(wc -l < "$out")
  echo "$((l1 - l0)) $((cpu1 - cpu0))"
}
# latencies FILE: ms from each exit to the next start.
latencies() { awk 'NR > 1 {printf "%.3f\n", ($1 - e) / 1e6} {e = $2}' "$1"; }

rm -f "$BENCH_OUT_DIR"/*.out
start_pisecd crash "[watchdog]
backoff_initial_ms = 0
backoff_max_ms = 0
burst = 1000
burst_window_s = 1"
read -r n_p cpu_p < <(crash_run pisecd "$PISECD_PID" 30 "${BENCH_RESTARTS:-300}")
stop_pisecd; kill_ns
start_openrc crash
read -r n_o cpu_o < <(crash_run openrc "$OPENRC_PID" 30 "${BENCH_RESTARTS:-300}")
kill_ns
start_openrc crash bwrap
read -r n_ob cpu_ob < <(crash_run openrc-bwrap "$OPENRC_PID" 30 "${BENCH_RESTARTS:-300}")
kill_ns
start_s6 crash; start_runsv crash
# Both sleep out their 1 s floor between restarts, so they share the window;
# CPU and restarts are counted from each one's first restart on.
for _ in $(seq 100); do [ -s "$BENCH_OUT_DIR/s6.out" ] && [ -s "$BENCH_OUT_DIR/runsv.out" ] && break; sleep 0.02; done
l0_s=$(wc -l < "$BENCH_OUT_DIR/s6.out"); c0_s=$(cpu_ns "$S6_PID")
l0_r=$(wc -l < "$BENCH_OUT_DIR/runsv.out"); c0_r=$(cpu_ns "$RUNSV_PID")
sleep "${BENCH_FLOOR_SECONDS:-12}"
n_s=$(($(wc -l < "$BENCH_OUT_DIR/s6.out") - l0_s)); cpu_s=$(($(cpu_ns "$S6_PID") - c0_s))
n_r=$(($(wc -l < "$BENCH_OUT_DIR/runsv.out") - l0_r)); cpu_r=$(($(cpu_ns "$RUNSV_PID") - c0_r))
kill_ns

echo "restart after a crash (payload exits 1 at once; backoff 0 where the tool has it); load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-26s %-34s %-10s %s\n' supervisor "latency ms median (min–max, n)" restarts "own CPU per 1,000 restarts"
declare -A LAT LATM CPU
for row in "pisecd:pisecd:$n_p:$cpu_p" "supervise-daemon:openrc:$n_o:$cpu_o" "s6-supervise:s6:$n_s:$cpu_s" "runsv:runsv:$n_r:$cpu_r" \
           "supervise-daemon + bwrap:openrc-bwrap:$n_ob:$cpu_ob"; do
  IFS=: read -r name file n cpu <<<"$row"
  LAT[$name]=$(latencies "$BENCH_OUT_DIR/$file.out" | stats | fmt_stats 1 2)
  LATM[$name]=$(latencies "$BENCH_OUT_DIR/$file.out" | stats | cut -d' ' -f1)
  CPU[$name]=$(awk -v c="$cpu" -v n="$n" 'BEGIN {if (n > 0) printf "%.0f ms", c / n * 1000 / 1e6; else print "n/a"}')
  printf '  %-26s %-34s %-10s %s\n' "$name" "${LAT[$name]}" "$n" "${CPU[$name]}"
done
echo "  (supervise-daemon + bwrap: the payload in bwrap with pisecd's namespaces, no seccomp, no init —"
echo "   what the sandbox alone adds to a restart; not counted as an anchor in the ratios)"
best_lat=$(printf '%s\n' "${LATM[supervise-daemon]}" "${LATM[s6-supervise]}" "${LATM[runsv]}" | sort -g | head -1)
summary "restart after a crash, backoff 0, ms (aim ≤ 20 median, below each anchor)" "${LAT[pisecd]}" \
  "supervise-daemon ${LAT[supervise-daemon]}, s6-supervise ${LAT[s6-supervise]}, runsv ${LAT[runsv]}; for scale, supervise-daemon starting the payload in bwrap with pisecd's namespaces ${LAT[supervise-daemon + bwrap]}" \
  "vs best anchor: $(ratio "${LATM[pisecd]}" "$best_lat")×" \
  "$(awk -v p="${LATM[pisecd]}" -v b="$best_lat" 'BEGIN {print (p <= 20 && p < b) ? "met" : "not met"}')"
cpu_num() { echo "${CPU[$1]% ms}"; }
best_cpu=$(printf '%s\n' "$(cpu_num supervise-daemon)" "$(cpu_num s6-supervise)" "$(cpu_num runsv)" | sort -g | head -1)
summary "supervisor's own CPU per 1,000 restarts (aim below all)" "${CPU[pisecd]}" \
  "supervise-daemon ${CPU[supervise-daemon]}, s6-supervise ${CPU[s6-supervise]}, runsv ${CPU[runsv]}; supervise-daemon + bwrap ${CPU[supervise-daemon + bwrap]}" \
  "vs best anchor: $(ratio "$(cpu_num pisecd)" "$best_cpu")×" \
  "$(awk -v p="$(cpu_num pisecd)" -v b="$best_cpu" 'BEGIN {print (p < b) ? "met" : "not met"}')"
