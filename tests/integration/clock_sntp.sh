#!/usr/bin/env bash
# The clock gate against test SNTP servers on loopback, through
# `pisecd clock-check` (real io_context, real clock read, never set).
# Needs no root and no network namespace: everything is on 127.0.0.1.
set -euo pipefail

: "${PISECD:?PISECD must point at the pisecd binary}"
: "${PISEC_BUILD:?PISEC_BUILD must point at the build directory}"
FIXTURE="$PISEC_BUILD/fixtures/sntp_server"
[[ -x "$FIXTURE" ]] || { echo "FAIL: fixture $FIXTURE not built" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pisec-clock-sntp.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# start_server VAR ARGS...: runs a fixture on a free loopback port, sets VAR to "127.0.0.1:PORT".
n=0
good1='' good2='' liar='' silent=''  # set by start_server (printf -v)
start_server() {
  local var=$1; shift
  n=$((n + 1))
  local out="$WORK/server$n.out"
  "$FIXTURE" --listen 127.0.0.1:0 "$@" >"$out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do
    if grep -qs '^listening on ' "$out"; then
      printf -v "$var" '%s' "$(sed -n 's/^listening on //p' "$out")"
      return
    fi
    sleep 0.1
  done
  fail "fixture $* did not start: $(cat "$out")"
}

# check NAME MIN_SOURCES TIMEOUT_S RETRIES REQUEST_MS SERVER...: runs clock-check,
# sets OUT, RC and TOOK_MS.
check() {
  local name=$1 min=$2 timeout=$3 retries=$4 request_ms=$5; shift 5
  local list="" s
  for s in "$@"; do list+="\"$s\", "; done
  cat >"$WORK/$name.toml" <<TOML
[gates.integrity]
enabled = false
[gates.clock]
servers = [${list%, }]
min_sources = $min
timeout_s = $timeout
retries = $retries
request_timeout_ms = $request_ms
set_clock = true                 # clock-check must override this
state_file = "$WORK/$name.state"
[payload]
command = ["/bin/true"]
TOML
  local start end
  start=$(date +%s%N)
  set +e
  OUT=$("$PISECD" clock-check -c "$WORK/$name.toml" 2>&1)
  RC=$?
  set -e
  end=$(date +%s%N)
  TOOK_MS=$(((end - start) / 1000000))
  echo "[$name] rc=$RC ${TOOK_MS}ms: $OUT"
  [[ ! -e "$WORK/$name.state" ]] || fail "$name: clock-check wrote the state file"
}

expect_rc() { [[ $RC == "$1" ]] || fail "$2: exit $RC, expected $1: $OUT"; }
expect_text() { [[ $OUT == *"$1"* ]] || fail "$2: output lacks \"$1\": $OUT"; }
expect_offset_100() {
  [[ $OUT =~ offset\ \+(99\.9[5-9][0-9]|100\.0[0-4][0-9])\ s ]] || fail "$1: offset not +100 s: $OUT"
}

start_server good1 --offset 100
start_server good2 --offset 100
start_server liar --offset 1000

# 1. Good servers pass with the right offset (one of them named, not a literal).
good1_port=${good1##*:}
check good 2 5 1 300 "$good1" "$good2" "localhost:$good1_port"
expect_rc 0 "three good servers"
expect_text "sources agree" "three good servers"
expect_offset_100 "three good servers"
expect_text "clock not set (set_clock = false)" "three good servers"

# 2. A falseticker at +1000 s is outvoted by two good servers and named.
check falseticker 2 5 1 300 "$good1" "$good2" "$liar"
expect_rc 0 "falseticker"
expect_text "2/3 sources agree" "falseticker"
expect_offset_100 "falseticker"
expect_text "$liar: falseticker (offset +1000." "falseticker"

# 3. Each bad reply is refused with its own reason; the two good servers still win.
declare -A reason=(
  [wrong-origin]="origin timestamp does not match"
  [mode3]="mode 3, expected 4"
  [stratum0]="stratum 0 (kiss-o'-death RATE)"
  [stratum16]="stratum 16"
  [leap3]="leap indicator 3 (unsynchronised)"
  [before-floor]="time before floor"
  [big-root-distance]="root distance 7.2 s > 5 s"
  [short]="short reply (40 bytes, expected 48)"
  [receive-days-early]="server held the request 2.59e+05 s (receive to transmit timestamp), more than 1 s"
)
declare -A addr
servers=("$good1" "$good2")
for mode in "${!reason[@]}"; do
  start_server "addr_${mode//-/_}" --offset 100 --mode "$mode"
  var="addr_${mode//-/_}"
  addr[$mode]=${!var}
  servers+=("${!var}")
done
check faults 2 5 1 300 "${servers[@]}"
expect_rc 0 "faulty servers beside two good ones"
expect_text "2/2 sources agree" "faulty servers"
expect_offset_100 "faulty servers"
for mode in "${!reason[@]}"; do
  expect_text "${addr[$mode]}: ${reason[$mode]}" "mode $mode"
done
# Every refusal reads differently.
distinct=$(for mode in "${!reason[@]}"; do
  grep -o "${addr[$mode]}: [^;)]*" <<<"$OUT" | sed "s/^${addr[$mode]}: //"
done | sort -u | wc -l)
[[ $distinct == "${#reason[@]}" ]] || fail "expected ${#reason[@]} distinct reasons, got $distinct: $OUT"

# 4. Too few good sources: the gate fails and says why.
check toofew 2 5 1 300 "$good1" "${addr[stratum16]}"
expect_rc 1 "one good of two needed"
expect_text "1 good source of 2 needed" "one good of two needed"
expect_text "${addr[stratum16]}: stratum 16" "one good of two needed"

# 5. An unresponsive server times out within the gate timeout, even when its
#    retries alone would take longer (10 tries of 500 ms against a 2 s gate).
start_server silent --mode silent
check silent 2 2 10 500 "$good1" "$silent"
expect_rc 1 "silent server"
expect_text "1 good source of 2 needed" "silent server"
expect_text "$silent: timeout" "silent server"
# Wall time includes clock-check's own start (≈170 ms over the deadline under
# ASan was seen): the bound tells "ended at the 2 s deadline" from "ran out its
# 5 s of retries", with 1.5 s either side.
((TOOK_MS < 3500)) || fail "silent server: took ${TOOK_MS} ms: the 2 s gate timeout did not end the 5 s of retries"

check silent_short 2 5 1 300 "$good1" "$silent"
expect_rc 1 "silent server, short retries"
expect_text "$silent: timeout" "silent server, short retries"
((TOOK_MS < 1500)) || fail "silent server, short retries: took ${TOOK_MS} ms for 2 tries of 300 ms"

echo "PASS: clock_sntp"
