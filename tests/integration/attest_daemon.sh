#!/usr/bin/env bash
# Issue 12, acceptance 1 and 2 through the daemon itself: `pisecd run` with
# [attestation] enabled attests after the service ruleset, over HTTPS to a
# real pisec-verifier with a test CA, before the payload starts when
# required = true. Unchanged → affirming, payload running; changed payload,
# changed ruleset, revoked device, a key not enrolled → contraindicated,
# lockdown, the payload never started; another CA or no verifier → no answer,
# per on_no_answer; SIGUSR1 attests again; required = false runs the payload
# at once and still quarantines on a contraindicated verdict.
# (Replayed reports, expired nonces and nonces of another device cannot come
# from a genuine daemon, which always asks for a fresh one: verifier.sh makes
# them with a simulated device.)
source "$(dirname "$0")/lib.sh.inc"
source "$(dirname "$0")/attest_common.bash"

PORT=18453
DEAD_PORT=18454  # nothing listens there
UID_A=41012
cd "$T_DIR"
make_test_pki
printf '#!/bin/sh\n# the payload, v1\nexec sleep 600\n' >app.sh
chmod 0755 app.sh
make_release app.sh dev stranger revoked
chmod -R a+rX rel
DB=$T_DIR/verifier.db
serve "$PORT" 60 verifier.log

# The daemon runs the release's copy of pisecd: it measures itself through
# /proc/self/exe, and its attestation child is that same file.
PISECD=$T_DIR/rel/usr/sbin/pisecd
BINDS='["/usr", "/lib", "/lib64", "/bin", "/etc", "'$T_DIR/rel'"]'

# config [KEY=VALUE...] — pisecd.toml for the daemon; KEY is one of key (the
# device key's name), id, ca, url, required, no_answer, egress (one more rule).
config() {
  local key=dev id=pi-daemon ca=ca url=https://localhost:$PORT required=true no_answer=quarantine egress=""
  local kv
  for kv in "$@"; do
    case $kv in
      key=*) key=${kv#*=} ;; id=*) id=${kv#*=} ;; ca=*) ca=${kv#*=} ;; url=*) url=${kv#*=} ;;
      required=*) required=${kv#*=} ;; no_answer=*) no_answer=${kv#*=} ;; egress=*) egress=", \"${kv#*=}\"" ;;
      *) echo "config: unknown $kv" >&2; exit 1 ;;
    esac
  done
  write_config "[payload]
command = [\"$T_DIR/rel/srv/app\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A" "[firewall]
egress = [\"tcp:127.0.0.1:$PORT\"$egress]
[attestation]
enabled = true
required = $required
on_no_answer = \"$no_answer\"
verifier_url = \"$url\"
ca_file = \"$T_DIR/$ca.pem\"
device_key = \"$T_DIR/$key.sec\"
device_id = \"$id\"
verifier_key = \"$T_DIR/verifier.pub\"
measure = { kernel = \"$T_DIR/rel/boot/vmlinuz-rpi\", initramfs = \"$T_DIR/rel/boot/initramfs-rpi\", apkovl = \"$T_DIR/rel/pi.apkovl.tar.gz\" }" "manifest = \"$T_DIR/manifest\"
signature = \"$T_DIR/manifest.sig\"
public_key = \"$T_DIR/release.pub\"
root = \"$T_DIR/rel\""
}

config
RULESET=$("$PISECD" firewall render -c pisecd.toml | sha256sum | cut -d' ' -f1)
enroll() {  # enroll ID PUBKEY
  "$VERIFIER" enroll --db "$DB" --device-id "$1" --pubkey "$2" --expect manifest --expect-signature manifest.sig \
    --release-key release.pub --expect-ruleset "$RULESET" --expect-config "$(sha pisecd.toml)" >/dev/null
}
enroll pi-daemon dev.pub

stop_daemon() {
  kill -TERM "$T_DAEMON_PID" 2>/dev/null || true
  wait "$T_DAEMON_PID" 2>/dev/null || true
  T_DAEMON_PID=
}
# never_started — the payload was never spawned in this run.
never_started() {
  [ "$(jget .payload.pid)" = 0 ] && [ "$(jget .payload.last_exit.at_ms)" = 0 ] &&
    ! grep -q 'payload: started' "$T_DIR/daemon.log"
}
# refused WHAT VERDICT PATTERN — the daemon just started ends quarantined
# with this verdict, the lockdown ruleset back, the payload never started.
refused() {
  if ! wait_for 30 '.state == "quarantined"'; then
    fail "$1: not quarantined"
    cat "$T_DIR/daemon.log" >&2
    stop_daemon
    return
  fi
  local st
  st=$(status_json)
  check "$1: verdict $2" test "$(jq -r .attestation.verdict <<<"$st")" = "$2"
  if jq -r '.attestation.differences[], .attestation.detail' <<<"$st" | grep -qF -- "$3"; then
    ok "$1: status names it (\"$3\")"
  else
    fail "$1: status does not name \"$3\": $(jq -c .attestation <<<"$st")"
  fi
  check "$1: the lockdown ruleset is back" test "$(jq -r .firewall.mode <<<"$st")" = lockdown
  check "$1: the payload never started" never_started
  check "$1: the log says why" grep -q "quarantined: attestation: ${2//_/ }" "$T_DIR/daemon.log"
  stop_daemon
}

# ---- 1. unchanged → affirming, payload exposed ----
start_daemon
if wait_for 30 '.attestation.verdict == "affirming" and .payload.state == "running"'; then
  ok "unchanged device → affirming, payload running"
else
  fail "unchanged device did not reach affirming + running"
  cat "$T_DIR/daemon.log" >&2
fi
check "the service ruleset stands" test "$(jget .firewall.mode)" = service
check "the verifier's id is shown" test -n "$(jget .attestation.verifier_id)"
check "pisecd status prints the verdict" bash -c "'$PISECD' status -s '$T_SOCK' | grep -q 'attestation: affirming'"
check "the payload started after the verdict" bash -c \
  "grep -n -e 'attestation: affirming' -e 'payload: started' '$T_DIR/daemon.log' | head -1 | grep -q affirming"
kill -USR1 "$T_DAEMON_PID"
check "SIGUSR1 attests again" wait_for 30 '.attestation.rounds == 2 and .attestation.verdict == "affirming"'
check "the verifier recorded both decisions" test "$(sqlite3 "$DB" \
  "SELECT count(*) FROM decisions WHERE device_id = 'pi-daemon' AND status = 'affirming'" 2>/dev/null || echo 0)" -ge 2
stop_daemon

# ---- 2. refused, each with its own reason ----
cp rel/srv/app app.orig
printf '# tampered\n' >>rel/srv/app
start_daemon
refused "changed payload" contraindicated "payload (srv/app): sha256 expected"
cp app.orig rel/srv/app

config egress=tcp:192.0.2.7:22  # one more egress rule than enrolled
start_daemon
refused "changed ruleset" contraindicated "ruleset: sha256 expected"

config key=stranger
start_daemon
refused "report signed by a key not enrolled" contraindicated "key not enrolled"

config id=pi-revoked key=revoked
enroll pi-revoked revoked.pub
"$VERIFIER" revoke --db "$DB" --device-id pi-revoked >/dev/null
start_daemon
refused "revoked device" contraindicated "revoked"

config ca=other-ca
start_daemon
refused "verifier certificate from another CA" no_answer "certificate verify failed"

config url=https://localhost:$DEAD_PORT
start_daemon
refused "verifier unreachable, on_no_answer = quarantine" no_answer "localhost"
config url=https://localhost:$DEAD_PORT no_answer=continue
start_daemon
if wait_for 30 '.attestation.verdict == "no_answer" and .payload.state == "running"'; then
  ok "verifier unreachable, on_no_answer = continue → the payload runs"
else
  fail "on_no_answer = continue did not run the payload"
fi
check "... and the state says degraded, not running" test "$(jget .state)" = degraded
stop_daemon

# ---- required = false: the payload at once, quarantined by the verdict ----
config required=false
printf '# tampered\n' >>rel/srv/app
start_daemon
if wait_for 30 '.state == "quarantined" and .attestation.verdict == "contraindicated"'; then
  ok "required = false, changed payload → quarantined after the verdict"
else
  fail "required = false: no quarantine"
fi
check "required = false: the payload had started" grep -q 'payload: started' "$T_DIR/daemon.log"
check "required = false: and is stopped now" wait_for 10 '.payload.state == "quarantined" and .payload.pid == 0'
check "required = false: the lockdown ruleset is back" test "$(jget .firewall.mode)" = lockdown
stop_daemon
cp app.orig rel/srv/app

for p in "${SERVERS[@]}"; do { kill "$p" && wait "$p"; } 2>/dev/null || true; done
finish
