#!/usr/bin/env bash
# Issue 13, fault scenario: a fork bomb in the payload. payload.max_processes
# (RLIMIT_NPROC of the payload's uid, bwrap and the init included) holds: the
# uid never has more processes than that; meanwhile the daemon answers
# `pisecd status` quickly, and stopping it leaves none of the bomb behind.
source "$(dirname "$0")/lib.sh.inc"

UID_P=41351
MAXP=24
write_config "[payload]
command = [\"$FIXTURES/fork_bomb\"]
ro_binds = $T_BINDS
uid = $UID_P
gid = $UID_P
max_processes = $MAXP
stop_grace_ms = 500" "[firewall]
enabled = false"
start_daemon
wait_for 10 '.payload.state == "running"' || fail "the fork bomb did not start"
for _ in $(seq 50); do
  "$PISECD" logs -s "$T_SOCK" -n 50 2>/dev/null | grep -q 'fork refused after' && break
  sleep 0.1
done
check "the bomb hit the process limit" bash -c "'$PISECD' logs -s '$T_SOCK' -n 50 | grep -q 'fork_bomb: fork refused after'"

# Three seconds under the bomb: sample the uid's processes and the status round trip.
most=0 slowest=0 bad_rc=0 samples=0
end=$((SECONDS + 3))
while [ $SECONDS -lt $end ]; do
  n=$(uid_procs $UID_P); [ "$n" -gt "$most" ] && most=$n
  status_timed; [ "$T_STATUS_MS" -gt "$slowest" ] && slowest=$T_STATUS_MS
  [ "$T_STATUS_RC" = 0 ] || bad_rc=$T_STATUS_RC
  samples=$((samples + 1))
done
echo "$samples samples: at most $most processes of uid $UID_P (limit $MAXP); slowest status ${slowest} ms"
check "the bomb really forked (>= $((MAXP - 4)) processes)" test "$most" -ge $((MAXP - 4))
check "never more than max_processes ($MAXP)" test "$most" -le $MAXP
check "status exit 0 (running) all along" test "$bad_rc" = 0
check "slowest status round trip under 1000 ms" test "$slowest" -lt 1000
check "the payload was never restarted" test "$(jget .payload.restarts)" = 0
check "daemon state running" test "$(jget .state)" = running

stop_daemon
for _ in $(seq 50); do [ "$(uid_procs $UID_P)" = 0 ] && break; sleep 0.1; done
check "stopping the daemon leaves no process of the bomb" test "$(uid_procs $UID_P)" = 0
finish
