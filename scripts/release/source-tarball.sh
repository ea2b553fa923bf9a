#!/bin/sh
# Makes the release source tarball pisecd-VERSION.tar.gz of a commit,
# reproducibly: `git archive` (entries in git's order, every mtime the commit
# time, owner root) compressed by `gzip -n` (no name, no timestamp). The same
# commit gives the same bytes. VERSION is project(VERSION) of CMakeLists.txt at
# that commit. Uncommitted changes are not in it (git archive reads the commit).
# Usage: scripts/release/source-tarball.sh [-o OUTDIR] [REF]   (default: build/release, HEAD)
# Prints the tarball's path.
set -eu
cd "$(dirname "$0")/../.."
out=build/release
while getopts o: opt; do
  case $opt in
    o) out=$OPTARG ;;
    *) echo "usage: $0 [-o OUTDIR] [REF]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
ref=${1:-HEAD}

commit=$(git rev-parse --verify "$ref^{commit}")
version=$(git show "$commit:CMakeLists.txt" |
  sed -n 's/^project(pisecd VERSION \([0-9][0-9.]*\) .*/\1/p')
[ -n "$version" ] || { echo "$0: no project(pisecd VERSION ...) in CMakeLists.txt at $ref" >&2; exit 1; }
if [ "$ref" = HEAD ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "$0: note: uncommitted changes are not in the tarball (it is made from $commit)" >&2
fi

mkdir -p "$out"
tarball=$out/pisecd-$version.tar.gz
git archive --format=tar --prefix="pisecd-$version/" "$commit" | gzip -n -9 >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
echo "$tarball"
