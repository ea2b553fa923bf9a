#!/usr/bin/env bash
# Issue 13, fault scenario: a clock gate facing only liars — SNTP servers on
# the namespace's loopback that answer, but wrongly. Three that disagree with
# each other by hours and days (no two intersect), then two that agree on a
# time before the build floor. Either way the gate fails closed: the device
# stays in lockdown (the kernel holds the lockdown ruleset), the payload never
# starts, and `pisecd status` exits 2. The clock is never set (set_clock = false).
source "$(dirname "$0")/lib.sh.inc"

UID_P=41354
start_sntp 12371 --offset 3600
start_sntp 12372 --offset -5400
start_sntp 12373 --offset 864000
start_sntp 12374 --mode before-floor
start_sntp 12375 --mode before-floor

run_liars() {  # $1: what, $2: the servers list
  T_CLOCK_GATE="servers = $2
min_sources = 2
set_clock = false
timeout_s = 5
request_timeout_ms = 500
retries = 0"
  write_config "$(http_payload_table 8080 "$UID_P")" "[firewall]
enabled = true"
  : > "$T_DIR/daemon.log"
  start_daemon
  wait_for 15 '.state == "quarantined"' || fail "$1: the daemon did not quarantine"
  local detail; detail=$(jget '.gates[] | select(.name == "clock") | .status + ": " + .detail')
  echo "$1: clock gate $detail"
  check "$1: the clock gate failed" test "${detail%%:*}" = failed
  check "$1: integrity and arch never ran" test "$(jget '[.gates[2:][].status] | join(",")')" = "pending,pending"
  check "$1: firewall mode lockdown" test "$(jget .firewall.mode)" = lockdown
  local rules; rules=$(ns_ruleset)
  check "$1: the kernel holds the lockdown ruleset: default drop, no redirect" \
    bash -c "grep -q 'policy drop' <<<'$rules' && ! grep -q redirect <<<'$rules'"
  check "$1: the payload never started" test "$(jget '.payload.state + "," + (.payload.pid|tostring)')" = "stopped,0"
  check "$1: no process of the payload's uid" test "$(uid_procs $UID_P)" = 0
  local rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
  check "$1: pisecd status exits 2" test "$rc" = 2
  check "$1: the console says why" grep -q 'gate clock failed' "$T_DIR/daemon.log"
  stop_daemon
}

run_liars "inconsistent liars" '["127.0.0.1:12371", "127.0.0.1:12372", "127.0.0.1:12373"]'
run_liars "agreeing liars before the floor" '["127.0.0.1:12374", "127.0.0.1:12375"]'
finish
