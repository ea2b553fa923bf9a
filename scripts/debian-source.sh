#!/usr/bin/env bash
# Prints the path of Debian's orig tarball of source package $1 under
# build/debian-source/, fetching it the first time: the newest version in this
# machine's own suites, through a private apt configuration (the machine's apt
# sources carry no deb-src line; the mirrors are read from them, so no
# registry name is written here). The checksum comes from the signed source
# index; it is checked again on every call.
#
#   scripts/debian-source.sh openssl   → build/debian-source/openssl_3.0.22.orig.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
pkg=${1:?usage: debian-source.sh SOURCE-PACKAGE}
DL=$ROOT/build/debian-source
log() { printf 'debian-source: %s\n' "$*" >&2; }

mkdir -p "$DL"  # find fails on a missing folder, and pipefail would end the script silently
find_tarball() { find "$DL" -maxdepth 1 -name "${pkg}_*.orig.tar.*" ! -name '*.sum' ! -name '*.part' 2>/dev/null | sort -V | tail -n1; }

tarball=$(find_tarball)
if [ -z "$tarball" ]; then
  apt_dir=$ROOT/build/apt-src
  mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$DL"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$apt_dir/sources/src.sources"
  else
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$apt_dir/sources/src.list"
  fi
  apt_opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt_dir/sources"
            -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -o Debug::NoLocking=1
            -o APT::Sandbox::User=root)
  log "fetching the source index"
  apt-get "${apt_opts[@]}" update -qq
  # Only the orig tarball is needed (Debian's patches are packaging and tests;
  # a security suite's debian.tar.xz has been seen to answer 404). apt names its
  # URI and checksum; apt-helper downloads and verifies it.
  line=$(apt-get "${apt_opts[@]}" source --print-uris -qq "$pkg" | grep -E "/${pkg}_[^/']+\\.orig\\.tar\\.[a-z0-9]+'" | head -n1)
  [ -n "$line" ] || { log "no $pkg orig tarball in the source index"; exit 1; }
  uri=$(printf '%s\n' "$line" | awk '{gsub("\047", "", $1); print $1}')
  name=$(printf '%s\n' "$line" | awk '{print $2}')
  hash=$(printf '%s\n' "$line" | awk '{print $4}')
  case $hash in SHA256:*) ;; *) log "no SHA-256 for the tarball: $line"; exit 1 ;; esac
  log "downloading $name ($hash)"
  /usr/lib/apt/apt-helper download-file "$uri" "$DL/$name.part" "$hash" >/dev/null 2>&1
  printf '%s  %s\n' "${hash#SHA256:}" "$name" > "$DL/$name.sum"
  mv "$DL/$name.part" "$DL/$name"
  tarball=$DL/$name
fi
(cd "$DL" && sha256sum -c --quiet "${tarball##*/}.sum" >&2) || { log "$tarball: checksum mismatch"; exit 1; }
printf '%s\n' "$tarball"
