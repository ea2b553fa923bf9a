#!/usr/bin/env bash
# The clock gate when the network comes up after pisecd (OpenRC starts it
# before `net`, and DHCP can be slower than the gates before the clock): a
# send that fails for lack of a route is not an answer, so the gate keeps
# trying until its deadline. Found on the emulated Pi 1, where it was hidden
# only because pisecd used to block ~7 s on getrandom() at start-up.
#   1. the route appears 2 s after the gate started: the gate passes;
#   2. it never appears: the gate fails at its deadline, naming the error.
source "$(dirname "$0")/lib.sh.inc"

make_wan 10.98.0.1/24 10.98.0.3/24
WAN=$T_WAN
for addr in 10.98.0.1 10.98.0.3; do
  ip netns exec "$WAN" "$FIXTURES/sntp_server" --listen "$addr:123" --offset 50 >"$T_DIR/sntp-$addr.log" 2>&1 &
done
for addr in 10.98.0.1 10.98.0.3; do
  for _ in $(seq 50); do grep -qs '^listening on ' "$T_DIR/sntp-$addr.log" && break; sleep 0.1; done
done

# clock_config FILE NET TIMEOUT_S: two servers, NET.1 and NET.3, port 123.
clock_config() {
  cat >"$1" <<TOML
[gates.integrity]
enabled = false
[gates.clock]
servers = ["$2.1:123", "$2.3:123"]
min_sources = 2
timeout_s = $3
retries = 1
request_timeout_ms = 500
[payload]
command = ["/bin/true"]
TOML
}
clock_config "$T_DIR/clock.toml" 10.98.0 8

# 1. No address and the link down: sendto() fails with "Network is unreachable".
ip netns exec "$T_NS" "$PISECD" clock-check -c "$T_DIR/clock.toml" >"$T_DIR/late.out" 2>&1 &
CHECK=$!
sleep 2
ip -n "$T_NS" addr add 10.98.0.2/24 dev veth-dev
ip -n "$T_NS" link set veth-dev up
rc=0
wait "$CHECK" || rc=$?
cat "$T_DIR/late.out"
check "the network came up 2 s late: the clock gate still passes (exit $rc)" test "$rc" -eq 0
check "... with both sources agreeing on +50 s" grep -qE '2/2 sources agree, offset \+(49\.9|50\.0)' "$T_DIR/late.out"

# 2. The route never comes: the gate fails at its deadline and says why.
clock_config "$T_DIR/none.toml" 10.97.0 3
start=$(date +%s%N)
set +e
out=$(ip netns exec "$T_NS" "$PISECD" clock-check -c "$T_DIR/none.toml" 2>&1)
rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "$out"
check "no route ever: the gate fails (exit $rc)" test "$rc" -eq 1
check "... at its deadline, not at once (${ms} ms; timeout_s = 3)" test "$ms" -ge 2500 -a "$ms" -lt 4000
check "... naming the error" grep -q 'send failed: Network is unreachable (then timeout)' <<<"$out"
finish
