#!/usr/bin/env bash
# The supervisor at rest and after a crash, side by side with tini doing the
# same job (keeping one idle process alive):
#   - wakeups of the supervisor over 30 s (context switches, /proc/PID/status)
#   - resident memory (VmRSS)
#   - restart latency after a crash with backoff_initial_ms = 0
# Runs in a throwaway network namespace; nothing here is asserted.
set -euo pipefail
: "${PISECD:?}" "${PISEC_BUILD:?}"
FIX=$PISEC_BUILD/fixtures
SECS=${BENCH_IDLE_SECONDS:-30}
NS=pisec-bench-daemon-$$
DIR=$(mktemp -d /tmp/pisec-bench.XXXXXX); chmod 0755 "$DIR"
cleanup() {
  set +e
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null; rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up

ctxsw() { awk '/ctxt_switches/ {s += $2} END {print s}' "/proc/$1/status"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
config() {  # $1: command array, $2: extra TOML
  cat > "$DIR/pisecd.toml" <<CFG
[daemon]
control_socket = "$DIR/control.sock"
[gates.entropy]
enabled = false
[gates.clock]
enabled = false
[gates.integrity]
enabled = false
[gates.arch]
enabled = false
[firewall]
enabled = false
[payload]
command = $1
ro_binds = ["/usr", "/lib", "/lib64", "/bin", "/etc", "$FIX"]
uid = 41900
gid = 41900
[logs]
stderr = false
$2
CFG
}

# --- idle: pisecd supervising an idle HTTP payload, no probe, no hw watchdog ----
config "[\"$FIX/http_payload\", \"--port\", \"18090\"]" ""
ip netns exec "$NS" "$PISECD" run -c "$DIR/pisecd.toml" >/dev/null 2>&1 &
daemon=$!
for _ in $(seq 100); do "$PISECD" status -s "$DIR/control.sock" >/dev/null 2>&1 && break; sleep 0.1; done
# Settle past the readiness client's 10 s write deadline: Asio does not re-arm
# its timerfd when a timer is cancelled, so that expiry still wakes the loop
# once. After that an idle loop waits at most Asio's cap of 5 minutes.
sleep "${BENCH_SETTLE_SECONDS:-11}"
before=$(ctxsw $daemon); sleep "$SECS"; after=$(ctxsw $daemon)
pisecd_wakeups=$((after - before)); pisecd_rss=$(rss_kb $daemon)
kill -TERM $daemon; wait $daemon 2>/dev/null || true

# --- idle: tini keeping an idle process alive --------------------------------
ip netns exec "$NS" tini -s -- sleep $((SECS + 10)) &
tpid=$!
sleep 1
tini_pid=$(pgrep -n -x tini)
before=$(ctxsw "$tini_pid"); sleep "$SECS"; after=$(ctxsw "$tini_pid")
tini_wakeups=$((after - before)); tini_rss=$(rss_kb "$tini_pid")
kill -TERM "$tini_pid" 2>/dev/null; wait "$tpid" 2>/dev/null || true

echo "idle wakeups over ${SECS} s: pisecd $pisecd_wakeups, tini $tini_wakeups"
echo "idle RSS: pisecd ${pisecd_rss} KiB (dynamic host build), tini ${tini_rss} KiB"
awk -v p="$pisecd_rss" -v t="$tini_rss" 'BEGIN {printf "RSS ratio pisecd/tini: %.1f\n", p / t}'

# --- restart latency: a payload that exits 1 at once, backoff 0 ---------------
config "[\"$FIX/crasher\"]" "[watchdog]
backoff_initial_ms = 0
backoff_max_ms = 0
burst = 21
burst_window_s = 60"
ip netns exec "$NS" "$PISECD" run -c "$DIR/pisecd.toml" >/dev/null 2>&1 &
daemon=$!
for _ in $(seq 200); do
  st=$("$PISECD" status --json -s "$DIR/control.sock" 2>/dev/null | jq -r .payload.state 2>/dev/null || true)
  [ "$st" = quarantined ] && break; sleep 0.1
done
"$PISECD" logs --json -s "$DIR/control.sock" -n 500 > "$DIR/logs.json"
kill -TERM $daemon; wait $daemon 2>/dev/null || true
# From each "exited ..." to the next "started": the daemon's own timestamps.
jq -r 'select(.stream == "pisecd") | "\(.ts_ms) \(.line)"' "$DIR/logs.json" | awk '
  /payload: exited/ {t = $1}
  /payload: started/ && t {d = $1 - t; n++; sum += d; if (d > max) max = d; t = 0}
  END {if (n) printf "restart latency after a crash (backoff 0): mean %.1f ms, max %d ms over %d restarts\n", sum / n, max, n}'
