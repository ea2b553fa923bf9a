#!/usr/bin/env bash
# Issue 13, fault scenario: 1,000 control connections opened and dropped
# (at once, mid-request, with the answer unread, as followers), 16 held open
# at a time. Afterwards the daemon holds as many descriptors as before, and
# `pisecd status` still answers.
source "$(dirname "$0")/lib.sh.inc"

UID_P=41352
write_config "$(http_payload_table 18080 "$UID_P")" "[firewall]
enabled = false"
start_daemon
wait_for 10 '.payload.state == "running"' || fail "payload did not start"
fds0=$(daemon_fd_count); daemon_fds > "$T_DIR/fds0"

start=$(date +%s%N)
out=$("$FIXTURES/conn_churn" "$T_SOCK" 1000) || fail "conn_churn: $out"
echo "$out in $((($(date +%s%N) - start) / 1000000)) ms"
check "all 1,000 connections were made" grep -q '^conn_churn: 1000 connected, 0 failed$' <<<"$out"

# A status request queued behind the churn is answered after it was accepted;
# the half-sent requests were closed by the client, so nothing waits for the
# request timeout, but give the loop a moment to see the EOFs anyway.
status_timed
fds1=$fds0
for _ in $(seq 20); do fds1=$(daemon_fd_count); [ "$fds1" -le "$fds0" ] && break; done
daemon_fds > "$T_DIR/fds1"
echo "daemon descriptors: $fds0 before, $fds1 after"
check "no descriptor leaked" test "$fds1" = "$fds0"
[ "$fds1" = "$fds0" ] || diff "$T_DIR/fds0" "$T_DIR/fds1" >&2 || true
status_timed
check "status answers (exit 0, running)" test "$T_STATUS_RC" = 0
check "status round trip under 1000 ms ($T_STATUS_MS ms)" test "$T_STATUS_MS" -lt 1000
check "the daemon is alive" kill -0 "$T_DAEMON_PID"
finish
