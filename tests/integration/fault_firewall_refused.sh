#!/usr/bin/env bash
# Issue 13, fault scenario: the kernel refuses the nftables transaction. The
# daemon runs without CAP_NET_ADMIN (dropped from its bounding set by
# setpriv: no test hook in pisecd), so netlink refuses its very first batch,
# the lockdown ruleset. It must go no further: quarantined, the payload never
# started, the reason in status and on the console, and the namespace's
# ruleset untouched (here: empty before and after).
source "$(dirname "$0")/lib.sh.inc"
command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) not installed"; exit 77; }

UID_P=41356
write_config "$(http_payload_table 8080 "$UID_P")" "[firewall]
enabled = true"
before=$(ns_ruleset)
T_DAEMON_WRAP=(setpriv --bounding-set -net_admin --inh-caps -net_admin)
start_daemon
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$T_DAEMON_PID/status")
check "the daemon runs without CAP_NET_ADMIN (CapEff $capeff)" test $(( (0x$capeff >> 12) & 1 )) = 0
start=$(date +%s%N)
wait_for 15 '.state == "quarantined"' || fail "the daemon did not quarantine"
took=$((($(date +%s%N) - start) / 1000000))
echo "quarantined ${took} ms after the control socket appeared; console:"
grep 'lockdown' "$T_DIR/daemon.log" | sed 's/^/  /'
status_json | jq -c '{state, firewall, payload: .payload.state}'
check "the console says the kernel refused the lockdown ruleset, and why" \
  grep -q 'lockdown ruleset failed: kernel refused the ruleset .*Operation not permitted — needs CAP_NET_ADMIN' "$T_DIR/daemon.log"
# Status has no reason field; `pisecd logs` carries the daemon's own lines.
check "pisecd logs says why it is quarantined" \
  bash -c "'$PISECD' logs -s '$T_SOCK' -n 50 | grep -q 'quarantined: lockdown ruleset failed: kernel refused .*needs CAP_NET_ADMIN'"
# The kernel refuses such a batch at once, in one answer: no 5 s netlink timeout.
check "the refusal is known at once (${took} ms < 2000 ms)" test "$took" -lt 2000
check "status: quarantined, firewall not in service" \
  test "$(jget '.state + "," + .firewall.mode')" != "quarantined,service"
check "status: the payload never started" test "$(jget '.payload.state + "," + (.payload.pid|tostring)')" = "stopped,0"
check "no process of the payload's uid" test "$(uid_procs $UID_P)" = 0
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
check "pisecd status exits 2" test "$rc" = 2
after=$(ns_ruleset)
check "the namespace's ruleset is as it was" test "$before" = "$after"
stop_daemon
finish
