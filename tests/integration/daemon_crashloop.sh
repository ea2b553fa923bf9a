#!/usr/bin/env bash
# Issue 3, acceptance 2: a payload that exits 1 at once is restarted with
# growing delays, then quarantined after the burst; status JSON shows restarts,
# last_exit and state at every step; `pisecd status` exit codes as pinned.
source "$(dirname "$0")/lib.sh.inc"

BINDS='["/usr", "/lib", "/lib64", "/bin", "/etc", "'$FIXTURES'"]'
write_config "[payload]
command = [\"$FIXTURES/crasher\", \"--after-ms\", \"50\"]
ro_binds = $BINDS
uid = 41001
gid = 41001" "[firewall]
enabled = false
[watchdog]
restart = \"always\"
backoff_initial_ms = 200
backoff_max_ms = 2000
burst = 5
burst_window_s = 60"
start_daemon

# Sample the status while it crash-loops: every sample must be coherent.
samples=$T_DIR/samples
: > "$samples"
end=$((SECONDS + 30))
while [ $SECONDS -le $end ]; do
  rc=0; json=$("$PISECD" status --json -s "$T_SOCK" 2>/dev/null) || rc=$?
  echo "$rc $(echo "$json" | jq -c '[.state, .payload.state, .payload.restarts, .payload.last_exit.code]')" >> "$samples"
  [ "$(echo "$json" | jq -r .payload.state)" = quarantined ] && break
  sleep 0.05
done
echo "distinct samples (exit code, [state, payload, restarts, last exit code]):"
sort -u "$samples" | sort -t, -k3 -n | sed 's/^/  /'

check "payload ends quarantined" test "$(jget .payload.state)" = quarantined
check "daemon state is quarantined" test "$(jget .state)" = quarantined
check "restarts reached burst - 1 (4)" test "$(jget .payload.restarts)" = 4
check "last_exit.code is 1" test "$(jget .payload.last_exit.code)" = 1
check "last_exit.at_ms is set" test "$(jget .payload.last_exit.at_ms)" -gt 0
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
check "pisecd status exits 2 when quarantined" test "$rc" = 2
check "restarts counted up one by one" \
  bash -c "awk '{print \$2}' '$samples' | jq -r '.[2]' | uniq | tr '\n' ' ' | grep -q '^0 1 2 3 4 \$'"
check "backoff samples exit 1 (degraded)" grep -q '^1 \["degraded","backoff"' "$samples"
check "exit 0 exactly when daemon and payload are running" \
  bash -c "! grep -v '^0 \\[\"running\",\"running\"' '$samples' | grep -q '^0 ' && ! grep -q '^[12] \\[\"running\",\"running\"' '$samples'"

# The delays grow: "restarting in N ms" from the daemon's own log lines.
"$PISECD" logs -s "$T_SOCK" -n 200 > "$T_DIR/logs.txt"
delays=$(grep -o 'restarting in [0-9]* ms' "$T_DIR/logs.txt" | awk '{print $3}' | tr '\n' ' ' || true)
echo "restart delays (ms): $delays"
check "four restart delays logged" test "$(wc -w <<<"$delays")" = 4
check "delays never shrink and the last is larger than the first" \
  bash -c "set -- $delays; prev=0; for d; do [ \$d -ge \$prev ] || exit 1; prev=\$d; done; [ \$4 -gt \$1 ]"
check "quarantine is logged with the burst" grep -q '5 exits within 60 s (burst 5): quarantined' "$T_DIR/logs.txt"

# What state means (PRODUCT.md): a restarted payload is degraded until it has
# stayed up healthy_after_s, so a monitor polling every 50 ms never sees exit 0
# between crashes; once the payload has been up that long, it does.
kill -TERM "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true
mkdir -p "$T_DIR/flaky" && chown 41001:41001 "$T_DIR/flaky"
write_config "[payload]
command = [\"$FIXTURES/flaky\", \"$T_DIR/flaky/runs\", \"4\", \"300\"]
ro_binds = $BINDS
rw_paths = [\"$T_DIR/flaky\"]
uid = 41001
gid = 41001" "[firewall]
enabled = false
[watchdog]
backoff_initial_ms = 100
backoff_max_ms = 200
burst = 20
healthy_after_s = 2"
start_daemon
polls=$T_DIR/polls
: > "$polls"
wait_for 10 '.payload.restarts >= 1' || fail "flaky payload never restarted"
end=$((SECONDS + 12))
while [ $SECONDS -le $end ]; do
  rc=0; json=$("$PISECD" status --json -s "$T_SOCK" 2>/dev/null) || rc=$?
  echo "$rc $(echo "$json" | jq -c '[.state, .payload.state, .payload.restarts]') $(date +%s%3N)" >> "$polls"
  [ "$rc" = 0 ] && break
  sleep 0.05
done
echo "flaky payload, status polled every 50 ms from the first restart on: $(wc -l < "$polls") polls"
cut -d' ' -f1,2 "$polls" | sort | uniq -c | sed 's/^/  /'
check "exit 0 appears once the payload stays up" grep -q '^0 ' "$polls"
# The loop stops at the first exit 0: it must come only after the last crash.
check "no exit 0 while it crash-loops: the first one comes after the 4th restart" \
  grep -q '^0 \["running","running",4\]' "$polls"
check "a restarted payload shows degraded while running, before healthy_after_s" \
  grep -q '^1 \["degraded","running",' "$polls"
t_up=$(grep '^1 \["degraded","running",4\]' "$polls" | head -1 | cut -d' ' -f3 || true)
t_ok=$(grep '^0 ' "$polls" | head -1 | cut -d' ' -f3 || true)
echo "last run: degraded from ${t_up:-?} to exit 0 at ${t_ok:-?} (ms)"
check "the last run stayed degraded ~healthy_after_s (>= 1.5 s) before exit 0" \
  test "$(( ${t_ok:-0} - ${t_up:-0} ))" -ge 1500

# Exit 0 while running: a healthy payload in a second daemon.
kill -TERM "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true
write_config "[payload]
command = [\"$FIXTURES/http_payload\", \"--port\", \"18080\"]
ro_binds = $BINDS
uid = 41001
gid = 41001" "[firewall]
enabled = false"
start_daemon
wait_for 10 '.payload.state == "running"' || fail "http payload did not run"
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
check "pisecd status exits 0 when running" test "$rc" = 0
kill -TERM "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null 2>&1 || rc=$?
check "pisecd status exits 3 when the daemon is gone" test "$rc" = 3
finish
