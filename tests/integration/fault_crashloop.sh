#!/usr/bin/env bash
# Issue 13, fault scenario: a crash loop of 1,000 exits. A payload that exits
# at once, backoff 0 and a burst it never reaches; after a warm-up of 300
# exits, 1,000 more may grow the daemon's VmRSS by at most 64 kB and must
# leave its descriptor count as it was. Prints the restart rate it measured.
source "$(dirname "$0")/lib.sh.inc"

UID_P=41350
WARMUP=300
LOOPS=1000
# The ring is kept small so it is full (and its memory final) after the
# warm-up: a ring still filling up is growth, not a leak.
write_config "[payload]
command = [\"$FIXTURES/crasher\"]
ro_binds = $T_BINDS
uid = $UID_P
gid = $UID_P" "[firewall]
enabled = false
[watchdog]
restart = \"always\"
backoff_initial_ms = 0
backoff_max_ms = 0
burst = 1000
burst_window_s = 1
[logs]
ring_bytes = 16384
stderr = false"
start_daemon

restarts() { jget .payload.restarts; }
wait_for 120 ".payload.restarts >= $WARMUP" || fail "no $WARMUP restarts within 120 s"
rss0=$(daemon_rss_kb); fds0=$(daemon_fd_count); daemon_fds > "$T_DIR/fds0"
r0=$(restarts); t0=$(date +%s%N)
wait_for 240 ".payload.restarts >= $((r0 + LOOPS))" || fail "no $LOOPS further restarts within 240 s"
r1=$(restarts); t1=$(date +%s%N)
rss1=$(daemon_rss_kb); fds1=$(daemon_fd_count); daemon_fds > "$T_DIR/fds1"

ms=$(((t1 - t0) / 1000000))
echo "restarts $r0 -> $r1 in $ms ms: $(( (r1 - r0) * 1000 / (ms > 0 ? ms : 1) )) restarts/s, $(( ms * 1000 / ((r1 - r0) > 0 ? (r1 - r0) : 1) )) us each"
echo "daemon VmRSS ${rss0} kB -> ${rss1} kB ($((rss1 - rss0)) kB); descriptors $fds0 -> $fds1"
check "at least $LOOPS restarts measured" test $((r1 - r0)) -ge $LOOPS
check "VmRSS grew by at most 64 kB over $((r1 - r0)) exits" test $((rss1 - rss0)) -le 64
check "descriptor count unchanged" test "$fds1" = "$fds0"
[ "$fds1" = "$fds0" ] || diff "$T_DIR/fds0" "$T_DIR/fds1" >&2 || true
check "never quarantined" test "$(jget .payload.state)" != quarantined
check "the payload exited 1 each time" test "$(jget .payload.last_exit.code)" = 1
check "the daemon is alive" kill -0 "$T_DAEMON_PID"
check "status still answers" test "$(jget .state)" = degraded
stop_daemon
check "no payload process left" test "$(uid_procs $UID_P)" = 0
finish
