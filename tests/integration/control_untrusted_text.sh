#!/usr/bin/env bash
# Issue 8, item 6: bytes from outside (a tampered signature file, payload
# output) never make `pisecd status` look like a dead daemon, and never reach
# the operator's terminal as control sequences.
source "$(dirname "$0")/lib.sh.inc"

UID_A=41008
BINDS='["/usr", "/lib", "/lib64", "/bin", "/etc"]'
# no_bytes FILE PRINTF-ESCAPES: FILE does not contain these raw bytes.
no_bytes() { ! LC_ALL=C grep -q "$(printf '%b' "$2")" "$1"; }
ascii_only() { [ -s "$1" ] && ! LC_ALL=C grep -q '[^ -~]' "$1"; }

# --- a signature file whose algorithm bytes are 0xFF 0xFF: the gate detail quotes them
ROOTDIR=$T_DIR/boot
mkdir -p "$ROOTDIR"
echo hello > "$ROOTDIR/file"
"$PISECD" keygen -p "$T_DIR/release.pub" -s "$T_DIR/release.sec" >/dev/null
"$PISECD" manifest create -o "$ROOTDIR/MANIFEST" --root "$ROOTDIR" file >/dev/null
{ echo "untrusted comment: tampered"; { printf '\377\377'; head -c 72 /dev/zero; } | base64 -w0; echo; } \
  > "$ROOTDIR/MANIFEST.sig"
write_config "[payload]
command = [\"/bin/sleep\", \"600\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A" "[firewall]
enabled = false"
sed -i "/^\[gates.integrity\]/,/^\[/ s|^enabled = false|manifest = \"$ROOTDIR/MANIFEST\"\npublic_key = \"$T_DIR/release.pub\"\nroot = \"$ROOTDIR\"|" \
  "$T_DIR/pisecd.toml"
grep -q "^manifest = " "$T_DIR/pisecd.toml" || { fail "could not enable the integrity gate"; finish; }
start_daemon
for _ in $(seq 100); do
  rc=0; "$PISECD" status --json -s "$T_SOCK" >"$T_DIR/status.json" 2>"$T_DIR/status.err" || rc=$?
  [ "$rc" = 2 ] && break
  sleep 0.1
done
echo "status --json: exit $rc; stderr: $(cat "$T_DIR/status.err")"
check "status --json exits 2 (quarantined), not 3 (unreachable)" test "$rc" = 2
check "its output is valid JSON" jq -s -e 'length == 1 and (.[0] | type) == "object"' "$T_DIR/status.json"
detail=$(jq -r '.gates[] | select(.name == "integrity") | .detail' "$T_DIR/status.json")
echo "integrity detail: $detail"
check "the gate failed on the signature's algorithm" grep -q 'algorithm .* is not supported' <<<"$detail"
check "the 0xFF bytes became U+FFFD" grep -q "$(printf '\357\277\275\357\277\275')" <<<"$detail"
check "status --json is ASCII only" ascii_only "$T_DIR/status.json"
rc=0; "$PISECD" status -s "$T_SOCK" >"$T_DIR/status.txt" 2>&1 || rc=$?
check "status (text) exits 2" test "$rc" = 2
check "status (text) carries no 0xFF byte" no_bytes "$T_DIR/status.txt" '\377'
kill -TERM "$T_DAEMON_PID"; wait "$T_DAEMON_PID" 2>/dev/null || true

# --- a payload that prints terminal controls and invalid UTF-8 --------------------
write_config "[payload]
command = [\"/bin/sh\", \"-c\", \"printf 'bad \\\\377 c1csi \\\\302\\\\2332J c1osc \\\\302\\\\2350;pwned osc \\\\033]0;pwned\\\\007 cls \\\\033[2J end\\\\n'; exec sleep 600\"]
ro_binds = $BINDS
uid = $UID_A
gid = $UID_A" "[firewall]
enabled = false"
: > "$T_DIR/daemon.log"
start_daemon
wait_for 10 '.payload.state == "running"' || fail "payload did not start"
for _ in $(seq 50); do
  "$PISECD" logs -s "$T_SOCK" >"$T_DIR/logs.txt" 2>&1 || true
  grep -q "end" "$T_DIR/logs.txt" && break
  sleep 0.1
done
echo "pisecd logs: $(cat -v "$T_DIR/logs.txt")"
check "the line was captured" grep -q "c1osc" "$T_DIR/logs.txt"
check "no ESC reaches the terminal" no_bytes "$T_DIR/logs.txt" '\033'
check "no BEL reaches the terminal" no_bytes "$T_DIR/logs.txt" '\007'
check "no C1 CSI (U+009B) reaches the terminal" no_bytes "$T_DIR/logs.txt" '\302\233'
check "no C1 OSC (U+009D) reaches the terminal" no_bytes "$T_DIR/logs.txt" '\302\235'
check "no 0xFF reaches the terminal" no_bytes "$T_DIR/logs.txt" '\377'
"$PISECD" logs --json -s "$T_SOCK" >"$T_DIR/logs.json"
check "logs --json is valid JSON" jq -s -e 'length > 0' "$T_DIR/logs.json"
check "logs --json is ASCII only" ascii_only "$T_DIR/logs.json"
finish
