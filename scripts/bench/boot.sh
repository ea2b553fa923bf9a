#!/usr/bin/env bash
# Boot to serving in the demo's namespaces (scripts/demo.sh): from launch to
# the first HTTP answer to a client in the "wan" namespace on 10.99.0.2:80,
# redirected by the service ruleset to the payload on 8080. Two SNTP test
# servers (tests/fixtures/sntp_server) on the device's loopback.
#   - pisecd: `pisecd run` with the demo's configuration (entropy, clock with
#     both servers, signed manifest, arch, firewall, sandboxed payload)
#   - the seed's shell stack, the same steps by hand: `nft -f` of the ruleset
#     pisecd renders, an ntpdate-style query of both servers (payload.c, mode
#     sntp: one request each, reply checked, nothing set), `signify -V` and
#     `sha256sum -c` of the manifest, then bwrap with tini running the payload
# BENCH_BOOT_RUNS (5) runs each, alternating; the clock is never set.
set -euo pipefail
# shellcheck source=scripts/bench/common.bash
source "$(dirname "$0")/common.bash"
build_payload
RUNS=${BENCH_BOOT_RUNS:-5}
FIX=$BENCH_TOOLS/fixtures
mkdir -p "$FIX"
for f in sntp_server http_payload; do
  if [ ! -x "$FIX/$f" ] || [ "$PISEC_SOURCE/tests/fixtures/$f.cpp" -nt "$FIX/$f" ]; then
    g++ -std=c++20 -O2 -static -o "$FIX/$f" "$PISEC_SOURCE/tests/fixtures/$f.cpp"
  fi
done

DEV=pisec-bench-dev-$$ WAN=pisec-bench-wan-$$
WORK=$(mktemp -d /tmp/pisec-bench-boot.XXXXXX); chmod 0755 "$WORK"
stop_dev() {  # everything in the device namespace but the SNTP servers
  local p
  for p in $(ip netns pids "$DEV" 2>/dev/null); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sntp_server ] || kill -KILL "$p" 2>/dev/null || true
  done
  ip netns exec "$DEV" nft delete table inet pisec 2>/dev/null || true
}
cleanup() {
  set +e
  [ -n "${daemon:-}" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  for ns in "$DEV" "$WAN"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$DEV"; ip netns add "$WAN"
ip link add "bd$$" netns "$DEV" type veth peer name "bw$$" netns "$WAN"
ip -n "$DEV" addr add 10.99.0.2/24 dev "bd$$"; ip -n "$WAN" addr add 10.99.0.1/24 dev "bw$$"
for ns in "$DEV" "$WAN"; do ip -n "$ns" link set lo up; done
ip -n "$DEV" link set "bd$$" up; ip -n "$WAN" link set "bw$$" up

mkdir -p "$WORK/boot/payload"
cp "$FIX/http_payload" "$WORK/boot/payload/app"
"$PISECD" keygen -p "$WORK/release.pub" -s "$WORK/release.sec" >/dev/null
"$PISECD" manifest create -o "$WORK/boot/MANIFEST" --root "$WORK/boot" payload/app >/dev/null
"$PISECD" manifest sign -s "$WORK/release.sec" -m "$WORK/boot/MANIFEST" >/dev/null
ip netns exec "$DEV" "$FIX/sntp_server" --listen 127.0.0.1:12301 >/dev/null 2>&1 &
ip netns exec "$DEV" "$FIX/sntp_server" --listen 127.0.0.1:12302 >/dev/null 2>&1 &

cat > "$WORK/pisecd.toml" <<CFG
[daemon]
control_socket = "$WORK/control.sock"
state_dir = "$WORK/state"
[gates.entropy]
timeout_s = 10
[gates.clock]
servers = ["127.0.0.1:12301", "127.0.0.1:12302"]
min_sources = 2
set_clock = false
timeout_s = 10
[gates.integrity]
manifest = "$WORK/boot/MANIFEST"
public_key = "$WORK/release.pub"
root = "$WORK/boot"
[gates.arch]
target = "host"
[firewall]
public_port = 80
app_port = 8080
[payload]
command = ["$WORK/boot/payload/app", "--port", "8080"]
ro_binds = ["/usr", "/lib", "/lib64", "/bin", "/etc", "$WORK/boot/payload"]
uid = 65534
gid = 65534
[logs]
stderr = false
CFG
"$PISECD" check-config -c "$WORK/pisecd.toml" >/dev/null
{
  echo "table inet pisec"
  echo "delete table inet pisec"
  "$PISECD" firewall render -c "$WORK/pisecd.toml"
} > "$WORK/ruleset.nft"

# The seed's way, one step after the other; the last becomes the payload.
cat > "$WORK/shell-boot.sh" <<SH
set -e
nft -f "$WORK/ruleset.nft"
"$BENCH_PAYLOAD" sntp 127.0.0.1:12301 127.0.0.1:12302 >/dev/null
signify-openbsd -V -q -p "$WORK/release.pub" -m "$WORK/boot/MANIFEST" -x "$WORK/boot/MANIFEST.sig"
cd "$WORK/boot" && sha256sum --quiet --strict -c MANIFEST
exec bwrap --unshare-all --share-net --unshare-user --uid 65534 --gid 65534 --die-with-parent \
  --ro-bind /usr /usr --ro-bind /lib /lib --ro-bind /lib64 /lib64 --ro-bind /bin /bin \
  --ro-bind "$WORK/boot/payload" "$WORK/boot/payload" --proc /proc --dev /dev \
  -- tini -s -- "$WORK/boot/payload/app" --port 8080
SH

# served: poll from the wan until the payload answers through the redirect.
served() {
  # shellcheck disable=SC2016  # for the inner bash
  timeout 30 ip netns exec "$WAN" bash -c 'for _ in $(seq 3000); do
    curl -sf --connect-timeout 0.05 -m 0.5 -o /dev/null http://10.99.0.2/ && exit 0; sleep 0.005; done; exit 1'
}
for _ in $(seq 50); do "$BENCH_PAYLOAD" sntp 127.0.0.1:12301 >/dev/null 2>&1 && break; sleep 0.05; done 2>/dev/null || true
p_ms="" s_ms=""
for _ in $(seq "$RUNS"); do
  t0=$(date +%s%N)
  ip netns exec "$DEV" "$PISECD" run -c "$WORK/pisecd.toml" >"$WORK/pisecd.log" 2>&1 &
  daemon=$!
  served || { echo "boot: pisecd never served" >&2; tail "$WORK/pisecd.log" >&2; exit 1; }
  p_ms+="$((($(date +%s%N) - t0) / 1000000)) "
  kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
  stop_dev

  t0=$(date +%s%N)
  ip netns exec "$DEV" bash "$WORK/shell-boot.sh" >"$WORK/shell.log" 2>&1 &
  stack=$!
  served || { echo "boot: the shell stack never served" >&2; tail "$WORK/shell.log" >&2; exit 1; }
  s_ms+="$((($(date +%s%N) - t0) / 1000000)) "
  stop_dev; wait "$stack" 2>/dev/null || true
done
ps=$(echo "$p_ms" | tr ' ' '\n' | awk NF | stats) ss=$(echo "$s_ms" | tr ' ' '\n' | awk NF | stats)
echo "boot to serving (demo namespaces, local SNTP servers), ms median (min–max), $RUNS runs each; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  pisecd run:              $(echo "$ps" | fmt_stats 1 0)   runs: ${p_ms% }"
echo "  shell stack (seed's way): $(echo "$ss" | fmt_stats 1 0)   runs: ${s_ms% }"
pm=${ps%% *} sm=${ss%% *}
echo "  ratio pisecd/shell: $(ratio "$pm" "$sm")"
summary "boot to serving, demo namespace, local SNTP, ms (aim faster)" "$(echo "$ps" | fmt_stats 1 0)" \
  "shell stack (nft -f, SNTP query, signify + sha256sum -c, bwrap + tini) $(echo "$ss" | fmt_stats 1 0)" \
  "$(ratio "$pm" "$sm")×" "$(awk -v p="$pm" -v s="$sm" 'BEGIN {print (p < s) ? "met" : "not met"}')"
