#!/usr/bin/env bash
# Issue 13, fault scenario: memory pressure. An allocation bomb under
# payload.max_memory = "64M" is stopped by the kernel — cgroup v2 memory.max
# where a memory controller is delegated to the daemon's cgroup, RLIMIT_AS
# otherwise; the console says which — and restarted under the normal
# backoff, while the daemon itself neither dies nor grows.
source "$(dirname "$0")/lib.sh.inc"

UID_P=41358
write_config "[payload]
command = [\"$FIXTURES/alloc_bomb\"]
ro_binds = $T_BINDS
uid = $UID_P
gid = $UID_P
max_memory = \"64M\"" "[firewall]
enabled = false
[watchdog]
backoff_initial_ms = 300
backoff_max_ms = 2000
burst = 100"

# A bad value is refused with file and line, before anything runs.
sed 's/^max_memory = .*/max_memory = "64 MB"/' "$T_DIR/pisecd.toml" > "$T_DIR/bad.toml"
line=$(grep -n '^max_memory' "$T_DIR/bad.toml" | cut -d: -f1 || true)
rc=0; err=$("$PISECD" check-config -c "$T_DIR/bad.toml" 2>&1) || rc=$?
echo "check-config: $err"
check "check-config refuses max_memory = \"64 MB\" with exit 1" test "$rc" = 1
check "naming file, line and key" grep -qF "$T_DIR/bad.toml:$line: payload.max_memory: must be a size such as" <<<"$err"

# `ip netns exec` mounts a fresh /sys for the namespace, without the cgroup
# file systems: mount the v2 hierarchy again in that (private) mount
# namespace, so the daemon sees what the host offers, as it would at boot.
# shellcheck disable=SC2016  # $@ is for the inner shell
T_DAEMON_WRAP=(sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null; exec "$@"' sh)
start_daemon
# The bomb reaches its limit within milliseconds, so a poll may never see it
# "running": a first exit counts as started too.
wait_for 10 '.payload.state == "running" or .payload.restarts >= 1' || fail "alloc_bomb did not start"
rss0=$(daemon_rss_kb)
wait_for 30 '.payload.restarts >= 3' || fail "alloc_bomb was not stopped and restarted 3 times"
rss1=$(daemon_rss_kb)

how=$(grep -o 'max_memory 64 MiB: enforced by [^(]*' "$T_DIR/daemon.log" | head -1 || true)
echo "console: $(grep -m1 'max_memory 64 MiB' "$T_DIR/daemon.log")"
check "the console says how max_memory is enforced" test -n "$how"
case $how in
  *RLIMIT_AS*) echo "NOTE: no delegated cgroup v2 memory controller on this host: the RLIMIT_AS path is what ran" ;;
  *cgroup*) echo "NOTE: the cgroup v2 memory.max path ran" ;;
esac

exit_json=$(status_json | jq -c .payload.last_exit)
echo "last exit: $exit_json"
check "the payload was killed by a signal (SIGABRT after a refused allocation, or SIGKILL from the OOM killer)" \
  jq -e '.signal == 6 or .signal == 9 or .code == 134 or .code == 137' <<<"$exit_json"
"$PISECD" logs -s "$T_SOCK" -n 500 > "$T_DIR/logs.txt"
peak=$(grep -o 'alloc_bomb: [0-9]* MiB allocated' "$T_DIR/logs.txt" | awk '{print $2}' | sort -n | tail -1 || true)
echo "largest allocation reported by the bomb: ${peak:-none} MiB (limit 64)"
check "it got close to the limit (>= 40 MiB)" test "${peak:-0}" -ge 40
check "and never past it" test "${peak:-999}" -lt 64
delays=$(grep -o 'restarting in [0-9]* ms' "$T_DIR/logs.txt" | awk '{print $3}' | tr '\n' ' ' || true)
echo "restart delays (ms): $delays"
check "restarted under the normal backoff: the delays grow" \
  bash -c "set -- $delays; [ \$# -ge 3 ] && [ \$1 -ge 300 ] && [ \$3 -gt \$1 ]"
echo "daemon VmRSS: ${rss0} kB -> ${rss1} kB"
check "the daemon is alive" kill -0 "$T_DAEMON_PID"
check "the daemon did not grow by 1 MiB (${rss0} -> ${rss1} kB)" test $((rss1 - rss0)) -lt 1024
check "the daemon stays small (< 64 MiB)" test "$rss1" -lt 65536
check "status answers: degraded while it crash-loops" test "$(jget .state)" = degraded
stop_daemon
check "no process of the payload's uid is left" test "$(uid_procs $UID_P)" = 0
finish
