#!/usr/bin/env bash
# Acceptance 1 and 2 of the firewall: from "wan", port 80 reaches the app on
# 8080, 8080 itself and other ports are dropped, ping works but is rate-limited;
# a source opening connections too fast (or too many at once) is cut off while
# another source is still served.
NAME=traffic
source "$(dirname "$0")/firewall_common.bash"
make_namespaces

CFG=$TMP/pisecd.toml
write_config "$CFG" 'new_conn_rate = 5' 'new_conn_burst = 5' 'max_conn_per_source = 1000' 'icmp_echo_rate = 2'
start_bg "$DEV" "$PROBE" serve-tcp 8080 9090 >/dev/null
in_dev "$PISECD" firewall apply -c "$CFG" || fail "apply failed"

# --- 1. redirect, direct app port, other ports --------------------------------
reply=$(in_wan timeout 3 bash -c 'exec 3<>/dev/tcp/10.99.0.2/80; head -1 <&3') || fail "port 80 did not answer"
[ "$reply" = "hello 8080" ] || fail "port 80 answered \"$reply\", expected the app on 8080"
pass "tcp 80 from wan reaches the app on 8080"

out=$(in_wan "$PROBE" connect 10.99.0.2 8080 1 1500)
[ "$out" = "ok 0 fail 1" ] || fail "direct connection to app port 8080 was not dropped: $out"
pass "tcp 8080 directly is dropped"
out=$(in_wan "$PROBE" connect 10.99.0.2 9090 1 1500)
[ "$out" = "ok 0 fail 1" ] || fail "tcp 9090 (a listening but unlisted port) was not dropped: $out"
pass "other ports are dropped"
# Dropped, not refused: the connection times out instead of failing at once.
start=$(date +%s%N)
in_wan timeout 1 bash -c 'exec 3<>/dev/tcp/10.99.0.2/9090' 2>/dev/null && fail "tcp 9090 connected"
[ $(( ($(date +%s%N) - start) / 1000000 )) -ge 900 ] || fail "tcp 9090 was rejected, not silently dropped"
pass "drops are silent (no RST)"

read -r _ sent _ got < <(in_wan "$PROBE" ping 10.99.0.2 3 600)
[ "$got" -ge 2 ] || fail "ping at a gentle pace: $got of $sent answered"
pass "ping works ($got/$sent at 600 ms intervals)"
# 40 pings at 10 ms: 0.4 s at 2/s with a burst of 5 allows at most ~7.
read -r _ sent _ got < <(in_wan "$PROBE" ping 10.99.0.2 40 10)
(( got >= 1 && got <= 10 )) || fail "ping flood: $got of $sent answered, expected 1-10 (rate 2/s)"
pass "ping is rate-limited ($got/$sent answered in a flood)"

# --- 2. per-source new-connection rate ----------------------------------------
sleep 1.2  # let the limiter refill after the tests above
read -r _ okA _ failA < <(in_wan "$PROBE" connect -s 10.99.0.1 10.99.0.2 80 40 800)
(( okA >= 1 && okA <= 12 )) || fail "rate limit: 40 simultaneous connections from 10.99.0.1, $okA got through (rate 5/s burst 5)"
pass "fast client 10.99.0.1: $okA of 40 connections accepted, $failA dropped"
read -r _ okB _ _ < <(in_wan "$PROBE" connect -s 10.99.0.3 10.99.0.2 80 3 1500)
[ "$okB" -eq 3 ] || fail "second client 10.99.0.3 was not served while 10.99.0.1 was limited ($okB/3)"
pass "second client 10.99.0.3 still served (3/3)"
dropped=$(in_dev nft list chain inet pisec input | grep 'src_rate_v4' | sed -E 's/.*packets ([0-9]+).*/\1/')
[ "$dropped" -gt 0 ] || fail "the rate-limit rule counted no drops"
pass "rate-limit drops counted ($dropped packets)"

# --- 2b. concurrent connections per source ------------------------------------
write_config "$CFG" 'new_conn_rate = 1000' 'new_conn_burst = 1000' 'max_conn_per_source = 3'
in_dev "$PISECD" firewall apply -c "$CFG" >/dev/null || fail "apply (connection cap) failed"
read -r _ okA _ _ < <(in_wan "$PROBE" connect --hold -s 10.99.0.1 10.99.0.2 80 10 800)
(( okA >= 1 && okA <= 4 )) || fail "connection cap 3: $okA of 10 held connections from one source got through"
pass "connection cap: $okA of 10 concurrent connections from 10.99.0.1"
read -r _ okB _ _ < <(in_wan "$PROBE" connect -s 10.99.0.3 10.99.0.2 80 2 1500)
[ "$okB" -eq 2 ] || fail "second client not served under the connection cap ($okB/2)"
pass "second client still served under the cap"
echo "firewall_traffic: all checks passed"
