#!/usr/bin/env bash
# Issue 5, acceptance line 1: signify interop both ways, and a flipped byte in
# the manifest, the signature or any listed file fails, naming the file.
# Issue 8: GNU and BusyBox sha256sum -c both accept the manifest; symlinked
# directories and small-order keys are refused.
# Needs no root; needs signify-openbsd and busybox (scripts/setup.sh installs them).
set -euo pipefail
PISECD=${PISECD:-$(cd "$(dirname "$0")/../.." && pwd)/build/host/pisecd}
command -v signify-openbsd >/dev/null || { echo "SKIP: signify-openbsd not installed"; exit 77; }
[ -x "$PISECD" ] || { echo "FAIL: pisecd binary not found at $PISECD"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pisec-integrity-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# Runs `pisecd manifest verify` and requires exit 1 with `needle` in its output.
expect_verify_failure() {
  local needle=$1; shift
  local out rc=0
  out=$("$PISECD" manifest verify "$@" 2>&1) || rc=$?
  [ "$rc" -eq 1 ] || fail "verify $* exited $rc (want 1): $out"
  grep -qF -- "$needle" <<<"$out" || fail "verify $* did not say \"$needle\": $out"
}

# flip FILE OFFSET: xor one byte with 0x01, in place.
flip() {
  local byte
  byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf '%b' "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

mkdir -p root/boot root/payload
head -c 3000000 /dev/urandom >root/boot/vmlinuz
head -c 100000 /dev/urandom >root/boot/initramfs
printf 'payload v1\n' >root/payload/app
SOURCE_DATE_EPOCH=1795341600 "$PISECD" manifest create -o MANIFEST --root root boot payload >create.out
grep -qF "MANIFEST: 4 files, release stamp root/pisec-release (created 2026-11-22T10:00:00Z)" create.out ||
  fail "unexpected create output: $(cat create.out)"
[ "$(grep -c '^[0-9a-f]\{64\}  ' MANIFEST)" -eq 4 ] || fail "manifest does not list 4 files: $(cat MANIFEST)"
[ "$(wc -l <MANIFEST)" -eq 4 ] || fail "manifest has lines other than files: $(cat MANIFEST)"
[ "$(head -1 MANIFEST | cut -c67-)" = pisec-release ] || fail "the release stamp is not listed first: $(cat MANIFEST)"
[ "$(cat root/pisec-release)" = "created 2026-11-22T10:00:00Z" ] || fail "release stamp: $(cat root/pisec-release)"
pass "manifest create writes root/pisec-release and lists it with the 3 files, nothing else"

# (d) both sha256sum -c flavours accept the manifest, unmodified, in the root directory.
out=$(cd root && sha256sum --strict -c ../MANIFEST 2>&1) || fail "GNU sha256sum --strict -c rejects the manifest: $out"
pass "GNU sha256sum --strict -c accepts the manifest"
command -v busybox >/dev/null || fail "busybox not installed (scripts/setup.sh installs it)"
out=$(cd root && busybox sha256sum -c ../MANIFEST 2>&1) || fail "busybox sha256sum -c rejects the manifest: $out"
pass "busybox sha256sum -c (Alpine's) accepts the manifest"

# (a) a signify key and a signify signature verify in pisecd.
signify-openbsd -G -n -p s.pub -s s.sec
signify-openbsd -S -s s.sec -m MANIFEST -x MANIFEST.sig
out=$("$PISECD" manifest verify -p s.pub -m MANIFEST -x MANIFEST.sig --root root) ||
  fail "pisecd rejects a signify-made signature: $out"
grep -q "4 files verified" <<<"$out" || fail "unexpected verify output: $out"
pass "signify-openbsd -S signature verifies in pisecd manifest verify"

# (b) a pisecd key and signature verify in signify.
"$PISECD" keygen -p p.pub -s p.sec >/dev/null
[ "$(stat -c %a p.sec)" = 600 ] || fail "secret key mode is $(stat -c %a p.sec), want 600"
"$PISECD" keygen -p p.pub -s other.sec >/dev/null 2>&1 && fail "keygen overwrote an existing public key"
[ ! -e other.sec ] || fail "keygen left other.sec behind after refusing"
"$PISECD" manifest sign -s p.sec -m MANIFEST -x P.sig >/dev/null
head -1 P.sig | grep -qx "untrusted comment: verify with p.pub" || fail "signature comment: $(head -1 P.sig)"
signify-openbsd -V -p p.pub -m MANIFEST -x P.sig >/dev/null || fail "signify-openbsd -V rejects a pisecd signature"
pass "pisecd manifest sign signature verifies with signify-openbsd -V"
# A pisecd secret key also signs in signify, and vice versa the key formats agree.
signify-openbsd -S -s p.sec -m MANIFEST -x PS.sig
cmp -s P.sig PS.sig || fail "signify and pisecd signatures by the same key differ (Ed25519 is deterministic)"
pass "signify-openbsd -S with a pisecd key gives the identical signature"
"$PISECD" manifest sign -s s.sec -m MANIFEST -x S2.sig >/dev/null
cmp -s MANIFEST.sig S2.sig || fail "pisecd signature with a signify key differs from signify's"
pass "pisecd manifest sign with a signify key gives the identical signature"

# Wrong key: both key numbers are named.
expect_verify_failure "this is key" -p p.pub -m MANIFEST -x MANIFEST.sig --root root
pass "a signature by another key is refused, naming both keys"

# (c) flipped bytes.
cp MANIFEST M2 && flip M2 70
expect_verify_failure "signature verification failed: M2" -p s.pub -m M2 -x MANIFEST.sig --root root
pass "a flipped byte in the manifest fails"

cp MANIFEST.sig S.sig && flip S.sig 60
expect_verify_failure "S.sig" -p s.pub -m MANIFEST -x S.sig --root root
pass "a flipped byte in the signature fails"

for f in boot/vmlinuz boot/initramfs payload/app; do
  cp "root/$f" saved && flip "root/$f" 5
  expect_verify_failure "FAILED: $f: sha256 mismatch (expected " -p s.pub -m MANIFEST --root root
  mv saved "root/$f"
  pass "a flipped byte in $f fails, naming it"
done

mv root/payload/app app.bak
expect_verify_failure "FAILED: payload/app: missing" -p s.pub -m MANIFEST --root root
mv app.bak root/payload/app
pass "a missing file fails, naming it"

"$PISECD" manifest verify -p s.pub -m MANIFEST --root root >/dev/null || fail "restored tree no longer verifies"

# A comment added to the manifest and re-signed is refused by the parser, naming the line.
{ echo "# a comment"; cat MANIFEST; } >MC
"$PISECD" manifest sign -s s.sec -m MC -x MC.sig >sign.out 2>&1 && fail "manifest sign accepted a comment line"
grep -qF "MC:1: comment lines are not allowed" sign.out || fail "unexpected sign error: $(cat sign.out)"
pass "a '#' line is refused with <file>:<line>"

# A symlinked directory inside the root is not followed, by create or verify.
ln -s /etc root/sub
out=$("$PISECD" manifest create -o MS --root root sub/hostname 2>&1) && fail "create followed root/sub -> /etc: $out"
grep -qF "root/sub/hostname: symbolic link in path (sub)" <<<"$out" || fail "unexpected create error: $out"
printf '%s  sub/hostname\n' "$(sha256sum </etc/hostname | cut -c1-64)" >MS
signify-openbsd -S -s s.sec -m MS -x MS.sig
expect_verify_failure "FAILED: sub/hostname: symbolic link in path (sub)" -p s.pub -m MS --root root
rm root/sub
pass "root/sub -> /etc: create and verify refuse sub/hostname, naming the link"

# The forgery OpenSSL alone accepts: public key = identity, R = identity, S = 0.
b64() { printf '%b' "$1" | base64 -w0; }
zeros31=$(printf '\\x00%.0s' $(seq 31))
printf 'untrusted comment: identity\n%s\n' "$(b64 "Ed\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\x01$zeros31")" >id.pub
printf 'untrusted comment: forged\n%s\n' "$(b64 "Ed\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\x01$zeros31$zeros31\\x00")" >id.sig
expect_verify_failure "id.pub: public key is a small-order point" -p id.pub -m MANIFEST -x id.sig --root root
pass "a small-order public key with an (R = identity, S = 0) signature is refused"
echo "PASS integrity_signify"
