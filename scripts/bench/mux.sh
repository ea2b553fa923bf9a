#!/usr/bin/env bash
# The single public port's mux against the app directly and against nginx as
# a reverse proxy doing the same job (X-Forwarded-For, a request id on the
# way in and out, one log line per request, keep-alive both ways), side by
# side in one run. The "app" is nginx answering a small static body, so the
# proxies, not the app, are what is measured. wrk, 1 thread, 50 connections,
# BENCH_MUX_SECONDS (5) per run, BENCH_MUX_RUNS (3) runs each; the median
# run's requests/s and latency percentiles are printed, then the ratios.
# Runs in a throwaway network namespace on loopback; nothing is asserted.
set -euo pipefail
: "${PISECD:?}" "${PISEC_BUILD:?}"
SECS=${BENCH_MUX_SECONDS:-5}
RUNS=${BENCH_MUX_RUNS:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=$ROOT/build/bench-tools

# Anchors from Debian's packages. nginx is unpacked, not installed: its
# package would start a server on the host's port 80.
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [ ! -x "$TOOLS/nginx/usr/sbin/nginx" ]; then
  mkdir -p "$TOOLS/debs"
  (cd "$TOOLS/debs" && apt-get -o APT::Sandbox::User=root download -qq nginx)
  dpkg -x "$TOOLS"/debs/nginx_*.deb "$TOOLS/nginx"
fi
NGINX=$TOOLS/nginx/usr/sbin/nginx

NS=pisec-bench-mux-$$
DIR=$(mktemp -d /tmp/pisec-bench-mux.XXXXXX); chmod 0755 "$DIR"
cleanup() {
  set +e
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null; rm -rf "$DIR"
}
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

nginx_conf() {  # $1: name, $2: server block
  mkdir -p "$DIR/$1/logs"
  cat > "$DIR/$1/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $DIR/$1/nginx.pid;
error_log $DIR/$1/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $DIR/$1/tmp-body;
  proxy_temp_path $DIR/$1/tmp-proxy;
  fastcgi_temp_path $DIR/$1/tmp-fastcgi;
  uwsgi_temp_path $DIR/$1/tmp-uwsgi;
  scgi_temp_path $DIR/$1/tmp-scgi;
  keepalive_requests 1000000;
  $2
}
CONF
}
nginx_conf app 'server { listen 127.0.0.1:18100; location / { return 200 "hello from the app\n"; } }'
# shellcheck disable=SC2016  # nginx variables, for nginx to expand
nginx_conf proxy 'log_format rid "$request_id $remote_addr \"$request\" $status";
  access_log '"$DIR"'/proxy/logs/access.log rid;
  upstream app { server 127.0.0.1:18100; keepalive 64; }
  server { listen 127.0.0.1:18101; location / {
    proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Request-Id $request_id; add_header X-Request-Id $request_id; } }'
in_ns "$NGINX" -p "$DIR/app" -c "$DIR/app/nginx.conf" &
in_ns "$NGINX" -p "$DIR/proxy" -c "$DIR/proxy/nginx.conf" &
TOKEN_SHA=$(printf 'bench' | sha256sum | cut -d' ' -f1)
in_ns "$PISECD" mux --listen 127.0.0.1:18102 --upstream 127.0.0.1:18100 --token-sha256 "$TOKEN_SHA" \
  --daemon-socket "$DIR/none.sock" 2>"$DIR/mux.log" &
for port in 18100 18101 18102; do
  for _ in $(seq 50); do in_ns curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

# wrk's summary: requests/s (0 when any answer was not 2xx or a socket failed),
# and the 50% and 99% latencies in ms.
run_wrk() {
  in_ns wrk -t1 -c50 -d"${SECS}s" --latency "http://127.0.0.1:$1/" | awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } $1 == "Requests/sec:" { rps = $2 }
    /Non-2xx or 3xx responses:/ { bad = $NF } /Socket errors:/ { bad = bad + 1 }
    END { if (bad > 0) rps = 0; printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}
# The median run (by requests/s) of RUNS, and the spread of requests/s.
measure() {
  local port=$1
  for _ in $(seq "$RUNS"); do run_wrk "$port"; done | sort -n | awk -v n="$RUNS" '
    { r[NR] = $0; v[NR] = $1 } END { split(r[int((n + 1) / 2)], m, " ");
      printf "%s %s %s %s %s\n", m[1], m[2], m[3], v[1], v[n] }'
}
printf '%-28s %10s %10s %10s  %s\n' "" "req/s" "p50 ms" "p99 ms" "req/s min-max of $RUNS runs"
declare -A RPS
for row in "app directly:18100" "through pisecd mux:18102" "through nginx proxy:18101"; do
  name=${row%%:*} port=${row##*:}
  read -r rps p50 p99 lo hi < <(measure "$port")
  RPS[$port]=$rps
  printf '%-28s %10s %10s %10s  %s-%s\n' "$name" "$rps" "$p50" "$p99" "$lo" "$hi"
done
awk -v d="${RPS[18100]}" -v m="${RPS[18102]}" -v n="${RPS[18101]}" 'BEGIN {
  printf "ratio mux / direct: %.2f (aim >= 0.80); nginx / direct: %.2f; mux / nginx: %.2f\n", m / d, n / d, m / n }'
echo "(pisecd: $("$PISECD" --version | head -1); the mux logs one line per request, nginx one access-log line)"
