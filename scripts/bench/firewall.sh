#!/usr/bin/env bash
# Applying the service ruleset: `pisecd firewall apply` (one libnftnl batch plus
# read-back verification) against `nft -f` of pisecd's own rendered text
# (the same atomic delete-and-recreate, no verification), side by side in one
# fresh network namespace. Prints medians, spread and the ratio; asserts nothing.
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

ip netns exec "$NS" hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$TMP/times.json" \
  -n "pisecd firewall apply" "${pisecd_cmd[*]}" -n "nft -f (rendered)" "${nft_cmd[*]}" >/dev/null 2>&1
ms() { jq -r ".results[$1] | \"\\(.median * 1000) \\(.min * 1000) \\(.max * 1000)\"" "$TMP/times.json"; }
read -r med_p min_p max_p < <(ms 0)
read -r med_n min_n max_n < <(ms 1)
rules=$(ip netns exec "$NS" nft list table inet pisec | grep -cE '^\s+(ct|ip|icmp|tcp|udp|meta|iif|oif)')
printf 'firewall apply, service ruleset (%d rules), %d runs each (hyperfine -N), ms median (min–max); load: %s\n' \
  "$rules" "$RUNS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  pisecd firewall apply (incl. read-back verify): %6.2f (%.2f–%.2f)\n' "$med_p" "$min_p" "$max_p"
printf '  nft -f of the rendered text:                    %6.2f (%.2f–%.2f)\n' "$med_n" "$min_n" "$max_n"
r=$(awk -v a="$med_p" -v b="$med_n" 'BEGIN {printf "%.2f", a / b}')
echo "  ratio pisecd/nft: $r"
if [ -n "${BENCH_SUMMARY:-}" ]; then
  # shellcheck source=scripts/bench/common.bash
  source "$(dirname "$0")/common.bash"
  summary "firewall apply, service ruleset ($rules rules), ms (aim ≤ 0.5×)" \
    "$(printf '%.2f (%.2f–%.2f)' "$med_p" "$min_p" "$max_p")" \
    "nft -f $(printf '%.2f (%.2f–%.2f)' "$med_n" "$min_n" "$max_n")" "${r}×" \
    "$(awk -v r="$r" 'BEGIN {print (r <= 0.5) ? "met" : "not met"}')"
fi
