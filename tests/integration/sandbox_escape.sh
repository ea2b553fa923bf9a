#!/usr/bin/env bash
# The payload sandbox, end to end through `pisecd sandbox-run` (the same spawn
# path the daemon uses):
#  - escape probe: a non-root uid, CapEff 0, NoNewPrivs 1, Seccomp 2, / read-only,
#    mount / unshare(CLONE_NEWUSER) / ptrace / clock_settime -> EPERM;
#  - SIGTERM reaches the app through bwrap and our init;
#  - a SIGTERM ignorer is SIGKILLed after the grace period;
#  - kill -9 of the spawning process leaves no payload process behind;
#  - 2,000 double-forked orphans leave no zombie (init reaps in the namespace).
# Everything runs in a network namespace of its own (no network is needed).
set -euo pipefail

[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root"; exit 77; }
command -v bwrap >/dev/null || { echo "SKIP: bwrap not installed"; exit 77; }
PISECD=${PISECD:-build/host/pisecd}
BUILD=${PISEC_BUILD:-build/host}
FIX=$(realpath "$BUILD/fixtures")
PISECD=$(realpath "$PISECD")
NS=pisec-sandbox-$$
# A uid of our own (it needs no passwd entry): other tests' payloads never match.
TUID=$(( 40000 + $$ % 20000 ))
WORK=$(mktemp -d /tmp/pisec-sandbox.XXXXXX)
chmod 755 "$WORK"

cleanup() {
  # Our own runs only: processes of this test's network namespace.
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n ${KEEP_WORK:-} ]] && trap 'ip netns del "$NS"' EXIT
ip netns add "$NS"
# Not a function for background runs: $! must be the pisecd itself.
in_ns() { ip netns exec "$NS" "$@"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# The host's user-namespace support decides whether the unprivileged bwrap can run.
if [[ -r /proc/sys/kernel/unprivileged_userns_clone && $(cat /proc/sys/kernel/unprivileged_userns_clone) == 0 ]]; then
  fail "kernel.unprivileged_userns_clone = 0: the unprivileged bwrap cannot make its user namespace"
fi
[[ $(cat /proc/sys/user/max_user_namespaces) -gt 0 ]] ||
  fail "user.max_user_namespaces = 0: the unprivileged bwrap cannot make its user namespace"

# Library directories the dynamically linked host pisecd (the init) needs.
LIBS='"/usr", "/lib", "/bin", "/etc"'
[[ -e /lib64 ]] && LIBS="$LIBS, \"/lib64\""

write_config() {  # name, command array, extra payload lines
  cat >"$WORK/$1.toml" <<EOF
[gates.clock]
enabled = false
[gates.integrity]
enabled = false
[payload]
command = $2
ro_binds = [$LIBS, "$FIX"]
uid = $TUID
gid = $TUID
stop_grace_ms = 1000
$3
EOF
}

payload_procs() {  # processes of the test uid running one of our fixtures / init
  ps -u "$TUID" -o pid=,stat=,comm= 2>/dev/null | awk -v re="$1" '$3 ~ re' || true
}

# --- 1. escape probe -----------------------------------------------------------
write_config probe "[\"$FIX/escape_probe\"]" ""
in_ns "$PISECD" sandbox-run -c "$WORK/probe.toml" >"$WORK/probe.out" 2>"$WORK/probe.err" ||
  { cat "$WORK/probe.err" >&2; fail "sandbox-run of the escape probe failed"; }
cat "$WORK/probe.out"
expect() {  # key, wanted value
  local got
  got=$(awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "$WORK/probe.out")
  [[ "$got" == "$2" ]] || fail "escape probe: $1 is \"$got\", expected \"$2\""
  pass "inside the sandbox: $1 = $2"
}
expect uid "$TUID"
expect gid "$TUID"
expect CapEff 0000000000000000
expect NoNewPrivs 1
expect Seccomp 2
expect root_writable EROFS
expect tmp_writable yes
expect mount EPERM
expect unshare_user EPERM
expect ptrace_traceme EPERM
expect ptrace_attach_1 EPERM
expect clock_settime EPERM
expect extra_fds none
expect hostname payload

# --- 2. SIGTERM reaches the app ---------------------------------------------------
# /bin/sleep dies of SIGTERM at once: the run ends with 143 well inside the grace.
write_config sleeper '["/bin/sleep", "600"]' "stop_grace_ms = 20000"
sed -i '/^stop_grace_ms = 1000$/d' "$WORK/sleeper.toml"
ip netns exec "$NS" "$PISECD" sandbox-run -c "$WORK/sleeper.toml" >"$WORK/sleeper.out" 2>&1 &
runner=$!
for _ in $(seq 50); do [[ -n $(payload_procs 'sleep') ]] && break; sleep 0.1; done
[[ -n $(payload_procs 'sleep') ]] || { cat "$WORK/sleeper.out"; fail "sleep payload did not start"; }
start=$(date +%s%N)
kill -TERM "$runner"
rc=0; wait "$runner" || rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q 'payload killed by signal 15' "$WORK/sleeper.out" ||
  { cat "$WORK/sleeper.out"; fail "SIGTERM did not reach the app (rc $rc after ${elapsed_ms} ms)"; }
[[ $elapsed_ms -lt 15000 ]] || fail "SIGTERM took ${elapsed_ms} ms: the grace period expired instead"
pass "SIGTERM reached the app through bwrap and init (exit $rc)"

# --- 3. SIGTERM ignorer: SIGKILL after the grace period -----------------------------
write_config ignorer "[\"$FIX/term_ignorer\"]" ""
ip netns exec "$NS" "$PISECD" sandbox-run -c "$WORK/ignorer.toml" >"$WORK/ignorer.out" 2>&1 &
runner=$!
for _ in $(seq 50); do grep -q ready "$WORK/ignorer.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/ignorer.out" || { cat "$WORK/ignorer.out"; fail "term_ignorer did not start"; }
kill -TERM "$runner"
rc=0; wait "$runner" || rc=$?
grep -q 'payload killed by signal 9' "$WORK/ignorer.out" ||
  { cat "$WORK/ignorer.out"; fail "term_ignorer was not SIGKILLed (rc $rc)"; }
[[ -z $(payload_procs 'term_ignorer|init|bwrap') ]] || fail "processes left: $(payload_procs 'term_ignorer|init|bwrap')"
pass "SIGTERM ignorer SIGKILLed after the 1000 ms grace, nothing left"

# --- 4. kill -9 of the spawning process leaves nothing ---------------------------------
ip netns exec "$NS" "$PISECD" sandbox-run -c "$WORK/ignorer.toml" >"$WORK/orphan.out" 2>&1 &
runner=$!
for _ in $(seq 50); do grep -q ready "$WORK/orphan.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/orphan.out" || { cat "$WORK/orphan.out"; fail "term_ignorer did not start"; }
# The spawning process is the pisecd under `ip netns exec` (same pid: it execs).
kill -9 "$runner"
wait "$runner" 2>/dev/null || true
for _ in $(seq 50); do [[ -z $(payload_procs 'term_ignorer|init|bwrap') ]] && break; sleep 0.1; done
left=$(payload_procs 'term_ignorer|init|bwrap')
[[ -z "$left" ]] || fail "after kill -9 of the parent these survive: $left"
pass "kill -9 of the parent: no payload process survives"

# --- 5. 2,000 double-forked orphans, no zombie ------------------------------------------
write_config forker "[\"$FIX/forker\", \"2000\", \"--idle\"]" "max_processes = 256"
ip netns exec "$NS" "$PISECD" sandbox-run -c "$WORK/forker.toml" >"$WORK/forker.out" 2>&1 &
runner=$!
for _ in $(seq 300); do grep -q 'made 2000 orphans' "$WORK/forker.out" 2>/dev/null && break; sleep 0.1; done
grep -q 'made 2000 orphans' "$WORK/forker.out" || { cat "$WORK/forker.out"; fail "forker did not finish"; }
sleep 0.5  # the last orphans' exits
zombies=$(ps -eo pid=,stat=,comm= | awk '$2 ~ /^Z/ && $3 == "forker"' || true)
[[ -z "$zombies" ]] || fail "zombies after 2,000 orphans: $zombies"
[[ -n $(payload_procs 'forker') ]] || fail "forker should still be idling"
pass "2,000 orphans reaped inside the sandbox, no Z process on the host"
kill -TERM "$runner"
wait "$runner" || true
[[ -z $(payload_procs 'forker|init|bwrap') ]] || fail "forker sandbox left processes"

echo "sandbox_escape: all checks passed"
