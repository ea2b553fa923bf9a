# Shared set-up for tests/integration/firewall_*.sh (sourced, not a test).
# Two throwaway namespaces joined by veth: "wan" (10.99.0.1, 10.99.0.3) and
# "dev" (10.99.0.2) where pisecd programs its table. Nothing outside them is touched.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root"; exit 77; }
command -v nft >/dev/null || { echo "skip: nft not installed"; exit 77; }
PISECD=${PISECD:-$PWD/build/host/pisecd}
PISEC_BUILD=${PISEC_BUILD:-$PWD/build/host}
PROBE=$PISEC_BUILD/fixtures/fw_probe
[ -x "$PROBE" ] || { echo "FAIL: missing fixture $PROBE"; exit 1; }

NAME=${NAME:-fw}
WAN=pisec-$NAME-wan-$$
DEV=pisec-$NAME-dev-$$
TMP=$(mktemp -d)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # Also what start_bg started in a subshell ($(start_bg ...) cannot add to
  # PIDS): anything left in the namespaces would outlive their names.
  for ns in "$WAN" "$DEV"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  done
  ip netns del "$WAN" 2>/dev/null || true
  ip netns del "$DEV" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
in_wan() { ip netns exec "$WAN" "$@"; }
in_dev() { ip netns exec "$DEV" "$@"; }

make_namespaces() {
  ip netns add "$WAN"
  ip netns add "$DEV"
  ip link add veth-wan netns "$WAN" type veth peer name veth-dev netns "$DEV"
  in_wan ip addr add 10.99.0.1/24 dev veth-wan
  in_wan ip addr add 10.99.0.3/24 dev veth-wan
  in_dev ip addr add 10.99.0.2/24 dev veth-dev
  in_wan ip link set lo up
  in_dev ip link set lo up
  in_wan ip link set veth-wan up
  in_dev ip link set veth-dev up
}

# write_config FILE [extra [firewall] lines...]
write_config() {
  local file=$1
  shift
  {
    printf '[gates.integrity]\nenabled = false\n[gates.clock]\nservers = ["10.99.0.1:123", "10.99.0.3:123"]\n'
    printf '[payload]\ncommand = ["/bin/true"]\nuid = 65534\ngid = 65534\n'
    printf '[firewall]\n'
    for line in "$@"; do printf '%s\n' "$line"; done
  } >"$file"
}

# start_bg NETNS CMD... : runs in the background, remembered for cleanup.
start_bg() {
  local ns=$1 out=$TMP/bg.$RANDOM
  shift
  ip netns exec "$ns" "$@" >"$out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do grep -q ready "$out" 2>/dev/null && { echo "$out"; return; }; sleep 0.1; done
  fail "background $* did not start: $(cat "$out")"
}

# Normalized `nft list table inet pisec` vs `pisecd firewall render`.
same_as_render() {
  local cfg=$1
  shift
  in_dev nft list table inet pisec | sed -E 's/ packets [0-9]+ bytes [0-9]+//' >"$TMP/listed"
  "$PISECD" firewall render -c "$cfg" "$@" >"$TMP/rendered"
  diff -u "$TMP/rendered" "$TMP/listed"
}
