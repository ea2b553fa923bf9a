#!/usr/bin/env bash
# Acceptance 3 of the firewall: the payload uid reaches DNS/NTP at the allowed
# addresses and its configured egress only; in lockdown root reaches DNS/NTP
# only, and nobody else gets out at all.
NAME=egress
source "$(dirname "$0")/firewall_common.bash"
make_namespaces

CFG=$TMP/pisecd.toml
write_config "$CFG" 'resolvers = ["10.99.0.1"]' 'egress = ["tcp:10.99.0.1:7001"]'
UDP_LOG=$(start_bg "$WAN" "$PROBE" serve-udp 53 123 5353)
start_bg "$WAN" "$PROBE" serve-tcp 53 7001 7002 >/dev/null

as_payload() { in_dev setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# udp_arrives TAG HOST PORT PREFIX...: sends "TAG" and reports whether it arrived.
udp_arrives() {
  local tag=$1 host=$2 port=$3
  shift 3
  "$@" bash -c "echo $tag > /dev/udp/$host/$port" 2>/dev/null || true
  sleep 0.3
  grep -q "udp $port $tag" "$UDP_LOG"
}
tcp_connects() {
  local host=$1 port=$2
  shift 2
  "$@" timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port; head -1 <&3" >/dev/null 2>&1
}

# --- service ruleset ---------------------------------------------------------
in_dev "$PISECD" firewall apply -c "$CFG" >/dev/null || fail "apply failed"
udp_arrives p-dns 10.99.0.1 53 as_payload || fail "payload uid: DNS to the resolver 10.99.0.1 was blocked"
pass "payload uid: udp 53 to the configured resolver passes"
tcp_connects 10.99.0.1 53 as_payload || fail "payload uid: tcp 53 to the resolver was blocked"
pass "payload uid: tcp 53 to the configured resolver passes"
udp_arrives p-ntp 10.99.0.1 123 as_payload || fail "payload uid: NTP was blocked"
pass "payload uid: udp 123 passes"
tcp_connects 10.99.0.1 7001 as_payload || fail "payload uid: configured egress tcp:10.99.0.1:7001 was blocked"
pass "payload uid: configured egress tcp 10.99.0.1:7001 passes"
tcp_connects 10.99.0.1 7002 as_payload && fail "payload uid reached tcp 10.99.0.1:7002, which is not allowed"
pass "payload uid: tcp 7002 (not allowed) is dropped"
udp_arrives p-dns-other 10.99.0.3 53 as_payload && fail "payload uid reached DNS at 10.99.0.3, which is not a resolver"
pass "payload uid: DNS to a non-resolver address is dropped"
udp_arrives p-mdns 10.99.0.1 5353 as_payload && fail "payload uid reached udp 5353"
pass "payload uid: other udp is dropped"
drops=$(in_dev nft list chain inet pisec output | grep 'skuid 65534 counter' | sed -E 's/.*packets ([0-9]+).*/\1/')
[ "$drops" -gt 0 ] || fail "the payload's drops were not counted"
pass "payload drops counted ($drops packets)"
tcp_connects 10.99.0.1 7002 in_dev || fail "root lost its outbound access in the service ruleset"
pass "root (another uid) keeps outbound access"

# --- lockdown ----------------------------------------------------------------
in_dev "$PISECD" firewall apply --lockdown -c "$CFG" >/dev/null || fail "apply --lockdown failed"
udp_arrives r-dns 10.99.0.1 53 in_dev || fail "lockdown: root's DNS to the resolver was blocked"
pass "lockdown: root udp 53 to the resolver passes"
udp_arrives r-ntp 10.99.0.1 123 in_dev || fail "lockdown: root's NTP was blocked"
pass "lockdown: root udp 123 passes"
tcp_connects 10.99.0.1 7001 in_dev && fail "lockdown: root reached tcp 7001"
pass "lockdown: root tcp 7001 is dropped"
udp_arrives r-dns-other 10.99.0.3 53 in_dev && fail "lockdown: root reached DNS at a non-resolver"
pass "lockdown: root DNS to a non-resolver is dropped"
udp_arrives l-dns 10.99.0.1 53 as_payload && fail "lockdown: a non-root uid reached DNS"
pass "lockdown: non-root DNS is dropped"
start_bg "$DEV" "$PROBE" serve-tcp 8080 >/dev/null
out=$(in_wan "$PROBE" connect 10.99.0.2 8080 1 1000)
[ "$out" = "ok 0 fail 1" ] || fail "lockdown: inbound tcp 8080 was not dropped ($out)"
pass "lockdown: inbound is dropped"
echo "firewall_egress: all checks passed"
