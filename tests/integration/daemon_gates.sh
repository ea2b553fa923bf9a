#!/usr/bin/env bash
# Issue 5, acceptance 2 and 6 at the daemon level: a payload modified after
# signing keeps the device in lockdown; gates run in the pinned order with
# their timeouts, `continue` and `quarantine` behave as documented, and the
# console shows one line per gate. The clock is never set (set_clock = false).
source "$(dirname "$0")/lib.sh.inc"

UID_A=41005
ROOTDIR=$T_DIR/boot
mkdir -p "$ROOTDIR/payload"
cp "$FIXTURES/http_payload" "$ROOTDIR/payload/app"
"$PISECD" keygen -p "$T_DIR/release.pub" -s "$T_DIR/release.sec" >/dev/null
"$PISECD" manifest create -o "$ROOTDIR/MANIFEST" --root "$ROOTDIR" payload/app >/dev/null
"$PISECD" manifest sign -s "$T_DIR/release.sec" -m "$ROOTDIR/MANIFEST"

# Two good SNTP servers and one that never answers, on the namespace's loopback.
for port in 12311 12312; do
  ( ip netns exec "$T_NS" "$FIXTURES/sntp_server" --listen 127.0.0.1:$port >/dev/null 2>&1 & )
done
( ip netns exec "$T_NS" "$FIXTURES/sntp_server" --listen 127.0.0.1:12313 --mode silent >/dev/null 2>&1 & )

config() {  # $1: clock servers, $2: clock on_failure, $3: firewall enabled
  cat > "$T_DIR/pisecd.toml" <<CFG
[daemon]
control_socket = "$T_SOCK"
[gates.entropy]
timeout_s = 10
[gates.clock]
servers = $1
min_sources = 2
set_clock = false
timeout_s = 2
on_failure = "$2"
[gates.integrity]
manifest = "$ROOTDIR/MANIFEST"
public_key = "$T_DIR/release.pub"
root = "$ROOTDIR"
[gates.arch]
target = "host"
[firewall]
enabled = $3
[payload]
command = ["$ROOTDIR/payload/app", "--port", "8080"]
ro_binds = ["/usr", "/lib", "/lib64", "/bin", "/etc", "$ROOTDIR/payload"]
uid = $UID_A
gid = $UID_A
CFG
}
GOOD='["127.0.0.1:12311", "127.0.0.1:12312"]'
SILENT='["127.0.0.1:12313", "127.0.0.1:12314"]'
gate_lines() { grep -o '^ \* gate [a-z]*' "$T_DIR/daemon.log" | awk '{print $3}' | tr '\n' ' '; }

# --- all gates pass, with the firewall: the control case -----------------------
config "$GOOD" quarantine true
start_daemon
wait_for 20 '.payload.state == "running"' || fail "signed payload did not start"
check "all four gates passed" test "$(jget '[.gates[].status] | join(",")')" = "passed,passed,passed,passed"
check "gates in the pinned order" test "$(jget '[.gates[].name] | join(",")')" = "entropy,clock,integrity,arch"
check "console: one line per gate, in order" test "$(gate_lines)" = "entropy clock integrity arch "
check "firewall in service mode, verified" test "$(jget '.firewall.mode + "," + (.firewall.verified|tostring)')" = "service,true"
check "the signed release stamp is accepted as a clock floor" test -z "$(grep 'not used as a floor' "$T_DIR/daemon.log")"
stop_daemon

# --- the release stamp edited after signing: no clock floor from it (issue 8) ----
cp "$ROOTDIR/pisec-release" "$T_DIR/stamp.saved"
echo "created 2036-01-01T00:00:00Z" > "$ROOTDIR/pisec-release"
: > "$T_DIR/daemon.log"
config "$GOOD" quarantine true
start_daemon
wait_for 20 '.state == "quarantined"' || fail "daemon did not quarantine on an edited release stamp"
check "clock: the edited stamp is not used as a floor, with the reason" \
  grep -q "clock: manifest time not used as a floor: .*/pisec-release: sha256 mismatch with the signed manifest" "$T_DIR/daemon.log"
check "integrity gate names the stamp" grep -q '^pisec-release: sha256 mismatch' <<<"$(jget '.gates[] | select(.name == "integrity") | .detail')"
stop_daemon
mv "$T_DIR/stamp.saved" "$ROOTDIR/pisec-release"

# --- the payload modified after signing: stays in lockdown (issue 5, line 2) -----
printf 'x' >> "$ROOTDIR/payload/app"
: > "$T_DIR/daemon.log"
config "$GOOD" quarantine true
start_daemon
wait_for 20 '.state == "quarantined"' || fail "daemon did not quarantine"
detail=$(jget '.gates[] | select(.name == "integrity") | .detail')
echo "integrity detail: $detail"
check "integrity gate failed" test "$(jget '.gates[] | select(.name == "integrity") | .status')" = failed
check "its detail names the file" bash -c "echo '$detail' | grep -q 'payload/app: sha256 mismatch'"
check "the arch gate after it never ran" test "$(jget '.gates[] | select(.name == "arch") | .status')" = pending
check "firewall stays in lockdown" test "$(jget .firewall.mode)" = lockdown
check "the kernel has the lockdown ruleset: no redirect" bash -c "! ip netns exec '$T_NS' nft list table inet pisec | grep -q redirect"
check "the payload never started" test "$(jget '.payload.state + "," + (.payload.pid|tostring) + "," + (.payload.restarts|tostring)')" = "stopped,0,0"
check "no process of the payload's uid" test "$(pgrep -u $UID_A | wc -l)" = 0
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
check "pisecd status exits 2" test "$rc" = 2
check "console marks the failed gate" grep -q '^ \* gate integrity: failed .*\[ !! \]' "$T_DIR/daemon.log"
stop_daemon
cp "$FIXTURES/http_payload" "$ROOTDIR/payload/app"

# --- clock fails, on_failure = continue: recorded, next gates run, degraded -------
: > "$T_DIR/daemon.log"
config "$SILENT" continue false
start_daemon
wait_for 20 '.payload.state == "running"' || fail "payload did not start after a clock failure with continue"
clock=$(jget '.gates[] | select(.name == "clock") | .status + " " + (.duration_ms|tostring) + " " + .detail')
echo "clock gate: $clock"
check "clock failed" test "$(echo "$clock" | awk '{print $1}')" = failed
check "within its 2 s timeout" test "$(echo "$clock" | awk '{print $2}')" -le 2500
check "the later gates still ran and passed" test "$(jget '[.gates[2:][].status] | join(",")')" = "passed,passed"
check "daemon state is degraded" test "$(jget .state)" = degraded
rc=0; "$PISECD" status -s "$T_SOCK" >/dev/null || rc=$?
check "pisecd status exits 1 when degraded" test "$rc" = 1
check "console: four gate lines, clock marked warn" grep -q '^ \* gate clock: failed .*\[ warn \]' "$T_DIR/daemon.log"
stop_daemon

# --- clock fails, on_failure = quarantine: later gates stay pending ------------
: > "$T_DIR/daemon.log"
config "$SILENT" quarantine false
start_daemon
wait_for 20 '.state == "quarantined"' || fail "daemon did not quarantine on the clock gate"
check "integrity and arch stay pending" test "$(jget '[.gates[2:][].status] | join(",")')" = "pending,pending"
check "the payload never started" test "$(jget .payload.state)" = stopped
check "console stops after the clock line" test "$(gate_lines)" = "entropy clock "
finish
