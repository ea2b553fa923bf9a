#!/usr/bin/env bash
# Builds the RE2 that the armv6 pisecd links from Debian's own source (the
# orig tarball of the re2 source package, scripts/debian-source.sh): Thumb,
# -Os, one section per function so the linker drops what redaction never
# calls. Debian's armel libre2.a is ARM code at -O2 (321 kB in pisecd).
# Installed into the armel sysroot (libre2.a, headers, re2.pc, where Debian's
# libre2-dev would put them) with a stamp of its inputs there; a second run
# with the same inputs and the same sysroot only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SYSROOT=$ROOT/build/sysroot-armel
PREFIX=$SYSROOT/usr
LIBDIR=$PREFIX/lib/arm-linux-gnueabi
STAMP=$SYSROOT/.re2-stamp
SRC_DIR=$ROOT/build/re2-src
log() { printf 're2-armv6: %s\n' "$*" >&2; }

CROSS=arm-linux-gnueabi
CXXFLAGS_ARM="-march=armv6 -mfpu=vfp -mfloat-abi=softfp -mthumb -Os -ffunction-sections -fdata-sections -flto -ffat-lto-objects -DNDEBUG -Wno-psabi"

tarball=$(scripts/debian-source.sh re2)
upstream=${tarball##*/re2_}
upstream=${upstream%.orig.tar.*}
# RE2's own logging header collects messages in an std::ostringstream, which
# links std::locale and all its facets (about 400 kB): scripts/re2/logging.h
# is the same without iostreams, and replaces it.
LOGGING_H=$ROOT/scripts/re2/logging.h
inputs="$upstream|$CROSS|$CXXFLAGS_ARM|unicode-data $(dpkg-query -W -f='${Version}' unicode-data)|$(sha256sum < "$LOGGING_H" | cut -c1-16)"
[ -d "$LIBDIR" ] || { log "no armel sysroot at $SYSROOT: run scripts/setup.sh"; exit 1; }
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs" ]; then
  log "up to date ($LIBDIR/libre2.a, RE2 $upstream)"
  exit 0
fi

rm -rf "$SRC_DIR" "$STAMP"
mkdir -p "$SRC_DIR"
tar -xf "$tarball" -C "$SRC_DIR" --strip-components=1
# Debian's +dfsg tarball leaves out the generated tables; make them as
# Debian's build does, from the unicode-data package (never from the network).
sed -i 's|^from six.moves import urllib|import urllib.request|; s|^_UNICODE_DIR = .*|_UNICODE_DIR = "/usr/share/unicode"|' \
  "$SRC_DIR/re2/unicode.py"
cp "$LOGGING_H" "$SRC_DIR/util/logging.h"
( cd "$SRC_DIR/re2" &&
  python3 make_unicode_groups.py > unicode_groups.cc &&
  python3 make_unicode_casefold.py > unicode_casefold.cc &&
  perl make_perl_groups.pl > perl_groups.cc )
log "building RE2 $upstream (ARMv6, Thumb, -Os; nice 15)"
start=$(date +%s)
( cd "$SRC_DIR" && nice -n 15 make -s -j"$(nproc)" obj/libre2.a \
    CXX="$CROSS-g++" AR="$CROSS-gcc-ar" CXXFLAGS="$CXXFLAGS_ARM" >/dev/null )
log "built in $(( $(date +%s) - start )) s"
rm -rf "$PREFIX/include/re2"
mkdir -p "$PREFIX/include/re2" "$LIBDIR/pkgconfig"
cp "$SRC_DIR"/re2/{re2,set,stringpiece,filtered_re2}.h "$PREFIX/include/re2/"
cp "$SRC_DIR/obj/libre2.a" "$LIBDIR/"
cat > "$LIBDIR/pkgconfig/re2.pc" <<PC
includedir=/usr/include
libdir=/usr/lib/arm-linux-gnueabi

Name: re2
Description: RE2 regular expressions (Debian source, ARMv6 Thumb -Os: scripts/re2-armv6.sh)
Version: $upstream
Cflags: -pthread -I\${includedir}
Libs: -pthread -L\${libdir} -lre2
PC
rm -rf "$SRC_DIR"
echo "$inputs" > "$STAMP"
log "ready: $LIBDIR/libre2.a ($(stat -c %s "$LIBDIR/libre2.a") B)"
