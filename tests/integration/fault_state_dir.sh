#!/usr/bin/env bash
# Issue 13, fault scenario: the state directory is full, then read-only.
# state_dir and the entropy gate's seed file live on a 64 KiB tmpfs. Full:
# the seed cannot be refreshed and the gate says so ("No space left on
# device"), read-only: likewise ("Read-only file system"); neither is a
# reason to refuse the boot (README: seed trouble means less credit, not a
# failed gate), and the daemon keeps supervising — its crashing payload is
# restarted again and again — and answers status.
source "$(dirname "$0")/lib.sh.inc"

UID_P=41357
STATE=$T_DIR/state
mkdir -p "$STATE"
mount -t tmpfs -o size=64k,mode=0700 pisec-fault-state "$STATE"
T_EXTRA_CLEANUP="umount -l '$STATE'"
# Fill it up: dd stops at ENOSPC.
dd if=/dev/zero of="$STATE/filler" bs=4k 2>/dev/null || true
check "the state tmpfs is full" test "$(df --output=avail "$STATE" | tail -1 | tr -d ' ')" = 0

run_case() {  # $1: what, $2: the error the seed refresh must report
  T_ENTROPY_GATE="seed_file = \"$STATE/seed\"
timeout_s = 10"
  write_config "[payload]
command = [\"$FIXTURES/crasher\", \"--after-ms\", \"200\"]
ro_binds = $T_BINDS
uid = $UID_P
gid = $UID_P" "[firewall]
enabled = false
[watchdog]
backoff_initial_ms = 100
backoff_max_ms = 100
burst = 1000"
  : > "$T_DIR/daemon.log"
  start_daemon
  wait_for 15 '.payload.restarts >= 1' || fail "$1: the payload did not run and restart"
  local detail; detail=$(jget '.gates[0].status + ": " + .gates[0].detail')
  echo "$1: entropy gate $detail"
  check "$1: the entropy gate passed" test "${detail%%:*}" = passed
  check "$1: its detail says the seed was not refreshed, and why" \
    grep -qF "seed refresh failed: $STATE/seed: cannot write ($2)" <<<"$detail"
  check "$1: the console shows it" grep -qE "seed refresh failed: .*$2" "$T_DIR/daemon.log"
  local r0; r0=$(jget .payload.restarts)
  sleep 1.5
  check "$1: it keeps supervising (restarts $r0 -> $(jget .payload.restarts))" test "$(jget .payload.restarts)" -gt "$r0"
  check "$1: the daemon is alive" kill -0 "$T_DAEMON_PID"
  check "$1: no seed file appeared" test ! -e "$STATE/seed"
  check "$1: no temporary file left behind" test "$(find "$STATE" -mindepth 1 ! -name filler | wc -l)" = 0
  stop_daemon
}

run_case "full" "No space left on device"
rm -f "$STATE/filler"
mount -o remount,ro "$STATE"
run_case "read-only" "Read-only file system"
finish
