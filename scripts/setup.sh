#!/usr/bin/env bash
# Installs everything pisecd needs to build and test on Debian bookworm, and
# assembles the armel sysroot for the ARMv6 cross build under build/.
# Idempotent: a second run only checks and returns. --host: the host's part only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SYSROOT=$ROOT/build/sysroot-armel
STAMP_VERSION=6

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

HOST_PACKAGES=(
  build-essential cmake ninja-build pkg-config git file
  g++-arm-linux-gnueabi binutils-arm-linux-gnueabi   # ARMv6 cross build (armel ABI)
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross      # only for the ARMv7 elfcheck fixture
                                                     # (without recommends the compiler has no libc headers)
  qemu-user-static                                   # runs ARM binaries as an ARM1176
  golang-go                                          # Go GOARM fixtures for elfcheck
  bubblewrap nftables iproute2 procps psmisc curl    # the real components the tests start
  signify-openbsd hyperfine tini                     # cross-checks and benchmarks
  jq python3 util-linux time                         # tests: status JSON, socket floods, setpriv, peak RSS
  busybox                                            # Alpine's sha256sum -c, for the manifest cross-check
  shellcheck                                         # lint.shellcheck: every shell script
  clang libclang-rt-14-dev llvm                      # scripts/fuzz.sh: libFuzzer (libclang_rt.fuzzer), llvm-symbolizer
  scdoc man-db groff-base bsdextrautils              # man pages: build (scdoc), render check (man, groff, col)
  qemu-system-arm mtools fdisk dosfstools cpio       # the emulated Pi 1: SD card image (mtools, sfdisk), initramfs, raspi1ap
  libseccomp-dev libcap-dev libnftnl-dev libmnl-dev libboost1.74-dev libssl-dev
  libc-ares-dev libre2-dev catch2 libtomlplusplus-dev nlohmann-json3-dev
  libsqlite3-dev sqlite3 openssl                     # pisec-verifier: its store, the log-tamper test, the test CA
  unicode-data                                       # RE2's Unicode tables, built from Debian's source for armv6
  chromium fonts-dejavu-core                         # verifier_fleet: the fleet page rendered headless (DOM, screenshot)
)
# armel (ARMv5TE-baseline) -dev packages unpacked into the sysroot; static
# archives only are linked. Runtime packages carry nothing we link statically.
# OpenSSL and RE2 are not among them: scripts/openssl-armv6.sh and
# scripts/re2-armv6.sh build smaller ones from Debian's source (at the end).
ARMEL_PACKAGES=(libseccomp-dev libcap-dev libnftnl-dev libc-ares-dev)
# bookworm's libmnl-dev has no libmnl.a: the trixie package does.
TRIXIE_ARMEL_PACKAGES=(libmnl-dev)

missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Every cross compiler the tests use must build a hello world: a missing
# piece (headers, libc) fails here with its name, not deep inside a test.
check_compiler() {
  local cc=$1 flags=$2 hint=$3 probe
  probe=$(mktemp -d)
  printf '#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n' >"$probe/t.c"
  # shellcheck disable=SC2086  # flags is a word list on purpose
  if ! "$cc" $flags -o "$probe/t" "$probe/t.c" 2>"$probe/err"; then
    log "$cc cannot build a C program with <stdio.h> ($hint):"
    sed 's/^/setup:   /' "$probe/err" >&2
    rm -rf "$probe"
    exit 1
  fi
  rm -rf "$probe"
}
# promtool (the metrics test's checker) from Debian's prometheus package,
# unpacked, not installed: the package would start a Prometheus server.
PROMTOOL=$ROOT/build/tools/prometheus/usr/bin/promtool
if [ ! -x "$PROMTOOL" ]; then
  log "unpacking promtool from Debian's prometheus package into build/tools"
  rm -rf "$ROOT/build/tools/debs" "$ROOT/build/tools/prometheus"
  mkdir -p "$ROOT/build/tools/debs"
  ( cd "$ROOT/build/tools/debs" && apt-get -o APT::Sandbox::User=root download -qq prometheus ) ||
    { as_root apt-get update -qq && ( cd "$ROOT/build/tools/debs" && apt-get -o APT::Sandbox::User=root download -qq prometheus ); }
  dpkg -x "$ROOT"/build/tools/debs/prometheus_*.deb "$ROOT/build/tools/prometheus"
  [ -x "$PROMTOOL" ] || { log "the prometheus package holds no usr/bin/promtool"; exit 1; }
fi

check_compiler arm-linux-gnueabihf-gcc "-march=armv7-a -mfpu=vfpv3-d16" "needs libc6-dev-armhf-cross"
check_compiler arm-linux-gnueabi-gcc "-march=armv6 -static" "needs libc6-dev-armel-cross"

# trixie_download ARCH DIR PACKAGE...: download the next release's packages
# for ARCH into DIR through a private apt configuration (build/apt-trixie-ARCH)
# that reads the mirror from this machine's own sources, so no registry name
# is written here and the machine's apt state is left alone.
trixie_download() {
  local arch=$1 dir=$2 uri apt_dir
  shift 2
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  [ -n "$uri" ] || { log "cannot find this machine's Debian mirror in /etc/apt"; exit 1; }
  apt_dir=$ROOT/build/apt-trixie-$arch
  mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dir"
  cat > "$apt_dir/sources/trixie.sources" <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local apt_opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/sources"
                  -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
                  -o APT::Architecture="$arch" -o APT::Architectures="$arch" -o Debug::NoLocking=1)
  apt-get "${apt_opts[@]}" update -qq
  ( cd "$dir" && apt-get "${apt_opts[@]}" -o APT::Sandbox::User=root download -qq "$@" )
}

# The static x86-64 build (preset host-static, what scripts/bench.sh measures):
# bookworm ships no libmnl.a for amd64 either; trixie's libmnl-dev, unpacked
# under build/static-amd64 (the preset points CMAKE_LIBRARY_PATH there).
STATIC_AMD64=$ROOT/build/static-amd64
if [ "$(dpkg --print-architecture)" = amd64 ] && [ ! -f "$STATIC_AMD64/usr/lib/x86_64-linux-gnu/libmnl.a" ]; then
  log "unpacking trixie's libmnl-dev (amd64) into build/static-amd64"
  rm -rf "$ROOT/build/amd64-debs" "$STATIC_AMD64"
  trixie_download amd64 "$ROOT/build/amd64-debs" libmnl-dev
  for deb in "$ROOT"/build/amd64-debs/*.deb; do dpkg -x "$deb" "$STATIC_AMD64"; done
  find "$STATIC_AMD64" -name '*.so' -type l -delete  # static archives only
  [ -f "$STATIC_AMD64/usr/lib/x86_64-linux-gnu/libmnl.a" ] || { log "trixie's libmnl-dev holds no libmnl.a"; exit 1; }
fi

# --host: only what the host builds need (scripts/bench.sh): no armel sysroot,
# no OpenSSL or RE2 built for ARMv6.
if [ "${1:-}" = --host ]; then
  log "host only: the armel sysroot is not checked"
  exit 0
fi

stamp_content="$STAMP_VERSION ${ARMEL_PACKAGES[*]} ${TRIXIE_ARMEL_PACKAGES[*]}"
if [ -f "$SYSROOT/.stamp" ] && [ "$(cat "$SYSROOT/.stamp")" = "$stamp_content" ]; then
  log "armel sysroot up to date ($SYSROOT)"
  scripts/re2-armv6.sh
  exec scripts/openssl-armv6.sh
fi

if ! dpkg --print-foreign-architectures | grep -qx armel; then
  log "adding the armel architecture"
  as_root dpkg --add-architecture armel
  as_root apt-get update -qq
elif ! apt-cache show libseccomp-dev:armel >/dev/null 2>&1; then
  as_root apt-get update -qq
fi

debs=$ROOT/build/armel-debs
rm -rf "$debs" "$SYSROOT.tmp"
mkdir -p "$debs" "$SYSROOT.tmp"
( cd "$debs" && apt-get -o APT::Sandbox::User=root download -qq "${ARMEL_PACKAGES[@]/%/:armel}" )

trixie_download armel "$debs" "${TRIXIE_ARMEL_PACKAGES[@]}"

for deb in "$debs"/*.deb; do dpkg -x "$deb" "$SYSROOT.tmp"; done
# Header-only libraries are architecture-independent: expose the host's copies.
for inc in boost toml++ nlohmann catch2; do
  ln -sfn "/usr/include/$inc" "$SYSROOT.tmp/usr/include/$inc"
done
# Dev packages point their .so symlinks at runtime packages we did not unpack;
# drop them so nothing can link dynamically by accident.
find "$SYSROOT.tmp" -name '*.so' -type l -delete
for lib in libseccomp.a libcap.a libnftnl.a libmnl.a libcares.a; do
  [ -f "$SYSROOT.tmp/usr/lib/arm-linux-gnueabi/$lib" ] || { log "armel sysroot lacks $lib"; exit 1; }
done
echo "$stamp_content" > "$SYSROOT.tmp/.stamp"
rm -rf "$SYSROOT"
mv "$SYSROOT.tmp" "$SYSROOT"
log "armel sysroot ready ($SYSROOT)"
scripts/re2-armv6.sh
exec scripts/openssl-armv6.sh
