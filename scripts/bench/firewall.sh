#!/usr/bin/env bash
# Applying the service ruleset: `pisecd firewall apply` (one libnftnl batch plus
# read-back verification) against `nft -f` of pisecd's own rendered text
# (the same atomic delete-and-recreate, no verification), side by side in one
# fresh network namespace. Prints both means and the ratio; asserts nothing.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "firewall bench: needs root (network namespace); skipped"; exit 0; }
PISECD=${PISECD:-$PWD/build/host/pisecd}
RUNS=${RUNS:-50}
NS=pisec-bench-fw-$$
TMP=$(mktemp -d)
trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"' EXIT
ip netns add "$NS"

cat >"$TMP/pisecd.toml" <<'TOML'
[gates.integrity]
enabled = false
[gates.clock]
servers = ["192.0.2.1", "192.0.2.2"]
[payload]
command = ["/bin/true"]
uid = 65534
[firewall]
egress = ["tcp:192.0.2.10:443", "tcp:2001:db8::/32:443"]
inbound = ["tcp:22:198.51.100.0/24"]
resolvers = ["192.0.2.53", "2001:db8::53"]
TOML
{
  # nft's spelling of the same atomic replace: create if missing, delete, recreate.
  echo "table inet pisec"
  echo "delete table inet pisec"
  "$PISECD" firewall render -c "$TMP/pisecd.toml"
} >"$TMP/ruleset.nft"

pisecd_cmd=("$PISECD" firewall apply -c "$TMP/pisecd.toml")
nft_cmd=(nft -f "$TMP/ruleset.nft")
ip netns exec "$NS" "${pisecd_cmd[@]}" >/dev/null
ip netns exec "$NS" "${nft_cmd[@]}"

if command -v hyperfine >/dev/null; then
  ip netns exec "$NS" hyperfine -N --warmup 3 --runs "$RUNS" --export-csv "$TMP/times.csv" \
    -n "pisecd firewall apply" "${pisecd_cmd[*]}" -n "nft -f (rendered)" "${nft_cmd[*]}" >/dev/null
  mean_pisecd=$(awk -F, 'NR==2 {print $2 * 1000}' "$TMP/times.csv")
  mean_nft=$(awk -F, 'NR==3 {print $2 * 1000}' "$TMP/times.csv")
else
  time_loop() {
    local start end
    start=$(date +%s%N)
    for _ in $(seq "$RUNS"); do ip netns exec "$NS" "$@" >/dev/null; done
    end=$(date +%s%N)
    awk -v d=$((end - start)) -v n="$RUNS" 'BEGIN {print d / n / 1e6}'
  }
  mean_pisecd=$(time_loop "${pisecd_cmd[@]}")
  mean_nft=$(time_loop "${nft_cmd[@]}")
fi
rules=$(ip netns exec "$NS" nft list table inet pisec | grep -cE '^\s+(ct|ip|icmp|tcp|udp|meta|iif|oif)')
printf 'firewall apply, service ruleset (%d rules), %d runs each:\n' "$rules" "$RUNS"
printf '  pisecd firewall apply (incl. read-back verify): %8.2f ms\n' "$mean_pisecd"
printf '  nft -f of the rendered text:                    %8.2f ms\n' "$mean_nft"
awk -v a="$mean_pisecd" -v b="$mean_nft" 'BEGIN {printf "  ratio pisecd/nft: %.2f\n", a / b}'
