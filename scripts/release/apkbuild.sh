#!/bin/sh
# Writes OUTDIR/APKBUILD (default build/release) for one commit: the template
# packaging/alpine/APKBUILD.in of that commit with pkgver (CMake's project
# version), url, maintainer and sha512sums filled in, the checksum taken from
# the source tarball scripts/release/source-tarball.sh makes next to it. A
# committed checksum of the repository's own tarball would be wrong after the
# next commit, so only the template is committed. `abuild -r` in OUTDIR builds
# the package.
# Usage: scripts/release/apkbuild.sh [-o OUTDIR] [-u URL] [-m MAINTAINER] [REF]
#   URL defaults to $PISEC_URL, else the https URL of the git remote "origin";
#   MAINTAINER to $PISEC_MAINTAINER, else git's user.name <user.email>.
set -eu
cd "$(dirname "$0")/../.."
out=build/release
url=${PISEC_URL:-}
maintainer=${PISEC_MAINTAINER:-}
while getopts o:u:m: opt; do
  case $opt in
    o) out=$OPTARG ;;
    u) url=$OPTARG ;;
    m) maintainer=$OPTARG ;;
    *) echo "usage: $0 [-o OUTDIR] [-u URL] [-m MAINTAINER] [REF]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
ref=${1:-HEAD}

if [ -z "$url" ]; then
  origin=$(git config --get remote.origin.url || true)
  case $origin in https://*) url=${origin%.git} ;; esac
fi
[ -n "$url" ] || { echo "$0: no project URL: pass -u URL or set PISEC_URL (no https remote \"origin\" to take it from)" >&2; exit 1; }
if [ -z "$maintainer" ]; then
  name=$(git config --get user.name || true)
  email=$(git config --get user.email || true)
  [ -n "$name" ] && [ -n "$email" ] && maintainer="$name <$email>"
fi
[ -n "$maintainer" ] || { echo "$0: no maintainer: pass -m \"Name <email>\" or set PISEC_MAINTAINER" >&2; exit 1; }

tarball=$(scripts/release/source-tarball.sh -o "$out" "$ref")
commit=$(git rev-parse --verify "$ref^{commit}")
version=${tarball##*/pisecd-}
version=${version%.tar.gz}
sum=$(cd "$out" && sha512sum "pisecd-$version.tar.gz")

# Fill in the placeholders literally (values may contain /, |, & or
# backslashes: passed through the environment, which awk does not unescape);
# the template's own note, above "# Maintainer:", is not part of the result.
git show "$commit:packaging/alpine/APKBUILD.in" >"$out/APKBUILD.in.tmp"
F_PKGVER=$version F_URL=$url F_MAINTAINER=$maintainer F_SHA512SUMS=$sum awk '
    function put(s, key, value,    i, done) {
      while ((i = index(s, key)) > 0) { done = done substr(s, 1, i - 1) value; s = substr(s, i + length(key)) }
      return done s
    }
    /^# Maintainer:/ { started = 1 }
    !started { next }
    {
      line = $0
      n = split("PKGVER URL MAINTAINER SHA512SUMS", keys, " ")
      for (k = 1; k <= n; k++) line = put(line, "@" keys[k] "@", ENVIRON["F_" keys[k]])
      print line
    }
  ' "$out/APKBUILD.in.tmp" >"$out/APKBUILD.tmp"
rm -f "$out/APKBUILD.in.tmp"
if grep -n '@[A-Z0-9_]*@' "$out/APKBUILD.tmp" >&2; then
  echo "$0: placeholders left in the APKBUILD" >&2
  exit 1
fi
mv "$out/APKBUILD.tmp" "$out/APKBUILD"
# Both files dated by the commit, not by when they were made.
when=$(git show -s --format=%ct "$commit")
touch -d "@$when" "$out/APKBUILD" "$tarball"
echo "$out/APKBUILD"
