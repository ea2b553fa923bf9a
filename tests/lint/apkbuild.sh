#!/usr/bin/env bash
# The Alpine package, as far as it can be checked without Alpine:
#   - scripts/release/source-tarball.sh gives identical bytes twice, every
#     entry under pisecd-VERSION/;
#   - scripts/release/apkbuild.sh fills the template completely: pkgver is
#     CMake's project version, sha512sums is the tarball's and names it;
#   - the APKBUILD is valid sh (sh -n) and shellcheck-clean with the usual
#     aports exclusions, and sourcing it gives the aports variables and the
#     build/check/package functions;
#   - `cmake --install` of the host build lays out what package() ships.
# Needs PISEC_SOURCE and PISEC_BUILD (the host build directory).
set -euo pipefail
: "${PISEC_SOURCE:?PISEC_SOURCE must point at the source tree}"
: "${PISEC_BUILD:?PISEC_BUILD must point at the host build directory}"
cd "$PISEC_SOURCE"

fails=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  echo "SKIP: not a git checkout (the release scripts package a commit)"
  exit 77
fi

version=$(sed -n 's/^project(pisecd VERSION \([0-9][0-9.]*\) .*/\1/p' CMakeLists.txt)
[ -n "$version" ] || { fail "no project version in CMakeLists.txt"; exit 1; }

# --- the source tarball: reproducible, one top directory ---------------------
t1=$(scripts/release/source-tarball.sh -o "$tmp/a" HEAD 2>/dev/null)
t2=$(scripts/release/source-tarball.sh -o "$tmp/b" HEAD 2>/dev/null)
[ "$(basename "$t1")" = "pisecd-$version.tar.gz" ] || fail "tarball named $(basename "$t1"), expected pisecd-$version.tar.gz"
if cmp -s "$t1" "$t2"; then ok "source tarball is byte-identical when made twice"; else fail "two source tarballs of HEAD differ"; fi
listing=$(tar -tzf "$t1")
outside=$(grep -v "^pisecd-$version/" <<<"$listing" || true)
[ -z "$outside" ] || fail "tarball entries outside pisecd-$version/: $outside"
for f in CMakeLists.txt doc/pisecd.8.scd doc/pisecd.toml.5.scd packaging/alpine/APKBUILD.in etc/init.d/pisecd; do
  grep -qx "pisecd-$version/$f" <<<"$listing" || fail "tarball lacks $f"
done
ok "tarball lists $(wc -l <<<"$listing") entries, all under pisecd-$version/"

# --- the generated APKBUILD --------------------------------------------------
apkbuild=$(scripts/release/apkbuild.sh -o "$tmp/rel" -u https://pisecd.invalid -m 'Test <test@pisecd.invalid>' HEAD 2>/dev/null)
[ -s "$apkbuild" ] || { fail "apkbuild.sh wrote no APKBUILD"; exit 1; }
if grep -n '@[A-Z0-9_]*@' "$apkbuild" >&2; then fail "placeholders left in the APKBUILD"; fi
head -n 1 "$apkbuild" | grep -q '^# Maintainer: Test <test@pisecd.invalid>$' || fail "the APKBUILD does not start with its Maintainer line"

if sh -n "$apkbuild"; then ok "sh -n accepts the APKBUILD"; else fail "sh -n rejects the APKBUILD"; fi
# abuild provides srcdir, pkgdir, builddir... (SC2154) and reads pkgname,
# depends, ... (SC2034); SC2164 (cd without || exit) is abuild's set -e.
if out=$(shellcheck -s sh -e SC2034,SC2154,SC2164 "$apkbuild" 2>&1); then
  ok "shellcheck -s sh -e SC2034,SC2154,SC2164 is clean on the APKBUILD"
else
  fail "shellcheck on the APKBUILD:"; printf '%s\n' "$out" | sed 's/^/    /' >&2
fi

# Source it the way abuild does (sh, srcdir set) and print what abuild reads.
vars=$(cd "$tmp/rel" && srcdir=/src sh -c '. ./APKBUILD
  for f in build check package; do command -v "$f" >/dev/null || echo "missing_function=$f"; done
  printf "pkgname=%s\npkgver=%s\npkgrel=%s\nlicense=%s\ndepends=%s\nsubpackages=%s\nsource=%s\nbuilddir=%s\n" \
    "$pkgname" "$pkgver" "$pkgrel" "$license" "$depends" "$subpackages" "$source" "$builddir"
  printf "sha512sums=%s\n" "$(echo $sha512sums)"
  printf "makedepends=%s\n" "$(echo $makedepends)"')
get() { sed -n "s/^$1=//p" <<<"$vars"; }
grep -q '^missing_function=' <<<"$vars" && fail "APKBUILD lacks: $(get missing_function | tr '\n' ' ')"
expect() { if [ "$(get "$1")" = "$2" ]; then ok "$1 = $2"; else fail "$1 is \"$(get "$1")\", expected \"$2\""; fi; }
expect pkgname pisecd
expect pkgver "$version"
expect pkgrel 0
expect license GPL-3.0-or-later
expect depends bubblewrap
expect subpackages "pisecd-doc pisecd-openrc"
expect source "pisecd-$version.tar.gz"
expect builddir "/src/pisecd-$version"
for dep in cmake samurai scdoc openssl-dev libnftnl-dev libmnl-dev libseccomp-dev libcap-dev c-ares-dev re2-dev boost-dev tomlplusplus-dev nlohmann-json catch2; do
  grep -qw -- "$dep" <<<"$(get makedepends)" || fail "makedepends lacks $dep"
done

# sha512sums: one line, the tarball's checksum and name.
want="$(cd "$(dirname "$t1")" && sha512sum "pisecd-$version.tar.gz")"
read -r want_sum want_name <<<"$want"
expect sha512sums "$want_sum $want_name"
if (cd "$tmp/rel" && sed -n '/^sha512sums="/,/^"/p' APKBUILD | grep -v '"' | sha512sum -c --quiet -); then
  ok "sha512sum -c accepts the APKBUILD's sha512sums for the tarball beside it"
else
  fail "the APKBUILD's sha512sums does not match the tarball beside it"
fi

# --- the install layout package() ships ---------------------------------------
dest=$tmp/pkg
if DESTDIR=$dest cmake --install "$PISEC_BUILD" --prefix /usr >"$tmp/install.log" 2>&1; then
  for f in usr/sbin/pisecd usr/share/man/man8/pisecd.8 usr/share/man/man5/pisecd.toml.5 \
           etc/pisec/pisecd.toml etc/init.d/pisecd etc/conf.d/pisecd; do
    [ -f "$dest/$f" ] || fail "cmake --install does not install /$f"
  done
  for f in usr/sbin/pisecd etc/init.d/pisecd; do
    [ -x "$dest/$f" ] || fail "/$f is not executable"
  done
  cmp -s "$dest/etc/pisec/pisecd.toml" etc/pisec/pisecd.toml || fail "installed pisecd.toml differs from etc/pisec/pisecd.toml"
  ok "cmake --install --prefix /usr: $(cd "$dest" && find . -type f | sed 's|^\./|/|' | sort | tr '\n' ' ')"
else
  fail "cmake --install failed:"; sed 's/^/    /' "$tmp/install.log" >&2
fi

if [ "$fails" -gt 0 ]; then echo "$fails check(s) failed" >&2; exit 1; fi
echo "all checks passed"
