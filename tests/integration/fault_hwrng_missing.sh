#!/usr/bin/env bash
# Issue 13, fault scenario: the configured hardware RNG is missing. The
# entropy gate fails naming the path and the reason (README, "Entropy and
# clock gates"); with on_failure = quarantine the device stays locked down
# and the payload never starts; with on_failure = continue the failure is
# recorded, the daemon is degraded and the payload runs.
source "$(dirname "$0")/lib.sh.inc"

UID_P=41355
HWRNG=$T_DIR/dev/hwrng  # never created
run_missing() {  # $1: on_failure
  T_ENTROPY_GATE="hwrng = \"$HWRNG\"
timeout_s = 10
on_failure = \"$1\""
  write_config "$(http_payload_table 18080 "$UID_P")" "[firewall]
enabled = false"
  : > "$T_DIR/daemon.log"
  start_daemon
}

run_missing quarantine
wait_for 15 '.state == "quarantined"' || fail "quarantine: the daemon did not quarantine"
detail=$(jget '.gates[0].status + ": " + .gates[0].detail')
echo "entropy gate: $detail"
check "quarantine: the entropy gate failed" test "${detail%%:*}" = failed
check "quarantine: its detail names the path and the reason" \
  grep -qF "hwrng $HWRNG: No such file or directory" <<<"$detail"
check "quarantine: the console says so" grep -qF "hwrng $HWRNG: No such file or directory" "$T_DIR/daemon.log"
check "quarantine: the payload never started" test "$(jget .payload.state)" = stopped
check "quarantine: no process of the payload's uid" test "$(uid_procs $UID_P)" = 0
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
check "quarantine: pisecd status exits 2" test "$rc" = 2
stop_daemon

run_missing continue
wait_for 15 '.payload.state == "running"' || fail "continue: the payload did not start"
check "continue: the entropy gate is recorded as failed" test "$(jget .gates[0].status)" = failed
check "continue: with the same reason" grep -qF "hwrng $HWRNG: No such file or directory" <<<"$(jget .gates[0].detail)"
check "continue: daemon state degraded" test "$(jget .state)" = degraded
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
check "continue: pisecd status exits 1" test "$rc" = 1
stop_daemon
finish
