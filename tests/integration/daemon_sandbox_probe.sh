#!/usr/bin/env bash
# Issue 3, acceptance 5 and 6: what the payload sees inside the sandbox the
# daemon made (read back through `pisecd logs`), and a hung payload restarted
# by the liveness probe.
source "$(dirname "$0")/lib.sh.inc"

BINDS='["/usr", "/lib", "/lib64", "/bin", "/etc", "'$FIXTURES'"]'
UID_A=41003

write_config "[payload]
command = [\"$FIXTURES/escape_probe\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A" "[firewall]
enabled = false
[watchdog]
restart = \"never\""
start_daemon
# `pisecd run` execs itself once, first thing, with glibc's per-thread malloc
# cache off (src/main.cpp): same pid, same name, the tunable in its
# environment. Sanitizer builds replace malloc and skip it.
if [ "${PISEC_SANITIZED:-0}" != 1 ]; then
  comm=$(cat "/proc/$T_DAEMON_PID/comm" 2>/dev/null || true)
  check "the daemon is still named pisecd after its exec (comm '$comm')" test "$comm" = pisecd
  check "the daemon runs with glibc.malloc.tcache_count=0" \
    grep -qzE '^GLIBC_TUNABLES=(.*:)?glibc\.malloc\.tcache_count=0' "/proc/$T_DAEMON_PID/environ"
fi
wait_for 10 '.payload.state == "stopped" and .payload.last_exit.at_ms > 0' || fail "probe did not finish"
"$PISECD" logs -s "$T_SOCK" -n 100 | sed -n 's/^[^ ]* stdout: //p' > "$T_DIR/probe.txt"
sed 's/^/  /' "$T_DIR/probe.txt"
has() { grep -qx "$1" "$T_DIR/probe.txt"; }
check "uid is the payload's, not root" has "uid $UID_A"
check "CapEff is 0" has "CapEff 0000000000000000"
check "NoNewPrivs is 1" has "NoNewPrivs 1"
check "Seccomp is 2 (filter)" has "Seccomp 2"
check "/ is read-only" has "root_writable EROFS"
check "/tmp is a writable tmpfs" has "tmp_writable yes"
check "mount fails with EPERM" has "mount EPERM"
check "unshare -U fails with EPERM" has "unshare_user EPERM"
check "ptrace fails with EPERM" has "ptrace_traceme EPERM"
check "ptrace attach fails with EPERM" has "ptrace_attach_1 EPERM"
check "clock_settime fails with EPERM" has "clock_settime EPERM"
check "no descriptor leaks into the payload (not even the init's report pipe)" has "extra_fds none"
check "the payload exited 0" test "$(jget .payload.last_exit.code)" = 0
kill -TERM "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true

# A payload that accepts TCP and never answers HTTP.
write_config "[payload]
command = [\"$FIXTURES/hung_server\", \"--port\", \"18081\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A
stop_grace_ms = 400" "[firewall]
enabled = false
[watchdog]
probe = \"http://127.0.0.1:18081/\"
probe_interval_ms = 300
probe_timeout_ms = 200
probe_failures = 2
backoff_initial_ms = 100
burst = 10"
start_daemon
wait_for 20 '.payload.restarts >= 2' || fail "the hung payload was not restarted"
"$PISECD" logs -s "$T_SOCK" -n 200 > "$T_DIR/logs.txt"
check "restarted at least twice" test "$(jget .payload.restarts)" -ge 2
check "the probe failure is the logged reason" grep -q 'liveness probe failed 2 times' "$T_DIR/logs.txt"
# A short grace: a stop timer left over from one forced restart would fire
# while the next run is up and SIGKILL it (a stray crash towards the burst).
sleep 1.5
"$PISECD" logs -s "$T_SOCK" -n 200 > "$T_DIR/logs.txt"
check "the hung payload is stopped by SIGTERM, inside its grace" test "$(jget .payload.last_exit.signal)" = 15
check "no run is ever SIGKILLed by a stale stop timer" bash -c "! grep -q 'sending SIGKILL\|killed by signal 9' '$T_DIR/logs.txt'"
check "every restart came from a probe verdict" \
  test "$(grep -c 'liveness probe failed' "$T_DIR/logs.txt")" -ge "$(jget .payload.restarts)"
finish
