#!/usr/bin/env bash
# Flash → boot → test on an emulated Raspberry Pi 1 (qemu-system-arm -M
# raspi1ap: ARM1176JZF-S, 512 MB), with the armv6 static pisecd:
#
#   1. guest packages (armel Debian: the rpi kernel, busybox-static, OpenRC,
#      bubblewrap and their libraries) downloaded once into build/emu/debs;
#   2. an initramfs from them plus scripts/emulate/guest (cached base part);
#   3. a test card: boot files, the .apkovl with scripts/emulate/pisecd.toml,
#      the payload, pisecd, the signed manifest (scripts/release/*);
#      and a second card with one byte of the payload flipped;
#   4. boot 1, good card: OpenRC starts pisecd from /etc/init.d/pisecd; all
#      four gates, the verified service ruleset, the sandboxed payload, wan →
#      80 answered and 8080 dropped, measurements, orderly stop (watchdog
#      magic-closed: no reset), a broken config refused by `rc-service pisecd
#      start`, start again, SIGSTOP → softdog resets the board;
#   5. boot 2, tampered card: integrity fails, payload never starts, status
#      exit 2, firewall stays in lockdown.
#
# The guest prints marked lines on its serial console (see
# scripts/emulate/guest/test); this script checks them. Any failed check is
# named, with the tail of the guest console, and the exit status is 1.
# Every QEMU run has a hard timeout. Downloads and the initramfs base are
# cached under build/emu.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
E=$ROOT/build/emu
GUEST=$ROOT/scripts/emulate/guest
PISECD_ARM=$ROOT/build/armv6/pisecd
PISECD_HOST=$ROOT/build/host/pisecd
FIX_ARM=$ROOT/build/armv6/fixtures
BOOT_TIMEOUT_S=${EMU_BOOT_TIMEOUT_S:-170}
TAMPERED_TIMEOUT_S=${EMU_TAMPERED_TIMEOUT_S:-110}
T_START=$SECONDS

log() { printf 'emulate: %s\n' "$*" >&2; }
die() { printf 'emulate: FAIL: %s\n' "$*" >&2; exit 1; }

# --- 1. host tools and guest packages -----------------------------------------
for tool in qemu-system-arm mformat mcopy sfdisk cpio jq arm-linux-gnueabi-objcopy qemu-arm-static; do
  command -v "$tool" >/dev/null || { log "$tool missing: running scripts/setup.sh"; scripts/setup.sh; break; }
done
for f in "$PISECD_ARM" "$PISECD_HOST" "$FIX_ARM/http_payload" "$FIX_ARM/sntp_server"; do
  [ -x "$f" ] || die "$f missing: build the host and armv6 presets first (scripts/test.sh does)"
done
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH

GUEST_PACKAGES=(busybox-static bubblewrap libc6 libcap2 libselinux1 libpcre2-8-0
                openrc libeinfo1 librc1 libaudit1 libpam0g libcap-ng0)
mkdir -p "$E/debs"
if ! dpkg --print-foreign-architectures | grep -qx armel; then
  scripts/setup.sh   # adds the armel architecture
fi
kernel_pkg=$(apt-cache depends linux-image-rpi:armel 2>/dev/null | awk '$1 == "Depends:" { sub(/:armel$/, "", $2); print $2; exit }')
[ -n "$kernel_pkg" ] || die "apt knows no linux-image-rpi:armel (apt-get update?)"
want="$kernel_pkg ${GUEST_PACKAGES[*]}"
if [ "$(cat "$E/debs/.stamp" 2>/dev/null)" != "$want" ]; then
  log "downloading armel guest packages: $want"
  rm -f "$E/debs/"*.deb
  ( cd "$E/debs" && apt-get -o APT::Sandbox::User=root download -qq "$kernel_pkg:armel" "${GUEST_PACKAGES[@]/%/:armel}" ) \
    || die "apt-get download of the guest packages failed"
  echo "$want" > "$E/debs/.stamp"
fi

# --- 2. kernel and initramfs ---------------------------------------------------
kdir=$E/kernel
if [ "$(cat "$kdir/.stamp" 2>/dev/null)" != "$kernel_pkg" ]; then
  rm -rf "$kdir"
  mkdir -p "$kdir"
  dpkg -x "$E/debs/${kernel_pkg}"_*_armel.deb "$kdir"
  echo "$kernel_pkg" > "$kdir/.stamp"
fi
kver=${kernel_pkg#linux-image-}
vmlinuz=$kdir/boot/vmlinuz-$kver
dtbdir=$kdir/usr/lib/linux-image-$kver
moddir=$kdir/lib/modules/$kver
if [ ! -f "$vmlinuz" ] || [ ! -f "$dtbdir/bcm2835-rpi-a-plus.dtb" ]; then die "the kernel package has no $vmlinuz or bcm2835 dtbs"; fi

# Modules the guest loads (with their .modinfo depends=, deps first):
# vfat for the card, nf_tables and what the service ruleset uses, veth for
# the guest's "Internet", softdog as the watchdog, the bcm2835 RNG.
# crc32c_generic must be there before libcrc32c asks the crypto API for it.
MODULES=(crc32c_generic fat vfat nls_cp437 nls_ascii
         nf_tables nft_ct nft_limit nft_connlimit nft_nat nft_redir nft_chain_nat
         veth softdog bcm2835_rng)
declare -A mod_path=() mod_seen=()
while IFS= read -r ko; do
  name=$(basename "$ko" .ko)
  mod_path[${name//-/_}]=${ko#"$moddir/"}
done < <(find "$moddir" -name '*.ko')
mod_order=()
mod_visit() {
  local name=${1//-/_} dep deps tmpf
  [ -n "${mod_seen[$name]:-}" ] && return 0
  mod_seen[$name]=1
  [ -n "${mod_path[$name]:-}" ] || die "kernel module $name not in $kernel_pkg"
  tmpf=$(mktemp)
  arm-linux-gnueabi-objcopy -O binary -j .modinfo "$moddir/${mod_path[$name]}" "$tmpf"
  deps=$(tr '\0' '\n' < "$tmpf" | sed -n 's/^depends=//p')
  rm -f "$tmpf"
  for dep in ${deps//,/ }; do mod_visit "$dep"; done
  mod_order+=("$name")
}
for m in "${MODULES[@]}"; do mod_visit "$m"; done

base_key=$(printf '%s\n' "$want" "${mod_order[*]}" "base-v2" | sha256sum | cut -c1-16)
base=$E/initramfs-base-$base_key.cpio.gz
if [ ! -f "$base" ]; then
  log "assembling the initramfs base ($base_key)"
  r=$E/initramfs-base.root
  rm -rf "$r" "$E"/initramfs-base-*.cpio.gz
  mkdir -p "$r"
  for p in "${GUEST_PACKAGES[@]}"; do dpkg -x "$(ls "$E/debs/${p}"_*_armel.deb)" "$r"; done
  rm -rf "${r:?}/usr/share" "${r:?}/usr/lib/arm-linux-gnueabi/gconv" "${r:?}/etc/init.d"
  # BusyBox applets wherever the packages left the name free.
  while IFS= read -r applet; do
    [ -e "$r/$applet" ] || [ -L "$r/$applet" ] || { mkdir -p "$r/$(dirname "$applet")"; ln -s /bin/busybox "$r/$applet"; }
  done < <(qemu-arm-static -cpu arm1176 "$r/bin/busybox" --list-full)
  for m in "${mod_order[@]}"; do
    install -D -m 0644 "$moddir/${mod_path[$m]}" "$r/lib/modules/$kver/${mod_path[$m]}"
    case $m in
      softdog) echo "${mod_path[$m]} soft_margin=5" ;;
      *) echo "${mod_path[$m]}" ;;
    esac
  done > "$E/modules.order"
  sed -i "s|^|$kver/|" "$E/modules.order"
  install -D -m 0644 "$E/modules.order" "$r/lib/pisec-emu/modules.order"
  mkdir -p "$r"/{proc,sys,dev,run,tmp,root,mnt,newroot,media,var/lib,var/log,var/tmp,etc/insserv.conf.d,etc/init.d,usr/libexec/pisec-emu}
  chmod 1777 "$r/tmp" "$r/var/tmp"
  ln -sfn /run "$r/var/run"
  # OpenRC without a full distribution: the groups sysinit's checkpath uses,
  # and an empty insserv configuration for Debian's lsb2rcconf.
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
  printf 'root:x:0:\ntty:x:5:\nuucp:x:10:\nnogroup:x:65534:\n' > "$r/etc/group"
  : > "$r/etc/insserv.conf"
  : > "$r/etc/fstab"
  find "$r" -exec touch -h -d @0 {} +
  ( cd "$r" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible ) | gzip -n -9 > "$base.tmp"
  mv "$base.tmp" "$base"
  rm -rf "$r"
fi

# The part that changes with this repository: guest scripts, the SNTP fixture.
ovl=$E/initramfs-overlay.root
rm -rf "$ovl"
install -D -m 0755 "$GUEST/init" "$ovl/init"
for f in boot test sntp-start running-timer; do install -D -m 0755 "$GUEST/$f" "$ovl/lib/pisec-emu/$f"; done
install -D -m 0644 "$GUEST/inittab" "$ovl/etc/inittab"
for s in devfs dmesg mdev hwdrivers modloop modules sysctl hostname bootmisc syslog swclock \
         localmount killprocs mount-ro savecache; do
  install -D -m 0755 "$GUEST/init.d/standin" "$ovl/etc/init.d/$s"
done
install -m 0755 "$GUEST/init.d/networking" "$GUEST/init.d/local" "$ovl/etc/init.d/"
install -D -m 0755 "$FIX_ARM/sntp_server" "$ovl/usr/libexec/pisec-emu/sntp_server"
find "$ovl" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
( cd "$ovl" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible ) | gzip -n -9 > "$E/initramfs-overlay.cpio.gz"
rm -rf "$ovl"

# --- 3. the cards ---------------------------------------------------------------
# A test release key, made once (the real one never leaves the release machine).
if [ ! -f "$E/keys/release.sec" ]; then
  mkdir -p "$E/keys"
  "$PISECD_HOST" keygen -p "$E/keys/release.pub" -s "$E/keys/release.sec" >/dev/null
fi
tree=$E/card-good
rm -rf "$tree" "$E/card-tampered"
mkdir -p "$tree/payload" "$tree/pisec"
install -m 0644 scripts/release/boot/config.txt scripts/release/boot/cmdline.txt "$tree/"
install -m 0644 "$vmlinuz" "$tree/vmlinuz"
install -m 0644 "$dtbdir/bcm2835-rpi-b.dtb" "$dtbdir/bcm2835-rpi-a-plus.dtb" "$tree/"
cat "$base" "$E/initramfs-overlay.cpio.gz" > "$tree/initrd.img"
scripts/release/apkovl.sh -c scripts/emulate/pisecd.toml -k "$E/keys/release.pub" -o "$tree/pisec.apkovl.tar.gz"
install -m 0755 "$FIX_ARM/http_payload" "$tree/payload/app"
install -m 0755 "$PISECD_ARM" "$tree/pisec/pisecd"
PISECD=$PISECD_HOST scripts/release/sign.sh -s "$E/keys/release.sec" -r "$tree" \
  config.txt cmdline.txt vmlinuz bcm2835-rpi-b.dtb bcm2835-rpi-a-plus.dtb initrd.img \
  pisec.apkovl.tar.gz pisec/pisecd payload/app
scripts/release/card.sh -o "$E/sd-good.img" "$tree"
# The tampered card: the same signed tree, one bit of the payload flipped.
cp -a "$tree" "$E/card-tampered"
off=4096
byte=$(od -An -tu1 -j "$off" -N1 "$E/card-tampered/payload/app" | tr -d ' ')
printf '%b' "\\0$(printf '%03o' $((byte ^ 1)))" | dd of="$E/card-tampered/payload/app" bs=1 seek="$off" conv=notrunc status=none
scripts/release/card.sh -o "$E/sd-tampered.img" "$E/card-tampered"
log "cards: $(stat -c '%s' "$E/sd-good.img") bytes each, initrd.img $(stat -c %s "$tree/initrd.img") bytes"

# --- 4./5. boots -------------------------------------------------------------------
FAILS=()
CONSOLE=
rm -f "$E"/*.console "$E"/*.times  # a skipped boot must not report an older run's console
check() {  # check NAME COMMAND...: a named assertion
  local name=$1; shift
  if "$@"; then printf 'ok: %s\n' "$name"; else printf 'FAIL: %s\n' "$name"; FAILS+=("$name"); fi
}
res() {  # res NAME: the last value the guest reported for NAME ("" if none)
  sed -n "s/^[0-9.]* EMU-RESULT $1=//p" "$CONSOLE" | tail -n 1 | tr -d '\r'
}
res_ts() {  # res_ts NAME: host time when the guest reported NAME
  awk -v k="EMU-RESULT $1=" 'index($0, k) { t = $1 } END { print t }' "$CONSOLE"
}
blob() {  # blob NAME: a file the guest printed in base64
  awk -v b="EMU-BLOB $1" -v e="EMU-BLOB-END $1" '
    { sub(/\r$/, ""); line = $0; sub(/^[0-9.]* /, "", line) }
    line == e { on = 0 } on { print line } line == b { on = 1 }' "$CONSOLE" | base64 -d 2>/dev/null || true
}
console_tail() {
  echo "---- last 60 lines of the guest console ($CONSOLE) ----"
  sed 's/^[0-9.]* //' "$CONSOLE" | awk '/^EMU-BLOB-END/ { on = 0 } !on { print } /^EMU-BLOB / { on = 1; print "  (base64 left out)" }' | tail -n 60
  echo "----"
}
# boot NAME IMAGE MODE TIMEOUT: boots the card as the firmware would (kernel,
# dtb, initramfs and cmdline.txt read from its FAT partition), console to
# $E/NAME.console with the host's arrival time on each line. Sets BOOT_RC,
# BOOT_END.
boot() {
  local name=$1 img=$2 mode=$3 limit=$4
  local fw=$E/$name.fw
  rm -rf "$fw"; mkdir -p "$fw"
  for f in vmlinuz bcm2835-rpi-a-plus.dtb initrd.img cmdline.txt; do
    mcopy -n -i "$img@@1M" "::$f" "$fw/$f" || die "$name: cannot read $f from the card"
  done
  CONSOLE=$E/$name.console
  local append
  append="$(tr -d '\n' < "$fw/cmdline.txt") loglevel=4 initcall_blacklist=bcm2835_power_driver_init pisec_emu=$mode pisec_now=$(date +%s)"
  log "boot $name ($mode): qemu-system-arm -M raspi1ap, hard timeout ${limit}s"
  BOOT_START=$EPOCHREALTIME
  set +e
  timeout -k 5 "$limit" qemu-system-arm -M raspi1ap -m 512 -icount shift=auto -no-reboot -display none -monitor none \
      -serial stdio -kernel "$fw/vmlinuz" -dtb "$fw/bcm2835-rpi-a-plus.dtb" -initrd "$fw/initrd.img" \
      -append "$append" -drive "file=$img,if=sd,format=raw,snapshot=on" < /dev/null 2>&1 \
    | while IFS= read -r line; do
        line=${line%$'\r'}
        printf '%s %s\n' "$EPOCHREALTIME" "$line"
        case $line in EMU-STEP*|EMU-FAIL*) printf '  guest: %s\n' "$line" >&2 ;; esac
      done > "$CONSOLE"
  BOOT_RC=${PIPESTATUS[0]}
  set -e
  BOOT_END=$EPOCHREALTIME
  echo "$BOOT_START $BOOT_END $BOOT_RC" > "$E/$name.times"
  log "boot $name: qemu exit $BOOT_RC after $(awk -v a="$BOOT_START" -v b="$BOOT_END" 'BEGIN { printf "%.1f", b - a }') s"
}
fnum() { awk -v a="$1" -v b="$2" "BEGIN { exit !($3) }"; }

# Boot 1: the good card.
boot good "$E/sd-good.img" good "$BOOT_TIMEOUT_S"
good_console=$CONSOLE
st=$(blob status)
echo "status --json (boot 1, read over the serial console):"
echo "$st" | jq -c . 2>/dev/null || echo "$st"
check "boot 1: QEMU ended by the guest, not the ${BOOT_TIMEOUT_S}s timeout" test "$BOOT_RC" -ne 124 -a "$BOOT_RC" -ne 137
check "boot 1: no EMU-FAIL from the guest's boot script" bash -c "! grep -q EMU-FAIL '$CONSOLE'"
check "boot 1: the apkovl was extracted over the RAM root" test -n "$(res apkovl)"
check "boot 1: softdog registered (not the bcm2835 watchdog)" bash -c "[[ '$(res softdog)' == /dev/watchdog[1-9]* ]]"
check "boot 1: rc-service pisecd status exits 0 (OpenRC started it)" test "$(res rc_service_status_rc)" = 0
check "boot 1: pisecd runs under supervise-daemon" bash -c "[[ '$(res supervisor)' == *supervise-daemon* ]]"
check "boot 1: pisecd status --json exits 0" test "$(res status_rc)" = 0
check "boot 1: state running" test "$(echo "$st" | jq -r .state)" = running
check "boot 1: gates entropy,clock,integrity,arch all passed" test \
  "$(echo "$st" | jq -r '[.gates[] | .name + ":" + .status] | join(",")')" = "entropy:passed,clock:passed,integrity:passed,arch:passed"
check "boot 1: firewall service ruleset applied and verified" test "$(echo "$st" | jq -r '.firewall.mode + "," + (.firewall.verified|tostring)')" = "service,true"
check "boot 1: payload running" test "$(echo "$st" | jq -r .payload.state)" = running
echo "$st" | jq -r '.gates[] | "  gate \(.name): \(.status) in \(.duration_ms) ms: \(.detail)"' 2>/dev/null || true
check "boot 1: the clock gate set the guest clock (was 1970) to the host's time ±120 s" \
  fnum "$(res guest_date)" "$(res_ts guest_date)" 'a - b < 120 && b - a < 120'
check "boot 1: payload uid/gid 65534" test "$(res payload_Uid)/$(res payload_Gid)" = "65534/65534"
check "boot 1: payload CapEff 0, NoNewPrivs 1, seccomp filter" test \
  "$(res payload_CapEff),$(res payload_NoNewPrivs),$(res payload_Seccomp)" = "0000000000000000,1,2"
check "boot 1: payload in its own pid namespace, host network" test "$(res payload_pidns_own),$(res payload_netns_same)" = "yes,yes"
check "boot 1: wan → 10.0.2.2:80 answered by the payload (HTTP 200, its body)" test \
  "$(res http80_status) / $(res http80_body)" = "HTTP/1.1 200 OK / hello from the pisec payload"
check "boot 1: wan → 10.0.2.2:8080 directly: no answer, not even a reset (dropped; nc waited $(res http8080_secs) s)" \
  bash -c "[ -z '$(res http8080_status)' ] && [ '$(res http8080_err)' = 'nc: timed out' ] && awk 'BEGIN { exit !($(res http8080_secs) >= 3.5) }'"
check "boot 1: pisecd holds the watchdog device open" test "$(res watchdog_fds_of_pisecd)" = 1
check "boot 1: rc-service pisecd stop exits 0" test "$(res stop_rc)" = 0
check "boot 1: after the stop no pisecd and no payload" test "$(res stopped_daemon_pid),$(res stopped_payload_procs)" = "none,0"
check "boot 1: watchdog magic-closed on the orderly stop: no reset in 10 s (margin 5 s)" test -n "$(res alive_after_stop)"
check "boot 1: the kernel did not complain the watchdog was left running" bash -c "! grep -q 'watchdog did not stop' '$CONSOLE'"
broken=$(blob broken_out)
echo "rc-service pisecd start, broken config (exit $(res broken_start_rc)):"
while IFS= read -r l; do printf '  | %s\n' "$l"; done <<<"$broken"
check "boot 1: rc-service pisecd start with a broken config fails" bash -c "[ -n '$(res broken_start_rc)' ] && [ '$(res broken_start_rc)' != 0 ]"
check "boot 1: ... naming check-config's reason (the bad key)" grep -q 'emulation_bogus_key' <<<"$broken"
check "boot 1: ... and pisecd is not running" test "$(res broken_daemon_pid)" = none
check "boot 1: restarted with the good config: running again" test "$(res start2_status_rc)" = 0
check "boot 1: SIGSTOP sent to pisecd" test -n "$(res sigstop_at)"
check "boot 1: the guest did not outlive the SIGSTOP by 30 s" test -z "$(res no_reset_after_sigstop)"
# On the guest's own clock: the kernel's timestamp of softdog's reboot minus
# the uptime at SIGSTOP. pisecd pets every timeout/2, so 2.5–5 s is expected.
reboot_at=$(sed -n 's/^[0-9.]* \[ *\([0-9.]*\)\] softdog: Initiating system reboot.*/\1/p' "$CONSOLE" | tail -n 1)
reset_s=$(awk -v a="$(res sigstop_at)" -v b="${reboot_at:-0}" 'BEGIN { printf "%.1f", b - a }')
check "boot 1: softdog reset the board 2–6 s after the SIGSTOP (timeout 5 s; took ${reset_s} s)" \
  fnum "$reset_s" 0 'a >= 2 && a <= 6'
check "boot 1: QEMU exited on that reset (-no-reboot) within 10 s of the SIGSTOP" \
  fnum "$(res_ts sigstop_at)" "$BOOT_END" 'b - a <= 10'
check "boot 1: the kernel says softdog initiated the reboot" grep -q 'softdog: Initiating system reboot' "$CONSOLE"
if [ ${#FAILS[@]} -gt 0 ]; then
  console_tail
  echo "pisecd's log (/var/log/pisecd.log in the guest):"; blob daemon_log | tail -n 30
fi

# Boot 2: the tampered card (EMU_SKIP_TAMPERED=1 leaves it out while debugging).
fails_before=${#FAILS[@]}
if [ -z "${EMU_SKIP_TAMPERED:-}" ]; then
boot tampered "$E/sd-tampered.img" tampered "$TAMPERED_TIMEOUT_S"
st2=$(blob status)
echo "status --json (boot 2, tampered card):"
echo "$st2" | jq -c . 2>/dev/null || echo "$st2"
check "boot 2: QEMU ended by the guest, not the ${TAMPERED_TIMEOUT_S}s timeout" test "$BOOT_RC" -ne 124 -a "$BOOT_RC" -ne 137
check "boot 2: pisecd status exits 2 (quarantined)" test "$(res status_rc)" = 2
check "boot 2: state quarantined" test "$(echo "$st2" | jq -r .state)" = quarantined
check "boot 2: integrity gate failed, naming payload/app" bash -c \
  "[[ '$(echo "$st2" | jq -r '.gates[] | select(.name == "integrity") | .status + " " + .detail')' == failed*payload/app* ]]"
check "boot 2: the arch gate never ran" test "$(echo "$st2" | jq -r '.gates[] | select(.name == "arch") | .status')" = pending
check "boot 2: firewall stays in lockdown" test "$(echo "$st2" | jq -r .firewall.mode)" = lockdown
check "boot 2: the payload never started" test "$(echo "$st2" | jq -r '.payload.state + "," + (.payload.pid|tostring) + "," + (.payload.restarts|tostring)'),$(res payload_procs)" = "stopped,0,0,0"
check "boot 2: wan → 10.0.2.2:80 gets no answer (lockdown drops it)" test "$(res http80_status)/$(res http80_err)" = "/nc: timed out"
if [ ${#FAILS[@]} -gt "$fails_before" ]; then
  console_tail
  echo "pisecd's log:"; blob daemon_log | tail -n 30
fi
fi

# --- measurements ------------------------------------------------------------------
CONSOLE=$good_console
ticks=$(res pisecd_started_ticks)
run_at=$(res running_seen_at)
echo
echo "== measured on the emulated ARM1176 (qemu-system-arm -M raspi1ap, TCG on this host) =="
printf 'pisecd binary (armv6, static): %s bytes\n' "$(res pisecd_size)"
if [ "$run_at" != none ] && [ -n "$run_at" ]; then
  awk -v r="$run_at" -v t="$ticks" -v s2="$(res stage2_uptime)" -v p="$(res payload_seen_at)" 'BEGIN {
    printf "boot to running: %.1f s from kernel start (guest uptime when status first exited 0; 0.25 s polls)\n", r
    printf "                 %.1f s from pisecd start (its /proc starttime: %.2f s after kernel start)\n", r - t / 100, t / 100
    printf "                 (status first showed the payload running %.1f s after pisecd start)\n", p - t / 100
    printf "                 (stage 2 of the initramfs at %.1f s)\n", s2 }'
  awk -v t="$ticks" -v at="$(res status_at)" -v up="$(jq -r .uptime_ms <<<"$st")" 'BEGIN {
    printf "                 of which %.1f s from pisecd exec to its main loop (status uptime_ms 0), before the lockdown\n", at - up / 1000 - t / 100 }'
else
  echo "boot to running: not seen"
fi
printf 'pisecd VmRSS %s kB (peak VmHWM %s kB), Private_Dirty %s kB, Pss %s kB, %s threads\n' \
  "$(res pisecd_VmRSS_kB)" "$(res pisecd_VmHWM_kB)" "$(res pisecd_Private_Dirty_kB)" "$(res pisecd_Pss_kB)" "$(res pisecd_threads)"
printf 'pisecd largest private dirty mappings (kB:mapping): %s\n' "$(res pisecd_smaps_top)"
printf 'guest MemAvailable while running: %s kB of 512 MB\n' "$(res mem_available_kB)"
printf 'orderly stop (rc-service pisecd stop): %s s\n' "$(res stop_secs)"
printf 'emulation step: %d s\n' $((SECONDS - T_START))

if [ ${#FAILS[@]} -gt 0 ]; then
  # Last, where a shortened log keeps it: why a boot hung or a stop failed.
  for c in "$good_console" "$E/tampered.console"; do
    [ -s "$c" ] || continue
    CONSOLE=$c
    if [ -n "$(res stop_rc)" ] && [ "$(res stop_rc)" != 0 ]; then
      echo "the stop failed (exit $(res stop_rc) after $(res stop_secs) s); the guest's processes then:"
      blob stop_diag | sed 's/^/  | /'
    fi
    read -r t0 t1 rc < "${c%.console}.times"
    last=$(tail -n 1 "$c")
    awk -v n="${c##*/}" -v a="$t0" -v b="$t1" -v l="${last%% *}" -v rc="$rc" 'BEGIN {
      printf "%s: QEMU exit %s after %.0f s; the console last spoke at %.0f s, %.0f s before that:\n", n, rc, b - a, l - a, b - l }'
    echo "  | ${last#* }"
  done
  echo "emulate: ${#FAILS[@]} check(s) failed:" >&2
  printf '  - %s\n' "${FAILS[@]}" >&2
  exit 1
fi
echo "emulate: all checks passed"
