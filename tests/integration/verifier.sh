#!/usr/bin/env bash
# Issue 12: pisec-verifier over HTTPS in a namespace of its own, with a test CA
# made here. Simulated devices (fixtures/attest_device, the protocol's device
# side over TLS) check: unchanged → affirming; changed payload / ruleset →
# contraindicated naming it; replayed report; expired nonce; nonce of another
# device; non-enrolled key; revoked device; a verifier certificate from
# another CA (no answer). Then 200 devices at once: every decision recorded
# exactly once, `log verify` passes, reports/s printed; one byte changed in a
# log row with sqlite3 → `log verify` exits 1 naming the entry.
source "$(dirname "$0")/lib.sh.inc"
source "$(dirname "$0")/attest_common.bash"
DEVICE=$FIXTURES/attest_device
FLEET=200
PORT=18443
PORT_SHORT=18444  # a second server on the same store with a 1 s nonce lifetime
cd "$T_DIR"

# ---- a throwaway CA, the verifier's certificate, a stranger CA; a release ----
make_test_pki
printf 'payload v1\n' >app.txt
make_release app.txt dev dev2 stranger
RULESET=$(printf 'ruleset' | sha256sum | cut -d' ' -f1)
CONFIG=$(printf 'config' | sha256sum | cut -d' ' -f1)

# measurements.json as the device reports them.
measure() {
  jq -n --arg k "$(sha rel/boot/vmlinuz-rpi)" --arg i "$(sha rel/boot/initramfs-rpi)" \
    --arg a "$(sha rel/pi.apkovl.tar.gz)" --arg p "$(sha rel/srv/app)" --arg d "$(sha rel/usr/sbin/pisecd)" \
    --arg r "$1" --arg c "$CONFIG" --arg m "$(sha manifest)" '{
      kernel: {path: "boot/vmlinuz-rpi", sha256: $k}, initramfs: {path: "boot/initramfs-rpi", sha256: $i},
      apkovl: {path: "pi.apkovl.tar.gz", sha256: $a}, payload: {path: "srv/app", sha256: $p},
      pisecd: {path: "usr/sbin/pisecd", sha256: $d}, ruleset: {sha256: $r}, config: {sha256: $c},
      manifest: {sha256: $m}}'
}
measure "$RULESET" >good.json

DB=$T_DIR/verifier.db
enroll() {  # enroll ID PUBKEY
  "$VERIFIER" enroll --db "$DB" --device-id "$1" --pubkey "$2" --expect manifest \
    --expect-signature manifest.sig --release-key release.pub --expect-ruleset "$RULESET" --expect-config "$CONFIG"
}
enroll pi-1 dev.pub >/dev/null
enroll pi-2 dev2.pub >/dev/null
if "$VERIFIER" enroll --db "$DB" --device-id pi-x --pubkey stranger.pub --expect manifest \
  --expect-signature manifest.sig --release-key stranger.pub 2>/dev/null; then
  fail "enroll accepted a manifest not signed by the release key"
else
  ok "enroll refuses a manifest not signed by the release key"
fi

serve "$PORT" 60 "verifier-$PORT.log"
serve "$PORT_SHORT" 1 "verifier-$PORT_SHORT.log"

# device [PORT] ARGS... — one attestation; its JSON line goes to device.out, its exit code is echoed.
device() {
  local port=$PORT
  if [ "$1" = "--port" ]; then port=$2; shift 2; fi
  set +e
  ip netns exec "$T_NS" "$DEVICE" --connect "127.0.0.1:$port" --servername verifier.test --ca ca.pem \
    --verifier-key verifier.pub "$@" >device.out 2>device.err
  local rc=$?
  set -e
  cat device.out device.err
  echo "exit $rc"
}
expect() {  # expect WHAT EXIT PATTERN -- ARGS...
  local what=$1 code=$2 pattern=$3 out
  shift 4
  out=$(device "$@")
  if grep -q "^exit $code\$" <<<"$out" && grep -qF -- "$pattern" <<<"$out"; then
    ok "$what"
  else
    fail "$what: wanted exit $code and \"$pattern\", got: $out"
  fi
}

expect "unchanged device → affirming" 0 '"status":"affirming"' -- \
  --device-id pi-1 --key dev.sec --measurements good.json
printf 'payload v2 (tampered)\n' >rel/srv/app
measure "$RULESET" >changed.json
printf 'payload v1\n' >rel/srv/app
expect "changed payload → contraindicated, naming it" 2 'payload (srv/app): sha256 expected' -- \
  --device-id pi-1 --key dev.sec --measurements changed.json
measure "$(printf 'ruleset opened' | sha256sum | cut -d' ' -f1)" >ruleset.json
expect "changed ruleset → contraindicated, naming it" 2 'ruleset: sha256 expected' -- \
  --device-id pi-1 --key dev.sec --measurements ruleset.json
expect "replayed report → contraindicated (nonce already used)" 2 'nonce already used' -- \
  --device-id pi-1 --key dev.sec --measurements good.json --replay
expect "expired nonce → contraindicated" 2 'nonce expired' -- \
  --port "$PORT_SHORT" --device-id pi-1 --key dev.sec --measurements good.json --delay-ms 2200
expect "nonce issued to another device → contraindicated" 2 'nonce issued to another device (pi-2)' -- \
  --device-id pi-1 --key dev.sec --measurements good.json --nonce-of pi-2
expect "report signed by a non-enrolled key → contraindicated" 2 'key not enrolled' -- \
  --device-id pi-1 --key stranger.sec --measurements good.json
out=$(ip netns exec "$T_NS" "$DEVICE" --connect "127.0.0.1:$PORT" --servername verifier.test --ca other-ca.pem \
  --verifier-key verifier.pub --device-id pi-1 --key dev.sec --measurements good.json 2>&1) && rc=0 || rc=$?
if [ "$rc" = 3 ] && grep -q 'certificate verify failed' <<<"$out"; then
  ok "a verifier certificate from another CA is refused by the device (no answer)"
else
  fail "another CA: exit $rc, $out"
fi
out=$(ip netns exec "$T_NS" "$DEVICE" --connect "127.0.0.1:$PORT" --servername wrong.test --ca ca.pem \
  --verifier-key verifier.pub --device-id pi-1 --key dev.sec --measurements good.json 2>&1) && rc=0 || rc=$?
check "a verifier certificate for another host name is refused by the device" test "$rc" = 3
"$VERIFIER" revoke --db "$DB" --device-id pi-2 >/dev/null
expect "revoked device → contraindicated" 2 'device pi-2 is revoked' -- \
  --device-id pi-2 --key dev2.sec --measurements good.json
"$VERIFIER" list --db "$DB" >list.out
check "list shows the revoked device and the last verdicts" \
  grep -q $'^pi-2\t.*\trevoked\t.*last contraindicated' list.out
body=$(head -c 70000 /dev/zero | tr '\0' 'x')
code=$(ip netns exec "$T_NS" curl -s -o /dev/null -w '%{http_code}' --cacert ca.pem \
  --resolve "verifier.test:$PORT:127.0.0.1" -d "$body" "https://verifier.test:$PORT/v1/evidence" || true)
check "a 70 kB request body is refused (413)" test "$code" = 413
tls() {  # tls VERSION-FLAG — does a handshake with that protocol version succeed?
  ip netns exec "$T_NS" openssl s_client "$1" -cipher 'DEFAULT:@SECLEVEL=0' -CAfile ca.pem \
    -servername verifier.test -connect "127.0.0.1:$PORT" </dev/null >/dev/null 2>&1
}
check "TLS 1.2 is accepted" tls -tls1_2
if tls -tls1_1; then fail "TLS 1.1 was accepted"; else ok "TLS 1.1 is refused"; fi

# ---- the device side as pisecd ships it: `pisecd attest` ----
# It measures itself through /proc/self/exe: run the copy the manifest lists.
"$PISECD" keygen -p cli.pub -s cli.sec >/dev/null
cli_config() {  # cli_config CA_FILE — $T_DIR/pisecd.toml for pisecd attest
  write_config "[payload]
command = [\"$T_DIR/rel/srv/app\"]" "[attestation]
enabled = true
verifier_url = \"https://localhost:$PORT\"
ca_file = \"$T_DIR/$1\"
device_key = \"$T_DIR/cli.sec\"
device_id = \"pi-cli\"
verifier_key = \"$T_DIR/verifier.pub\"
measure = { kernel = \"$T_DIR/rel/boot/vmlinuz-rpi\", initramfs = \"$T_DIR/rel/boot/initramfs-rpi\", apkovl = \"$T_DIR/rel/pi.apkovl.tar.gz\" }" \
    "manifest = \"$T_DIR/manifest\"
signature = \"$T_DIR/manifest.sig\"
public_key = \"$T_DIR/release.pub\"
root = \"$T_DIR/rel\""
}
cli_config ca.pem
CLI_RULESET=$("$PISECD" firewall render -c pisecd.toml | sha256sum | cut -d' ' -f1)
"$VERIFIER" enroll --db "$DB" --device-id pi-cli --pubkey cli.pub --expect manifest \
  --expect-signature manifest.sig --release-key release.pub --expect-ruleset "$CLI_RULESET" \
  --expect-config "$(sha pisecd.toml)" >/dev/null
attest_cli() {  # attest_cli EXIT PATTERN WHAT
  local out rc
  out=$(ip netns exec "$T_NS" rel/usr/sbin/pisecd attest -c "$T_DIR/pisecd.toml" 2>&1) && rc=0 || rc=$?
  if [ "$rc" = "$1" ] && grep -qF -- "$2" <<<"$out"; then ok "$3"; else fail "$3: wanted exit $1 and \"$2\", got exit $rc: $out"; fi
}
attest_cli 0 "attestation: affirming" "pisecd attest: unchanged device → affirming (exit 0)"
# Device-side cost of one attestation (wall time, peak RSS), for the record.
ip netns exec "$T_NS" /usr/bin/time -f 'pisecd attest: %e s wall, %M KiB peak RSS' \
  rel/usr/sbin/pisecd attest -c "$T_DIR/pisecd.toml" 2>&1 >/dev/null | grep '^pisecd attest:' || true
printf 'payload v2 (tampered)\n' >rel/srv/app
attest_cli 2 "payload (srv/app): sha256 expected" "pisecd attest: changed payload → contraindicated (exit 2), naming it"
printf 'payload v1\n' >rel/srv/app
cli_config other-ca.pem
attest_cli 3 "certificate verify failed" "pisecd attest: verifier certificate from another CA → no answer (exit 3)"
cli_config ca.pem

# ---- 200 devices at once ----
before=$(sqlite3 "$DB" 'SELECT count(*) FROM decisions')
mkdir keys
for i in $(seq 0 $((FLEET - 1))); do
  id=$(printf 'dev-%03d' "$i")
  "$PISECD" keygen -p "keys/$id.pub" -s "keys/$id.sec" >/dev/null
  enroll "$id" "keys/$id.pub" >/dev/null
done
ulimit -n 4096
ip netns exec "$T_NS" "$DEVICE" --connect "127.0.0.1:$PORT" --servername verifier.test --ca ca.pem \
  --verifier-key verifier.pub --measurements good.json --fleet "$FLEET" --key-dir keys | tee fleet.out
check "all $FLEET concurrent devices affirmed" grep -q "affirming $FLEET, warning 0, contraindicated 0, no answer 0" fleet.out
after=$(sqlite3 "$DB" 'SELECT count(*) FROM decisions')
check "every fleet decision recorded exactly once ($before + $FLEET = $after)" test "$after" -eq $((before + FLEET))
check "one decision per fleet device" test "$(sqlite3 "$DB" \
  "SELECT count(DISTINCT device_id) FROM decisions WHERE device_id LIKE 'dev-%' AND status = 'affirming'")" -eq "$FLEET"
check "one nonce used per fleet device" test "$(sqlite3 "$DB" \
  "SELECT count(*) FROM nonces WHERE device_id LIKE 'dev-%' AND used = 1")" -eq "$FLEET"
"$VERIFIER" log verify --db "$DB" | tee verify.out
check "log verify passes over $after entries" grep -q "$after entries, chain intact" verify.out

stopped=0
for pid in "${SERVERS[@]}"; do kill -TERM "$pid" && wait "$pid" && stopped=$((stopped + 1)); done
check "both verifiers stop cleanly on SIGTERM" test "$stopped" = 2
attest_cli 3 "no answer" "pisecd attest: verifier unreachable → no answer (exit 3)"

# ---- one byte changed in a log row ----
victim=$((after / 2))
sqlite3 "$DB" "UPDATE decisions SET nonce = substr(nonce, 1, 9) ||
  CASE substr(nonce, 10, 1) WHEN 'a' THEN 'b' ELSE 'a' END || substr(nonce, 11) WHERE id = $victim"
set +e
"$VERIFIER" log verify --db "$DB" >tamper.out
rc=$?
set -e
cat tamper.out
check "log verify exits 1 after one byte of entry $victim changed" test "$rc" = 1
check "log verify names entry $victim" grep -q "^log: entry $victim: edited" tamper.out

finish
