#!/usr/bin/env bash
# Builds the .apkovl: a gzipped tar of etc/ laid out as Alpine's `lbu package`
# writes it (paths relative to /, directories before their contents), holding
# only what pisecd's device needs:
#
#   etc/pisec/pisecd.toml        the configuration (-c)
#   etc/pisec/release.pub        the release public key the integrity gate trusts (-k)
#   etc/init.d/pisecd  etc/conf.d/pisecd  etc/local.d/dmz-init.start   (from this repository)
#   etc/runlevels/*/*            symlinks as `rc-update add` makes them
#   etc/apk/world                the packages the device installs at boot
#
#   scripts/release/apkovl.sh -c CONFIG -k PUBKEY -o OUT.apkovl.tar.gz
#
# Deterministic: sorted entries, owner 0/0 numeric, fixed modes, every mtime
# SOURCE_DATE_EPOCH (default: the last git commit's time), gzip -n (no name or
# time in the gzip header). Alpine does not check the apkovl's signature at
# boot: it is one of the files in the signed manifest, which pisecd checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
usage() { echo "usage: $0 -c CONFIG -k PUBKEY -o OUT.apkovl.tar.gz" >&2; exit 2; }

config='' pubkey='' out=''
while getopts 'c:k:o:' opt; do
  case $opt in
    c) config=$OPTARG ;;
    k) pubkey=$OPTARG ;;
    o) out=$OPTARG ;;
    *) usage ;;
  esac
done
if [ -z "$config" ] || [ -z "$pubkey" ] || [ -z "$out" ]; then usage; fi
for f in "$config" "$pubkey"; do [ -f "$f" ] || { echo "apkovl.sh: $f: no such file" >&2; exit 1; }; done
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct)
fi

# Runlevels: Alpine's diskless defaults (what setup-alpine leaves for lbu to
# save), pisecd in boot (it locks the firewall down before `networking`
# brings interfaces up), `local` (dmz-init.start) in default.
RUNLEVELS=(
  sysinit/devfs sysinit/dmesg sysinit/mdev sysinit/hwdrivers sysinit/modloop
  boot/modules boot/sysctl boot/hostname boot/bootmisc boot/syslog boot/swclock
  boot/networking boot/pisecd
  default/local
  shutdown/killprocs shutdown/mount-ro shutdown/savecache
)
WORLD=(alpine-base bubblewrap pisecd pisecd-openrc)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
umask 022
install -D -m 0600 "$config" "$stage/etc/pisec/pisecd.toml"
install -D -m 0644 "$pubkey" "$stage/etc/pisec/release.pub"
install -D -m 0755 "$here/etc/init.d/pisecd" "$stage/etc/init.d/pisecd"
install -D -m 0644 "$here/etc/conf.d/pisecd" "$stage/etc/conf.d/pisecd"
install -D -m 0755 "$here/etc/local.d/dmz-init.start" "$stage/etc/local.d/dmz-init.start"
for entry in "${RUNLEVELS[@]}"; do
  mkdir -p "$stage/etc/runlevels/${entry%/*}"
  ln -s "/etc/init.d/${entry#*/}" "$stage/etc/runlevels/$entry"
done
mkdir -p "$stage/etc/apk"
printf '%s\n' "${WORLD[@]}" > "$stage/etc/apk/world"
chmod 0644 "$stage/etc/apk/world"
find "$stage/etc" -type d -exec chmod 0755 {} +

mkdir -p "$(dirname "$out")"
tar -C "$stage" --sort=name --format=ustar --numeric-owner --owner=0 --group=0 \
    --mtime="@$SOURCE_DATE_EPOCH" --no-acls --no-xattrs --no-selinux -cf - etc \
  | gzip -n -9 > "$out.tmp"
mv "$out.tmp" "$out"
