#!/usr/bin/env bash
# Issue 8, items 3 and 4: a reload applies as a whole or not at all, and
# nothing cancels a stop.
#  - SIGHUP with a new payload.uid and a firewall change the firewall refuses:
#    the payload keeps running under the old uid, the kernel keeps the old
#    ruleset, status says the reload was rejected and why.
#  - SIGTERM while a TERM-ignoring payload is in its grace period, then SIGHUP
#    with a changed payload: the daemon still exits after the grace period.
source "$(dirname "$0")/lib.sh.inc"

BINDS='["/usr", "/lib", "/lib64", "/bin", "/etc", "'$FIXTURES'"]'
UID_A=41011
UID_B=41012
fw_config() {  # $1: uid, $2: egress list
  write_config "[payload]
command = [\"$FIXTURES/http_payload\", \"--port\", \"8080\"]
ro_binds = $BINDS
uid = $1
gid = $1" "[firewall]
egress = $2"
}

# --- 3: a reload whose ruleset is refused changes nothing ----------------------
fw_config $UID_A '["udp:127.0.0.53:53"]'
start_daemon
wait_for 10 '.payload.state == "running" and .firewall.mode == "service"' || fail "payload did not start"
pid_before=$(jget .payload.pid)
digest_before=$(jget .firewall.digest)
check "the kernel ruleset names the first uid" \
  bash -c "ip netns exec '$T_NS' nft list table inet pisec | grep -q 'meta skuid $UID_A'"

# A host name is no firewall address: the new ruleset cannot be built.
fw_config $UID_B '["tcp:verifier.example:443"]'
kill -HUP "$T_DAEMON_PID"
wait_for 5 '.reload.result == "rejected"' || fail "reload not reported as rejected"
sleep 1  # a wrongly applied payload change would restart it within this second
echo "reload: $(status_json | jq -c .reload)"
check "status names the refused entry" bash -c "$PISECD status --json -s '$T_SOCK' | jq -r .reload.detail | grep -q 'verifier.example'"
check "the payload was not restarted" test "$(jget .payload.pid)" = "$pid_before"
check "payload restarts still 0" test "$(jget .payload.restarts)" = 0
check "the payload still runs as the old uid" \
  bash -c "ps -o uid= -u $UID_A | grep -q . && ! ps -o uid= -u $UID_B | grep -q ."
check "the kernel still has the old ruleset (old uid, same digest)" \
  bash -c "ip netns exec '$T_NS' nft list table inet pisec | grep -q 'meta skuid $UID_A' && [ \"\$($PISECD status --json -s '$T_SOCK' | jq -r .firewall.digest)\" = '$digest_before' ]"
check "firewall still service and verified" test "$(jget '.firewall.mode + "," + (.firewall.verified|tostring)')" = "service,true"
check "the rejection is logged" bash -c "$PISECD logs -s '$T_SOCK' -n 50 | grep -q 'reload rejected'"

# A valid reload with both changes applies both, ruleset first.
fw_config $UID_B '["udp:127.0.0.53:53"]'
kill -HUP "$T_DAEMON_PID"
wait_for 10 ".reload.result == \"applied\" and .payload.state == \"running\" and .payload.pid != $pid_before" ||
  fail "valid reload did not restart the payload"
check "the kernel ruleset now names the new uid" \
  bash -c "ip netns exec '$T_NS' nft list table inet pisec | grep -q 'meta skuid $UID_B' && ! ip netns exec '$T_NS' nft list table inet pisec | grep -q 'meta skuid $UID_A'"
check "the payload runs as the new uid" bash -c "ps -o uid= -u $UID_B | grep -q ."
kill -TERM "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true

# --- 4: a reload after SIGTERM cannot cancel the stop --------------------------
write_config "[payload]
command = [\"$FIXTURES/term_ignorer\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A
stop_grace_ms = 1500" "[firewall]
enabled = false"
start_daemon
wait_for 10 '.payload.state == "running"' || fail "term_ignorer did not start"
t0=$(date +%s%3N)
kill -TERM "$T_DAEMON_PID"
sleep 0.3
check "state is stopping" test "$(jget .state)" = stopping
# A changed payload (other grace) and SIGHUP inside the grace period.
sed -i 's/stop_grace_ms = 1500/stop_grace_ms = 1600/' "$T_DIR/pisecd.toml"
kill -HUP "$T_DAEMON_PID"
sleep 0.2
check "still stopping after the reload" test "$(jget .state)" = stopping
kill -TERM "$T_DAEMON_PID" 2>/dev/null || true  # a second SIGTERM changes nothing either
exited=no
for _ in $(seq 60); do
  if ! kill -0 "$T_DAEMON_PID" 2>/dev/null; then exited=yes; break; fi
  sleep 0.1
done
t1=$(date +%s%3N)
echo "daemon exited: $exited, $((t1 - t0)) ms after SIGTERM (grace 1500 ms)"
check "the daemon exited within grace + 1.5 s" test "$exited" = yes
check "the reload was refused while stopping" grep -q 'reload rejected.*stopping' "$T_DIR/daemon.log"
check "nothing of the payload uid is left" bash -c "! ps -o pid= -u $UID_A | grep -q ."
T_DAEMON_PID=
finish
