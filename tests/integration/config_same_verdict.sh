#!/usr/bin/env bash
# Issue 8 item 9: check-config, `pisecd run` and SIGHUP reload go through the
# same loader, so each refuses the same bad config with the same
# "file:line: key: reason" message (and the running payload is kept).
source "$(dirname "$0")/lib.sh.inc"

BINDS='["/usr", "/lib", "/lib64", "/bin", "/etc", "'$FIXTURES'"]'
UID_A=41020
PAYLOAD="[payload]
command = [\"$FIXTURES/http_payload\", \"--port\", \"18091\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A"

# config [FIREWALL_LINES] [PAYLOAD_LINES] [TABLES] — the good config plus a change.
# shellcheck disable=SC2120  # every argument is optional: "config" alone is the good config
config() {
  write_config "$PAYLOAD
${2:-}" "[firewall]
enabled = false
${1:-}
[logs]
stderr = false
${3:-}"
}

config
out=$("$PISECD" check-config -c "$T_DIR/pisecd.toml" 2>&1) || true
check "check-config accepts the good config" test "$out" = "$T_DIR/pisecd.toml: OK"
start_daemon
wait_for 10 '.payload.state == "running"' || fail "payload did not start"
pid_before=$(jget .payload.pid)

# names_file_and_line MESSAGE FILE: MESSAGE starts with "FILE:LINE: ".
names_file_and_line() { [[ $1 == "$2":[0-9]*:\ * ]]; }
# has_line LINE TEXT: TEXT has LINE as one whole line.
has_line() { grep -qxF -- "$1" <<<"$2"; }

# try_bad NAME COMMAND... — COMMAND writes the bad config; then all three
# paths must refuse it with check-config's first line.
try_bad() {
  local name=$1; shift
  "$@"
  local rc=0 cc_out cc_msg run_out
  cc_out=$("$PISECD" check-config -c "$T_DIR/pisecd.toml" 2>&1) || rc=$?
  cc_msg=$(printf '%s\n' "$cc_out" | head -n1)
  echo "$name: check-config (exit $rc): $cc_msg"
  check "$name: check-config refuses it" test "$rc" != 0
  check "$name: check-config names file and line" names_file_and_line "$cc_msg" "$T_DIR/pisecd.toml"

  rc=0
  run_out=$(timeout 20 ip netns exec "$T_NS" "$PISECD" run -c "$T_DIR/pisecd.toml" 2>&1) || rc=$?
  echo "$name: pisecd run (exit $rc): $(printf '%s\n' "$run_out" | head -n1)"
  check "$name: pisecd run refuses to start (exit != 0)" test "$rc" != 0 -a "$rc" != 124
  check "$name: pisecd run says the same" has_line "$cc_msg" "$run_out"

  local want="reload rejected, keeping the running configuration: $cc_msg" seen=no
  kill -HUP "$T_DAEMON_PID"
  for _ in $(seq 50); do
    if "$PISECD" logs -s "$T_SOCK" -n 200 | grep -qF -- "$want"; then seen=yes; break; fi
    sleep 0.1
  done
  echo "$name: SIGHUP: $("$PISECD" logs -s "$T_SOCK" -n 200 | grep -E 'reload (rejected|done)' | tail -n1)"
  check "$name: SIGHUP reload rejects it with the same message" test "$seen" = yes
  check "$name: the payload keeps running, same pid" test "$(jget .payload.pid)" = "$pid_before"
}

with_admin_group() { config; sed -i '/^state_dir = /a admin_group = "no-such-group-pisec"' "$T_DIR/pisecd.toml"; }
with_nul_command() {
  local saved=$PAYLOAD
  PAYLOAD=${PAYLOAD/\"$FIXTURES\/http_payload\"/\"\/bin\/sleep\\u0000\/x\"}
  config
  PAYLOAD=$saved
}

try_bad "firewall.egress name" config 'egress = ["tcp:example.com:443"]'
try_bad "probe port 74616" config "" "" '[watchdog]
probe = "http://127.0.0.1:74616/"'
try_bad "probe host a DNS name" config "" "" '[watchdog]
probe = "tcp://health.example:18091"'
try_bad "unknown seccomp_deny" config "" 'seccomp_deny = ["chmood"]'
try_bad "hostname over 64" config "" "hostname = \"$(printf 'h%.0s' $(seq 65))\""
try_bad "unknown admin_group" with_admin_group
try_bad "NUL byte in the command" with_nul_command
grep -F 'command = ' "$T_DIR/pisecd.toml"

# The good config is still accepted by reload: rejection is not the default.
config
kill -HUP "$T_DAEMON_PID"
seen=no
for _ in $(seq 50); do
  if "$PISECD" logs -s "$T_SOCK" -n 200 | grep -qF "reload done"; then seen=yes; break; fi
  sleep 0.1
done
check "the good config reloads" test "$seen" = yes
check "the daemon is still running" test "$(jget .state)" = running
finish
