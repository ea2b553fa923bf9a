#!/usr/bin/env bash
# Acceptance 4, 5 and 6 of the firewall: `nft list table` shows what
# `pisecd firewall render` prints, rule for rule; 100 re-applies leave exactly
# one table and no leaked objects; an invalid batch is reported and leaves the
# previous ruleset in force; a host table is never touched.
NAME=ruleset
source "$(dirname "$0")/firewall_common.bash"
make_namespaces

# --- 6 (set-up): a host table that predates pisecd ---------------------------
in_dev nft -f - <<'NFT'
table inet hostfw {
	chain input {
		type filter hook input priority 10; policy accept;
		tcp dport 2222 counter accept
	}
}
table ip legacy {
	chain output {
		type filter hook output priority 5; policy accept;
	}
}
NFT
in_dev nft list table inet hostfw >"$TMP/hostfw.before"
in_dev nft list table ip legacy >"$TMP/legacy.before"

# --- 4. render == nft list, for several configurations ------------------------
A=$TMP/a.toml B=$TMP/b.toml
write_config "$A"
write_config "$B" 'table = "pisec"' 'public_port = 8000' 'app_port = 8081' \
  'egress = ["tcp:192.0.2.10:443", "udp:[2001:db8::1]:9999", "tcp:2001:db8::/32:443"]' \
  'inbound = ["tcp:22:198.51.100.0/24", "udp:5353", "tcp:2022:2001:db8:1::/64"]' \
  'resolvers = ["192.0.2.53", "2001:db8::53"]'
for cfg in "$A" "$B"; do
  for mode in "" "--lockdown"; do
    in_dev "$PISECD" firewall apply -c "$cfg" $mode >/dev/null || fail "apply $cfg $mode failed"
    same_as_render "$cfg" $mode || fail "nft list differs from pisecd firewall render ($(basename "$cfg") $mode)"
    in_dev "$PISECD" firewall verify -c "$cfg" $mode >/dev/null || fail "verify after apply failed ($cfg $mode)"
  done
done
pass "nft list table inet pisec matches the render, rule for rule (2 configs x service/lockdown)"
for cfg in "$A" "$B"; do
  for mode in "" "--lockdown"; do
    "$PISECD" firewall render -c "$cfg" $mode >"$TMP/render.nft"
    in_dev nft -c -f "$TMP/render.nft" || fail "nft cannot read pisecd's render ($(basename "$cfg") $mode)"
  done
done
pass "the render is valid nft input (nft -c -f)"

# verify notices a change made behind pisecd's back.
in_dev nft add rule inet pisec input tcp dport 4444 accept
in_dev "$PISECD" firewall verify -c "$B" --lockdown >"$TMP/verify.out" 2>&1 && fail "verify accepted a tampered table"
grep -q "unexpected rule" "$TMP/verify.out" || fail "verify did not name the extra rule: $(cat "$TMP/verify.out")"
pass "verify reports a rule added behind its back"

# --- 5. re-apply 100 times -----------------------------------------------------
for i in $(seq 100); do
  in_dev "$PISECD" firewall apply -c "$A" >/dev/null || fail "re-apply #$i failed"
done
tables=$(in_dev nft list tables | grep -c 'table inet pisec$')
[ "$tables" -eq 1 ] || fail "after 100 re-applies there are $tables pisec tables"
same_as_render "$A" || fail "after 100 re-applies the table has more or other objects than the render"
count_objects() { in_dev nft -a list table inet pisec | grep -cE '^\s+(set|chain) |# handle'; }
n=$(count_objects)
in_dev "$PISECD" firewall apply -c "$A" >/dev/null
[ "$(count_objects)" -eq "$n" ] || fail "object count changes on re-apply ($n -> $(count_objects))"
pass "100 re-applies: one table, $n objects, nothing leaked"

# --- 5. invalid batch: reported, previous ruleset intact -----------------------
in_dev nft list table inet pisec | sed -E 's/ packets [0-9]+ bytes [0-9]+//' >"$TMP/before.invalid"
# fw_bad_batch sends config B's whole batch (different from A, in force now)
# plus, last, one rule the kernel refuses, through pisecd's own socket code.
BAD_BATCH=$PISEC_BUILD/fixtures/fw_bad_batch
[ -x "$BAD_BATCH" ] || fail "missing fixture $BAD_BATCH"
rc=0
in_dev "$BAD_BATCH" "$B" >"$TMP/invalid.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "an invalid batch was reported as applied: $(cat "$TMP/invalid.out")"
[ "$rc" -eq 1 ] || fail "fw_bad_batch could not run the test (rc $rc): $(cat "$TMP/invalid.out")"
grep -q "previous ruleset stays in force" "$TMP/invalid.out" || fail "failure message unclear: $(cat "$TMP/invalid.out")"
grep -q "pisec-test-missing-chain" "$TMP/invalid.out" || fail "failure does not name the refused object: $(cat "$TMP/invalid.out")"
in_dev nft list table inet pisec | sed -E 's/ packets [0-9]+ bytes [0-9]+//' >"$TMP/after.invalid"
diff -u "$TMP/before.invalid" "$TMP/after.invalid" || fail "the invalid batch changed the ruleset"
in_dev "$PISECD" firewall verify -c "$A" >/dev/null || fail "previous ruleset no longer verifies"
pass "invalid batch reported ($(head -c 160 "$TMP/invalid.out")...) and the previous ruleset is intact"
in_dev "$PISECD" firewall apply -c "$B" --test-invalid-batch >/dev/null 2>&1 && fail "pisecd still accepts --test-invalid-batch"
pass "the test hook is not part of pisecd (--test-invalid-batch is refused)"

# --- 6. host tables untouched --------------------------------------------------
in_dev nft list table inet hostfw | diff -u "$TMP/hostfw.before" - || fail "host table inet hostfw changed"
in_dev nft list table ip legacy | diff -u "$TMP/legacy.before" - || fail "host table ip legacy changed"
[ "$(in_dev nft list tables | wc -l)" -eq 3 ] || fail "unexpected tables: $(in_dev nft list tables)"
pass "host tables inet hostfw and ip legacy are unchanged"
echo "firewall_ruleset: all checks passed"
