#!/usr/bin/env bash
# Hashes release artifacts into a signed manifest, the integrity gate's input.
#
#   scripts/release/sign.sh -s SECKEY -r ROOT [-m MANIFEST] PATH...
#
# PATHs are relative to ROOT (the card's file tree), listed in byte order. Writes ROOT/pisec-release
# (the signed release time, listed first), the manifest (default
# ROOT/pisec/MANIFEST) and its signature MANIFEST.sig. Deterministic: the
# release time is SOURCE_DATE_EPOCH (default: the time of the last git commit)
# and Ed25519 signatures are deterministic, so the same inputs give the same
# bytes. PISECD names the pisecd binary to sign with (default: the host build).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
usage() { echo "usage: $0 -s SECKEY -r ROOT [-m MANIFEST] PATH..." >&2; exit 2; }

seckey='' root='' manifest=''
while getopts 's:r:m:' opt; do
  case $opt in
    s) seckey=$OPTARG ;;
    r) root=$OPTARG ;;
    m) manifest=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
if [ -z "$seckey" ] || [ -z "$root" ] || [ $# -eq 0 ]; then usage; fi
[ -d "$root" ] || { echo "sign.sh: $root is not a directory" >&2; exit 1; }
manifest=${manifest:-$root/pisec/MANIFEST}
pisecd=${PISECD:-$here/build/host/pisecd}
[ -x "$pisecd" ] || { echo "sign.sh: no pisecd at $pisecd (build the host preset or set PISECD)" >&2; exit 1; }

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH

# Byte order, so the same set of files gives the same manifest whatever the
# order they were named in (pisecd refuses names with line breaks).
mapfile -t paths < <(printf '%s\n' "$@" | LC_ALL=C sort -u)
mkdir -p "$(dirname "$manifest")"
"$pisecd" manifest create -o "$manifest" --root "$root" -- "${paths[@]}" >/dev/null
"$pisecd" manifest sign -s "$seckey" -m "$manifest"
# Same mtime on everything this step wrote, so packing the tree is reproducible.
touch -h -d "@$SOURCE_DATE_EPOCH" "$root/pisec-release" "$manifest" "$manifest.sig"
