#!/usr/bin/env bash
# Builds the OpenSSL that the armv6 pisecd links: Debian's own source (the orig
# tarball of the newest openssl source package in this machine's suites), configured with only what
# pisecd needs — SHA-2, Ed25519, the DRBG, and a TLS 1.2/1.3 client that
# verifies an ECDSA or RSA certificate chain — for ARMv6 in Thumb mode, at -Os.
# Installed into build/openssl-armv6 (libcrypto.a, libssl.a, headers) with a
# stamp of its inputs; a second run with the same inputs only checks and returns.
#
#   scripts/openssl-armv6.sh            (scripts/setup.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PREFIX=$ROOT/build/openssl-armv6
SRC_DIR=$ROOT/build/openssl-src

log() { printf 'openssl-armv6: %s\n' "$*" >&2; }

CROSS=arm-linux-gnueabi
CFLAGS_ARM="-march=armv6 -mfpu=vfp -mfloat-abi=softfp -mthumb -Os -ffunction-sections -fdata-sections -flto -ffat-lto-objects"
# What is left out. pisecd uses: SHA-256/512 digests, Ed25519 (signify),
# RAND_bytes, base64, and the attestation client's TLS 1.2/1.3 handshake
# (ECDHE over X25519 or P-256/P-384, AES-GCM or ChaCha20-Poly1305, an ECDSA,
# RSA or Ed25519 certificate chain, host name check).
DISABLE=(
  no-shared no-module no-dso no-engine no-legacy no-deprecated no-tests
  no-asm no-ui-console no-autoload-config no-async no-pinshared
  no-ssl3 no-tls1 no-tls1_1 no-dtls no-sctp no-srtp no-dgram
  no-comp no-zlib no-ktls no-nextprotoneg no-ct no-ocsp no-srp no-psk no-ssl-trace
  no-multiblock no-weak-ssl-ciphers
  no-cms no-ts no-cmp no-rfc3779 no-sm2 no-sm3 no-sm4 no-gost no-ec2m
  no-dh no-dsa no-des no-rc2 no-rc4 no-rc5 no-md2 no-md4 no-mdc2 no-idea no-seed no-bf no-cast
  no-camellia no-aria no-whirlpool no-rmd160 no-blake2 no-siphash no-scrypt no-ocb no-siv
  no-cmac no-egd no-afalgeng no-padlockeng no-capieng no-devcryptoeng
  no-fips no-filenames no-sock
)
# Options this OpenSSL version does not know are dropped below, with a note.
# no-asm: OpenSSL's ARM assembler carries ARMv7/NEON paths (built in when
# __ARM_MAX_ARCH__ is 7, chosen at run time) that mark their objects ARMv7;
# Debian's armel libcrypto was plain C but for P-256.
EXTRA=(--openssldir=/etc/ssl -DOPENSSL_SMALL_FOOTPRINT)  # Alpine's CA directory

# --- the source: Debian's orig tarball (scripts/debian-source.sh), kept under build/ ---
tarball=$(scripts/debian-source.sh openssl)
upstream=${tarball##*/openssl_}
upstream=${upstream%.orig.tar.*}

inputs="$upstream|$CROSS|$CFLAGS_ARM|${DISABLE[*]}|${EXTRA[*]}"
if [ -f "$PREFIX/.stamp" ] && [ "$(cat "$PREFIX/.stamp")" = "$inputs" ]; then
  log "up to date ($PREFIX, OpenSSL $upstream)"
  exit 0
fi

# --- configure and build ------------------------------------------------------
rm -rf "$SRC_DIR" "$PREFIX.tmp"
mkdir -p "$SRC_DIR"
tar -xf "$tarball" -C "$SRC_DIR" --strip-components=1
known=()
for opt in "${DISABLE[@]}"; do
  # Keep only the options this Configure knows (its disablables, protocols).
  if grep -qE "\"${opt#no-}\"|qw\(.*\b${opt#no-}\b" "$SRC_DIR/Configure"; then known+=("$opt"); else log "Configure does not know $opt (ignored)"; fi
done
log "configuring OpenSSL $upstream for linux-armv4 (ARMv6, Thumb, -Os)"
# shellcheck disable=SC2086  # CFLAGS_ARM is a word list on purpose
( cd "$SRC_DIR" &&
  ./Configure linux-armv4 --cross-compile-prefix="$CROSS-" --prefix="$PREFIX.tmp" --libdir=lib \
      "${EXTRA[@]}" "${known[@]}" $CFLAGS_ARM >/dev/null )
log "building ($(nproc) jobs, nice 15)"
start=$(date +%s)
( cd "$SRC_DIR" && nice -n 15 make -s -j"$(nproc)" AR="$CROSS-gcc-ar" RANLIB="$CROSS-gcc-ranlib" build_libs >/dev/null && make -s AR="$CROSS-gcc-ar" RANLIB="$CROSS-gcc-ranlib" install_dev >/dev/null )
log "built in $(( $(date +%s) - start )) s"
echo "$inputs" > "$PREFIX.tmp/.stamp"
rm -rf "$PREFIX"
mv "$PREFIX.tmp" "$PREFIX"
rm -rf "$SRC_DIR"
log "ready: $PREFIX (libcrypto.a $(stat -c %s "$PREFIX/lib/libcrypto.a") B, libssl.a $(stat -c %s "$PREFIX/lib/libssl.a") B)"
