#!/usr/bin/env bash
# The README's "run it" command: pisecd with the example payload in throwaway
# network namespaces, then its status, then a request from the "Internet".
#
#   wan (10.99.0.1) ──veth── dev (10.99.0.2): pisecd, firewall, payload on :8080
#
# Everything lives in namespaces this script creates and deletes; the host's
# firewall, clock and network are not touched (set_clock = false).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (network namespaces, nftables)" >&2; exit 1; }

if [ ! -x build/host/pisecd ] || [ ! -x build/host/fixtures/http_payload ]; then
  scripts/setup.sh
  cmake --preset host >/dev/null
  cmake --build --preset host -j "$(nproc)"
fi
PISECD=$ROOT/build/host/pisecd
FIX=$ROOT/build/host/fixtures

DEV=pisec-demo-dev-$$ WAN=pisec-demo-wan-$$
WORK=$(mktemp -d /tmp/pisec-demo.XXXXXX)
chmod 0755 "$WORK"
cleanup() {
  set +e
  [ -n "${DAEMON:-}" ] && kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  for ns in "$DEV" "$WAN"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "network: namespaces $WAN and $DEV joined by veth"
ip netns add "$DEV"; ip netns add "$WAN"
ip link add "vd$$" netns "$DEV" type veth peer name "vw$$" netns "$WAN"
ip -n "$DEV" addr add 10.99.0.2/24 dev "vd$$"; ip -n "$WAN" addr add 10.99.0.1/24 dev "vw$$"
for ns in "$DEV" "$WAN"; do ip -n "$ns" link set lo up; done
ip -n "$DEV" link set "vd$$" up; ip -n "$WAN" link set "vw$$" up

step "artifacts: payload, manifest signed with a fresh key"
mkdir -p "$WORK/boot/payload"
cp "$FIX/http_payload" "$WORK/boot/payload/app"
"$PISECD" keygen -p "$WORK/release.pub" -s "$WORK/release.sec" >/dev/null
"$PISECD" manifest create -o "$WORK/boot/MANIFEST" --root "$WORK/boot" payload/app
"$PISECD" manifest sign -s "$WORK/release.sec" -m "$WORK/boot/MANIFEST"
cat "$WORK/boot/MANIFEST"

step "time: two SNTP servers on the device's loopback (test fixtures)"
( ip netns exec "$DEV" "$FIX/sntp_server" --listen 127.0.0.1:12301 >/dev/null 2>&1 & )
( ip netns exec "$DEV" "$FIX/sntp_server" --listen 127.0.0.1:12302 >/dev/null 2>&1 & )

cat > "$WORK/pisecd.toml" <<CFG
[daemon]
control_socket = "$WORK/control.sock"
state_dir = "$WORK/state"

[gates.entropy]
timeout_s = 10

[gates.clock]
servers = ["127.0.0.1:12301", "127.0.0.1:12302"]
min_sources = 2
set_clock = false            # the demo never touches this machine's clock
timeout_s = 10

[gates.integrity]
manifest = "$WORK/boot/MANIFEST"
public_key = "$WORK/release.pub"
root = "$WORK/boot"

[gates.arch]
target = "host"              # on the Pi: "armv6"

[firewall]
public_port = 80
app_port = 8080

[payload]
command = ["$WORK/boot/payload/app", "--port", "8080"]
ro_binds = ["/usr", "/lib", "/lib64", "/bin", "/etc", "$WORK/boot/payload"]
uid = 65534
gid = 65534

[watchdog]
probe = "http://127.0.0.1:8080/"
probe_interval_ms = 5000

[logs]
stderr = false
CFG
"$PISECD" check-config -c "$WORK/pisecd.toml"

step "pisecd run (console)"
ip netns exec "$DEV" "$PISECD" run -c "$WORK/pisecd.toml" &
DAEMON=$!
for _ in $(seq 100); do
  rc=0; "$PISECD" status -s "$WORK/control.sock" >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] && break
  sleep 0.1
done

step "pisecd status"
"$PISECD" status -s "$WORK/control.sock" || true

step "from the wan: curl http://10.99.0.2/ (port 80, redirected to the payload on 8080)"
ip netns exec "$WAN" curl -sS -m 3 http://10.99.0.2/ || echo "(no answer)"

step "from the wan: curl http://10.99.0.2:8080/ (the app port directly: dropped)"
if ip netns exec "$WAN" curl -sS -m 2 http://10.99.0.2:8080/ 2>/dev/null; then echo "(unexpected answer)"; else echo "dropped, as it should be"; fi

step "pisecd logs -n 5"
"$PISECD" logs -s "$WORK/control.sock" -n 5

step "the service ruleset (pisecd firewall render)"
"$PISECD" firewall render -c "$WORK/pisecd.toml" | head -25
echo "..."
