#!/usr/bin/env bash
# Issue 13, fault scenario: SIGKILL of the daemon. Nothing of the payload
# survives — here a payload that keeps forking to the limit when it happens —
# checked by uid, by the namespace's pids and by every pid seen before; and
# the firewall stays exactly as the kernel had it (nft list ruleset before
# and after): the service ruleset stays, and a daemon killed while still
# gating leaves the lockdown ruleset, never an open device.
source "$(dirname "$0")/lib.sh.inc"

UID_P=41353
config() {  # $1: the clock gate's lines
  T_CLOCK_GATE=$1
  write_config "[payload]
command = [\"$FIXTURES/fork_bomb\"]
ro_binds = $T_BINDS
uid = $UID_P
gid = $UID_P
max_processes = 16" "[firewall]
enabled = true"
}

# --- killed while supervising: the service ruleset stays ----------------------
config "enabled = false"
start_daemon
wait_for 15 '.payload.state == "running" and .firewall.mode == "service"' || fail "payload and service ruleset not up"
for _ in $(seq 30); do [ "$(uid_procs $UID_P)" -ge 10 ] && break; sleep 0.1; done
before=$(ns_ruleset)
pids=$({ pgrep -u $UID_P || true; } | tr '\n' ' ')  # none: the check below says so (set -e would not)
echo "payload processes before kill -9: $(wc -w <<<"$pids")"
check "the payload runs many processes" test "$(wc -w <<<"$pids")" -ge 10
check "the kernel holds the service ruleset" grep -q 'redirect to :8080' <<<"$before"
kill -KILL "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true
for _ in $(seq 50); do [ "$(uid_procs $UID_P)" = 0 ] && break; sleep 0.1; done
check "no process of the payload's uid survives" test "$(uid_procs $UID_P)" = 0
alive=0; for p in $pids; do [ -d "/proc/$p" ] && alive=$((alive + 1)); done
check "none of the $(wc -w <<<"$pids") pids seen before is alive" test "$alive" = 0
check "nothing runs in the namespace any more" test "$(ip netns pids "$T_NS" | wc -l)" = 0
after=$(ns_ruleset)
check "the ruleset is unchanged after kill -9" test "$before" = "$after"
[ "$before" = "$after" ] || diff <(echo "$before") <(echo "$after") >&2 || true
check "inbound still drops by default" grep -q 'hook input priority filter; policy drop;' <<<"$after"

# --- killed while gating: the lockdown ruleset stays ----------------------------
# Two SNTP servers that never answer keep the clock gate waiting.
start_sntp 12361 --mode silent
start_sntp 12362 --mode silent
config 'servers = ["127.0.0.1:12361", "127.0.0.1:12362"]
set_clock = false
timeout_s = 60'
start_daemon
wait_for 15 '.state == "gating" and .firewall.mode == "lockdown"' || fail "daemon not gating in lockdown"
before=$(ns_ruleset)
check "the kernel holds the lockdown ruleset (no redirect)" bash -c "! grep -q redirect <<<'$before' && grep -q 'policy drop' <<<'$before'"
kill -KILL "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true
sleep 0.3
after=$(ns_ruleset)
check "the lockdown ruleset is unchanged after kill -9" test "$before" = "$after"
check "the payload never started" test "$(uid_procs $UID_P)" = 0
finish
