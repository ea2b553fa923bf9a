#!/usr/bin/env bash
# Issue 11, acceptance 1, 2 and 3: one public port for the app and for
# diagnostics. The daemon starts the mux in its own sandbox; from a "wan"
# namespace through port 80 (redirected by the service ruleset to the mux on
# the app port): app requests reach the payload; /debug/* needs the bearer
# token (401 without it, 429 after repeated failures); logs are NDJSON,
# redacted, and follow=1 streams a new line within 1 s; slow senders are cut
# off; the mux runs as its own uid with no capabilities under seccomp, and
# when it is killed the daemon restarts it while the payload keeps running;
# with the payload stopped, app requests get 503 at once while /debug/status
# still answers.
source "$(dirname "$0")/lib.sh.inc"

make_wan 10.99.0.1/24
WAN=$T_WAN
ip -n "$T_NS" addr add 10.99.0.2/24 dev veth-dev
ip -n "$T_NS" link set veth-dev up

"$PISECD" mux-token >"$T_DIR/token.txt"
TOKEN=$(awk '/^token:/ {print $2}' "$T_DIR/token.txt")
TOKEN_SHA=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
check "mux-token prints a 64-hex token" test "${#TOKEN}" -eq 64
check "mux-token's config line is the token's sha256" grep -qx "token_sha256 = \"$TOKEN_SHA\"" "$T_DIR/token.txt"

APP_PORT=8080
PAYLOAD_PORT=18083
write_config "[payload]
command = [\"$FIXTURES/http_payload\", \"--port\", \"$PAYLOAD_PORT\"]
ro_binds = [\"/usr\", \"/lib\", \"/lib64\", \"/bin\", \"/etc\", \"$FIXTURES\"]
uid = 41011
gid = 41011
[watchdog]
restart = \"never\"" "[firewall]
public_port = 80
app_port = $APP_PORT
new_conn_rate = 1000
new_conn_burst = 1000
[mux]
enabled = true
listen = \"0.0.0.0:$APP_PORT\"
upstream = \"127.0.0.1:$PAYLOAD_PORT\"
token_sha256 = \"$TOKEN_SHA\"
header_timeout_ms = 2000
auth_failure_limit = 5
auth_failure_window_s = 60
daemon_socket = \"$T_DIR/mux/status.sock\"
uid = 41012
gid = 41012"
start_daemon
wait_for 20 '.state == "running" and .firewall.verified and .mux.state == "running"' ||
  { cat "$T_DIR/daemon.log" >&2; fail "the daemon did not bring up payload and mux"; finish; }
check "status shows the mux running" test "$(jget .mux.state)" = running
for _ in $(seq 50); do grep -q 'mux: pisecd mux: listening' "$T_DIR/daemon.log" && break; sleep 0.1; done
check "the mux listens (its output is in the daemon's log)" grep -q 'mux: pisecd mux: listening' "$T_DIR/daemon.log"

URL=http://10.99.0.2
wan_curl() { ip netns exec "$WAN" curl -sS --max-time 5 "$@"; }

# --- app requests through the public port -------------------------------------
wan_curl -D "$T_DIR/h1" -o "$T_DIR/b1" "$URL/" || fail "GET / through port 80 failed"
check "GET / through port 80 reaches the payload" grep -q 'hello from the pisec payload' "$T_DIR/b1"
check "the answer carries X-Request-Id" grep -qi '^x-request-id: [0-9a-f]\{32\}' "$T_DIR/h1"
code=$(wan_curl -o /dev/null -w '%{http_code}' "$URL/nothing-here")
check "the payload's own 404 passes through (got $code)" test "$code" = 404
# A request line carrying a secret, which the payload prints to its log.
wan_curl -o /dev/null "$URL/login?password=hunter2" || true

# --- /debug/* needs the token ---------------------------------------------------
code=$(wan_curl -D "$T_DIR/h2" -o "$T_DIR/b2" -w '%{http_code}' "$URL/debug/logs")
check "/debug/logs without a token: 401 (got $code)" test "$code" = 401
check "the 401 says WWW-Authenticate: Bearer" grep -qi '^www-authenticate: bearer' "$T_DIR/h2"
check "the 401 carries no data" test ! -s "$T_DIR/b2"
code=$(wan_curl -o "$T_DIR/b3" -w '%{http_code}' -H "Authorization: Bearer ${TOKEN}x" "$URL/debug/logs")
check "/debug/logs with a wrong token: 401 (got $code)" test "$code" = 401
check "... and no data" test ! -s "$T_DIR/b3"
code=$(wan_curl -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL/%64ebug/logs")
check "an encoded /debug/ path is the mux's too (got $code)" test "$code" = 200

AUTH="Authorization: Bearer $TOKEN"
wan_curl -H "$AUTH" -D "$T_DIR/h4" -o "$T_DIR/logs.ndjson" "$URL/debug/logs?n=50" || fail "/debug/logs with the token failed"
check "/debug/logs is NDJSON" grep -qi '^content-type: application/x-ndjson' "$T_DIR/h4"
check "every line parses as JSON with ts_ms, stream and line" \
  jq -e -s 'length > 0 and all(has("ts_ms") and has("stream") and has("line"))' "$T_DIR/logs.ndjson"
check "the log holds the payload's request lines" grep -q 'GET / HTTP' "$T_DIR/logs.ndjson"
check "the secret is redacted" grep -q 'password=\[REDACTED\]' "$T_DIR/logs.ndjson"
check "the secret itself is not served" bash -c "! grep -q hunter2 '$T_DIR/logs.ndjson'"

# follow=1: a line the payload prints afterwards arrives within 1 s.
ip netns exec "$WAN" curl -sS -N --max-time 10 -H "$AUTH" "$URL/debug/logs?n=0&follow=1" >"$T_DIR/follow" 2>&1 &
FOLLOW=$!
sleep 0.5
start=$(date +%s%N)
wan_curl -o /dev/null "$URL/followed-$$" || true
got=
for _ in $(seq 40); do
  if grep -q "followed-$$" "$T_DIR/follow"; then got=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
  sleep 0.025
done
kill "$FOLLOW" 2>/dev/null; wait "$FOLLOW" 2>/dev/null || true
check "follow=1 delivered the new line (${got:-never} ms after the request, limit 1000)" \
  test -n "$got" -a "${got:-9999}" -lt 1000

code=$(wan_curl -H "$AUTH" -o "$T_DIR/status.json" -w '%{http_code}' "$URL/debug/status")
check "/debug/status: 200 (got $code)" test "$code" = 200
check "/debug/status is the status JSON" jq -e '.state and .payload.state == "running"' "$T_DIR/status.json"
wan_curl -H "$AUTH" -D "$T_DIR/h5" -o "$T_DIR/metrics" "$URL/debug/metrics" || fail "/debug/metrics failed"
check "/debug/metrics is text format 0.0.4" grep -qi '^content-type: text/plain; version=0.0.4' "$T_DIR/h5"
check "metrics count the 401s" grep -qE '^pisecd_mux_requests_total\{class="debug",code="401"\} [1-9]' "$T_DIR/metrics"
check "metrics show the payload running" grep -qx 'pisecd_payload_state{state="running"} 1' "$T_DIR/metrics"
check "metrics carry the counted firewall rules (the per-source limits' drops)" \
  grep -qE '^pisecd_firewall_rule_packets_total\{chain="input",rule="[0-9]+"\} [0-9]+$' "$T_DIR/metrics"
PROMTOOL=$PISEC_BUILD/../tools/prometheus/usr/bin/promtool  # scripts/setup.sh unpacks it
check "promtool is there (scripts/setup.sh)" test -x "$PROMTOOL"
check "promtool check metrics accepts them" bash -c "'$PROMTOOL' check metrics < '$T_DIR/metrics'"
code=$(wan_curl -H "$AUTH" -o /dev/null -w '%{http_code}' "$URL/debug/logs?n=x")
check "a bad query is refused with 400 (got $code)" test "$code" = 400

# --- repeated failures from one source: 429 ----------------------------------------
for _ in 1 2 3 4 5; do wan_curl -o /dev/null -H "Authorization: Bearer wrong" "$URL/debug/status" || true; done
code=$(wan_curl -o /dev/null -w '%{http_code}' -H "$AUTH" "$URL/debug/status")
check "after 5 failures even the right token gets 429 (got $code)" test "$code" = 429
code=$(wan_curl -o /dev/null -w '%{http_code}' "$URL/")
check "the app is still served to that source (got $code)" test "$code" = 200
code=$(ip netns exec "$T_NS" curl -sS -o /dev/null -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$APP_PORT/debug/status")
check "another source is not limited (got $code)" test "$code" = 200

# --- slow senders are cut off by the header timeout --------------------------------
start=$(date +%s%N)
ip netns exec "$WAN" python3 - <<'PY' || fail "slow sender was not closed"
import socket, time
s = socket.create_connection(("10.99.0.2", 80))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
s.settimeout(10)
deadline = time.time() + 8
try:
    while time.time() < deadline:
        time.sleep(0.5)
        s.sendall(b"X-Slow: 1\r\n")
except (BrokenPipeError, ConnectionResetError):
    raise SystemExit(0)
raise SystemExit(1)
PY
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "a slowloris connection is closed by the 2 s header timeout (after $ms ms)" test "$ms" -lt 5000

# --- the mux's confinement, and its restart -------------------------------------------
MUX=$(mux_pid 41012)
check "the mux process is found" test -n "$MUX"
if [ -n "$MUX" ]; then
  grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' "/proc/$MUX/status"
  check "the mux runs as its own uid 41012 on the host" test "$(awk '/^Uid:/ {print $2}' "/proc/$MUX/status")" = 41012
  check "the mux has no capabilities (CapEff 0)" test "$(awk '/^CapEff:/ {print $2}' "/proc/$MUX/status")" = 0000000000000000
  check "the mux has no_new_privs" test "$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$MUX/status")" = 1
  check "the mux runs under a seccomp filter (Seccomp 2)" test "$(awk '/^Seccomp:/ {print $2}' "/proc/$MUX/status")" = 2
  PAYLOAD_PID=$(jget .payload.pid)
  kill -KILL "$MUX"
  wait_for 10 '.mux.restarts == 1 and .mux.state == "running"' || fail "the daemon did not restart the mux"
  check "the payload kept running (same pid)" test "$(jget .payload.pid)" = "$PAYLOAD_PID"
  check "the payload did not restart" test "$(jget .payload.restarts)" = 0
  code=""
  for _ in $(seq 50); do
    code=$(wan_curl -o /dev/null -w '%{http_code}' "$URL/" 2>/dev/null) && [ "$code" = 200 ] && break
    sleep 0.1
  done
  check "the restarted mux serves the app again (got $code)" test "$code" = 200
fi

# --- payload stopped: 503 at once, /debug/ keeps working ----------------------------
pkill -TERM -f "^$FIXTURES/http_payload --port $PAYLOAD_PORT" || fail "no payload process to stop"
wait_for 10 '.payload.state == "stopped"' || fail "the payload did not stop"
ms=$(ip netns exec "$WAN" curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "$URL/")
code=${ms% *}
t_ms=$(awk -v t="${ms#* }" 'BEGIN {printf "%d", t * 1000}')
check "payload down: app request gets 503 (got $code)" test "$code" = 503
check "payload down: the 503 came in under 100 ms (${t_ms} ms)" test "$t_ms" -lt 100
code=$(ip netns exec "$T_NS" curl -sS -o "$T_DIR/status2.json" -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$APP_PORT/debug/status")
check "payload down: /debug/status still answers (got $code)" test "$code" = 200
check "payload down: status says so" jq -e '.payload.state == "stopped"' "$T_DIR/status2.json"

kill -TERM "$T_DAEMON_PID"
wait "$T_DAEMON_PID" 2>/dev/null || true
check "no mux process is left after the daemon stopped" test -z "$(mux_pid 41012)"
finish
