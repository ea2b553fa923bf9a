#!/usr/bin/env bash
# Issue 10, acceptance 2: the release steps are deterministic. The .apkovl and
# the SD-card image built twice (different directories, umask, wall-clock
# time) are byte-identical; the .apkovl holds exactly the intended files, as
# Alpine's lbu lays them out; the card holds the signed tree, verifiable.
# shellcheck disable=SC1091  # lib.sh.inc: the shared helpers, sourced by every integration test
source "$(dirname "$0")/lib.sh.inc"
SRC=${PISEC_SOURCE:?PISEC_SOURCE must point at the source tree}
REL=$SRC/scripts/release
export PISECD SOURCE_DATE_EPOCH=1700000000

"$PISECD" keygen -p "$T_DIR/release.pub" -s "$T_DIR/release.sec" >/dev/null

# build DIR UMASK: the apkovl and a card from a small release tree.
build() {
  local d=$1
  mkdir -p "$d/tree/payload" "$d/tree/pisec"
  (
    umask "$2"
    cd "$d" || exit 1
    printf 'kernel=vmlinuz\n' > tree/config.txt
    printf 'console=ttyAMA0,115200\n' > tree/cmdline.txt
    head -c 300000 /dev/zero | tr '\0' 'k' > tree/vmlinuz
    head -c 100000 /dev/zero | tr '\0' 'i' > tree/initrd.img
    cp "$FIXTURES/http_payload" tree/payload/app
    cp "$PISECD" tree/pisec/pisecd
    "$REL/apkovl.sh" -c "$SRC/etc/pisec/pisecd.toml" -k "$T_DIR/release.pub" -o tree/pisec.apkovl.tar.gz
    "$REL/sign.sh" -s "$T_DIR/release.sec" -r tree \
      config.txt cmdline.txt vmlinuz initrd.img pisec.apkovl.tar.gz pisec/pisecd payload/app
    "$REL/card.sh" -o sd.img tree
  )
}
build "$T_DIR/a" 022
sleep 2   # FAT times have a 2 s resolution: a leaked clock would show
build "$T_DIR/b" 077
A=$T_DIR/a B=$T_DIR/b

check "apkovl: identical bytes on two builds" cmp "$A/tree/pisec.apkovl.tar.gz" "$B/tree/pisec.apkovl.tar.gz"
check "manifest and signature: identical on two builds" \
  bash -c "cmp '$A/tree/pisec/MANIFEST' '$B/tree/pisec/MANIFEST' && cmp '$A/tree/pisec/MANIFEST.sig' '$B/tree/pisec/MANIFEST.sig'"
check "card image: identical bytes on two builds" cmp "$A/sd.img" "$B/sd.img"
echo "card sha256: $(sha256sum < "$A/sd.img" | cut -c1-64), apkovl sha256: $(sha256sum < "$A/tree/pisec.apkovl.tar.gz" | cut -c1-64)"

# The listing, exactly (type, mode, owner, size-independent).
expected=$(cat <<'LIST'
drwxr-xr-x 0/0 etc/
drwxr-xr-x 0/0 etc/apk/
-rw-r--r-- 0/0 etc/apk/world
drwxr-xr-x 0/0 etc/conf.d/
-rw-r--r-- 0/0 etc/conf.d/pisecd
drwxr-xr-x 0/0 etc/init.d/
-rwxr-xr-x 0/0 etc/init.d/pisecd
drwxr-xr-x 0/0 etc/local.d/
-rwxr-xr-x 0/0 etc/local.d/dmz-init.start
drwxr-xr-x 0/0 etc/pisec/
-rw------- 0/0 etc/pisec/pisecd.toml
-rw-r--r-- 0/0 etc/pisec/release.pub
drwxr-xr-x 0/0 etc/runlevels/
drwxr-xr-x 0/0 etc/runlevels/boot/
lrwxrwxrwx 0/0 etc/runlevels/boot/bootmisc -> /etc/init.d/bootmisc
lrwxrwxrwx 0/0 etc/runlevels/boot/hostname -> /etc/init.d/hostname
lrwxrwxrwx 0/0 etc/runlevels/boot/modules -> /etc/init.d/modules
lrwxrwxrwx 0/0 etc/runlevels/boot/networking -> /etc/init.d/networking
lrwxrwxrwx 0/0 etc/runlevels/boot/pisecd -> /etc/init.d/pisecd
lrwxrwxrwx 0/0 etc/runlevels/boot/swclock -> /etc/init.d/swclock
lrwxrwxrwx 0/0 etc/runlevels/boot/sysctl -> /etc/init.d/sysctl
lrwxrwxrwx 0/0 etc/runlevels/boot/syslog -> /etc/init.d/syslog
drwxr-xr-x 0/0 etc/runlevels/default/
lrwxrwxrwx 0/0 etc/runlevels/default/local -> /etc/init.d/local
drwxr-xr-x 0/0 etc/runlevels/shutdown/
lrwxrwxrwx 0/0 etc/runlevels/shutdown/killprocs -> /etc/init.d/killprocs
lrwxrwxrwx 0/0 etc/runlevels/shutdown/mount-ro -> /etc/init.d/mount-ro
lrwxrwxrwx 0/0 etc/runlevels/shutdown/savecache -> /etc/init.d/savecache
drwxr-xr-x 0/0 etc/runlevels/sysinit/
lrwxrwxrwx 0/0 etc/runlevels/sysinit/devfs -> /etc/init.d/devfs
lrwxrwxrwx 0/0 etc/runlevels/sysinit/dmesg -> /etc/init.d/dmesg
lrwxrwxrwx 0/0 etc/runlevels/sysinit/hwdrivers -> /etc/init.d/hwdrivers
lrwxrwxrwx 0/0 etc/runlevels/sysinit/mdev -> /etc/init.d/mdev
lrwxrwxrwx 0/0 etc/runlevels/sysinit/modloop -> /etc/init.d/modloop
LIST
)
listing=$(tar -tvzf "$A/tree/pisec.apkovl.tar.gz" | awk '{ out = $1 " " $2; for (i = 6; i <= NF; i++) out = out " " $i; print out }')
check "apkovl: exactly the intended entries, modes and owners" test "$listing" = "$expected"
[ "$listing" = "$expected" ] || diff <(echo "$expected") <(echo "$listing") || true
check "apkovl: every entry dated SOURCE_DATE_EPOCH" test \
  "$(tar --full-time -tvzf "$A/tree/pisec.apkovl.tar.gz" | awk '{ print $4 " " $5 }' | sort -u)" = "2023-11-14 22:13:20"
check "apkovl: gzip header carries no name and no time" test "$(od -An -tx1 -j3 -N5 "$A/tree/pisec.apkovl.tar.gz" | tr -d ' ')" = 0000000000
check "apkovl: etc/init.d/pisecd is the repository's" \
  bash -c "tar -xzOf '$A/tree/pisec.apkovl.tar.gz' etc/init.d/pisecd | cmp - '$SRC/etc/init.d/pisecd'"
check "apkovl: release.pub is the key given" \
  bash -c "tar -xzOf '$A/tree/pisec.apkovl.tar.gz' etc/pisec/release.pub | cmp - '$T_DIR/release.pub'"

check "manifest lists the release stamp first, then every artifact" test \
  "$(awk '{ print $2 }' "$A/tree/pisec/MANIFEST" | tr '\n' ' ')" = \
  "pisec-release cmdline.txt config.txt initrd.img payload/app pisec.apkovl.tar.gz pisec/pisecd vmlinuz "
check "the release stamp is SOURCE_DATE_EPOCH" test "$(cat "$A/tree/pisec-release")" = "created 2023-11-14T22:13:20Z"
check "manifest verifies over the tree" "$PISECD" manifest verify -p "$T_DIR/release.pub" -m "$A/tree/pisec/MANIFEST" --root "$A/tree"

# The card: MBR, one bootable FAT partition at 1 MiB, a power-of-two size,
# the tree's files byte for byte.
size=$(stat -c %s "$A/sd.img")
check "card: size $size is a power of two" test $((size & (size - 1))) = 0
check "card: one bootable FAT (0x0c) partition at sector 2048" \
  bash -c "sfdisk -d '$A/sd.img' | grep -q 'start= *2048, size=.*type=c, bootable'"
out=$T_DIR/fromcard
mkdir -p "$out"
MTOOLS_SKIP_CHECK=1 mcopy -s -n -i "$A/sd.img@@1M" '::*' "$out/"
check "card: the files read back equal the tree" diff -r "$A/tree" "$out"

# And SOURCE_DATE_EPOCH is what fixes the times: a different one changes the bytes.
SOURCE_DATE_EPOCH=1700000100 "$REL/card.sh" -o "$T_DIR/sd-other.img" "$A/tree"
check "card: another SOURCE_DATE_EPOCH gives other bytes" bash -c "! cmp -s '$A/sd.img' '$T_DIR/sd-other.img'"
finish
