#!/usr/bin/env bash
# Builds an SD-card image from a directory tree: an MBR with one bootable FAT
# partition (type 0x0c) at 1 MiB holding the tree, as the Pi's firmware reads
# it. mtools only, no loop mounts, no root needed.
#
#   scripts/release/card.sh -o SD.img [-s SIZE_MIB] DIR
#
# The image size is a power of two (QEMU refuses other SD sizes), by default
# the smallest one from 32 MiB up that holds the tree with room to spare.
# Deterministic: fixed disk identifier and volume serial, directories and
# files added in sorted order, every FAT time SOURCE_DATE_EPOCH (default: the
# last git commit's time) in UTC.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
usage() { echo "usage: $0 -o SD.img [-s SIZE_MIB] DIR" >&2; exit 2; }

out='' size_mib=''
while getopts 'o:s:' opt; do
  case $opt in
    o) out=$OPTARG ;;
    s) size_mib=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
if [ -z "$out" ] || [ $# -ne 1 ]; then usage; fi
src=$1
[ -d "$src" ] || { echo "card.sh: $src is not a directory" >&2; exit 1; }
for tool in sfdisk mformat mmd mcopy; do
  command -v "$tool" >/dev/null || { echo "card.sh: $tool missing (scripts/setup.sh installs fdisk and mtools)" >&2; exit 1; }
done
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH TZ=UTC0 MTOOLS_SKIP_CHECK=1 MTOOLSRC=/dev/null

if [ -n "$(find "$src" ! -type f ! -type d -print -quit)" ]; then
  echo "card.sh: $src holds something that is neither a file nor a directory (FAT has no links)" >&2
  exit 1
fi
if [ -z "$size_mib" ]; then
  bytes=$(find "$src" -type f -printf '%s\n' | awk '{ s += $1 + 4096 } END { print s + 0 }')
  need=$(( (bytes * 5 / 4) / 1048576 + 4 ))
  size_mib=32
  while [ "$size_mib" -lt "$need" ]; do size_mib=$((size_mib * 2)); done
fi
if [ $((size_mib & (size_mib - 1))) -ne 0 ]; then
  echo "card.sh: $size_mib MiB is not a power of two" >&2
  exit 1
fi

tmp=$out.tmp
rm -f "$tmp"
truncate -s "${size_mib}M" "$tmp"
printf 'label: dos\nlabel-id: 0x50695365\nstart=2048, type=c, bootable\n' | sfdisk -q "$tmp"
sectors=$((size_mib * 2048 - 2048))
part="$tmp@@1M"
mformat -i "$part" -T "$sectors" -h 64 -s 32 -H 2048 -N 50695365 -v PISECBOOT ::
# Directories parents first, then files, each in byte order.
( cd "$src" && find . -mindepth 1 -type d -printf '%P\n' | LC_ALL=C sort ) | while IFS= read -r d; do
  mmd -i "$part" "::$d"
done
( cd "$src" && find . -type f -printf '%P\n' | LC_ALL=C sort ) | while IFS= read -r f; do
  mcopy -i "$part" -o "$src/$f" "::$f"
done
mv "$tmp" "$out"
