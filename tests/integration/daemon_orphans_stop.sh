#!/usr/bin/env bash
# Issue 3, acceptance 3 and 4: 2,000 double-forked orphans leave no zombie and
# are counted; a payload ignoring SIGTERM is SIGKILLed after the grace period;
# after kill -9 of pisecd no payload process survives.
source "$(dirname "$0")/lib.sh.inc"

BINDS='["/usr", "/lib", "/lib64", "/bin", "/etc", "'$FIXTURES'"]'
UID_A=41002
zombies() { ps -eo stat=,user= | awk -v u="$UID_A" '$1 ~ /^Z/ && $2 == u' | wc -l; }

# --- 2,000 orphans ---------------------------------------------------------
write_config "[payload]
command = [\"$FIXTURES/forker\", \"2000\", \"--idle\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A
max_processes = 64" "[firewall]
enabled = false"
start_daemon
wait_for 60 '.reaped_orphans >= 2000' || fail "reaped_orphans did not reach 2000"
echo "reaped_orphans: $(jget .reaped_orphans)"
check "the forker finished making orphans" bash -c "'$PISECD' logs -s '$T_SOCK' -n 50 | grep -q 'forker: made 2000 orphans'"
check "no zombie of the payload's uid on the host (pid namespace included)" test "$(zombies)" = 0
check "the payload is still running" test "$(jget .payload.state)" = running
check "status counts at least 2,000 reaped orphans" test "$(jget .reaped_orphans)" -ge 2000

# --- SIGTERM ignored: SIGKILL after the grace period ------------------------
kill -TERM "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true
write_config "[payload]
command = [\"$FIXTURES/term_ignorer\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A
stop_grace_ms = 1500" "[firewall]
enabled = false"
start_daemon
wait_for 10 '.payload.state == "running"' || fail "term_ignorer did not start"
sleep 0.3
check "payload processes exist before the stop" test "$(pgrep -u $UID_A | wc -l)" -ge 1
start=$(date +%s%N)
kill -TERM "$T_DAEMON_PID"
wait "$T_DAEMON_PID" 2>/dev/null; rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "daemon stopped in ${elapsed_ms} ms (grace 1500 ms), exit $rc"
check "pisecd exits 0 on SIGTERM" test "$rc" = 0
check "it waited the grace period" test "$elapsed_ms" -ge 1400
check "and not much longer" test "$elapsed_ms" -lt 5000
check "SIGKILL was logged" grep -q 'sending SIGKILL' "$T_DIR/daemon.log"
check "no process of the payload's uid is left" test "$(pgrep -u $UID_A | wc -l)" = 0
check "the control socket is removed" test ! -e "$T_SOCK"

# --- kill -9 of pisecd itself ------------------------------------------------
start_daemon
wait_for 10 '.payload.state == "running"' || fail "term_ignorer did not start again"
sleep 0.3
check "payload processes exist before kill -9" test "$(pgrep -u $UID_A | wc -l)" -ge 1
kill -KILL "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true
for _ in $(seq 50); do [ "$(pgrep -u $UID_A | wc -l)" = 0 ] && break; sleep 0.1; done
check "after kill -9 of pisecd no payload process survives" test "$(pgrep -u $UID_A | wc -l)" = 0
finish
