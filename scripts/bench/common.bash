# shellcheck shell=bash
# Shared by scripts/bench/*.sh (sourced; needs PISECD, PISEC_SOURCE, BENCH_TOOLS,
# BENCH_SUMMARY from scripts/bench.sh).

# stats: numbers on stdin, one a line -> "median min max count" (awk, sorted).
stats() {
  sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "nan nan nan 0"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s %s %s %d\n", m, v[1], v[NR], NR }'
}

# fmt_stats SCALE DIGITS: "median min max n" on stdin -> "median (min–max, n=)" in units/SCALE.
fmt_stats() {
  awk -v s="$1" -v d="$2" '{ if ($4 == 0) { print "n/a"; exit }
    printf "%.*f (%.*f–%.*f, n=%d)\n", d, $1 / s, d, $2 / s, d, $3 / s, $4 }'
}

# summary FIGURE PISECD ANCHORS RATIO AIM: one row of the final table.
summary() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$BENCH_SUMMARY"
}

# ratio A B [DIGITS]: A / B.
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "n/a"; else printf "%.*f\n", d, a / b }'; }

# The anchor supervisors from Debian's packages, unpacked (never installed:
# openrc and runit as packages would touch this machine's init).
anchors() {
  local root=$BENCH_TOOLS/root
  if [ ! -x "$root/sbin/supervise-daemon" ] || [ ! -x "$root/usr/bin/s6-supervise" ] || [ ! -x "$root/usr/bin/runsv" ]; then
    rm -rf "$BENCH_TOOLS/debs" "$root"
    mkdir -p "$BENCH_TOOLS/debs"
    local pkgs=(s6 libs6-2.11 libskarnet2.13 libexecline2.9 runit openrc librc1 libeinfo1)
    ( cd "$BENCH_TOOLS/debs" && apt-get -o APT::Sandbox::User=root download -qq "${pkgs[@]}" ) ||
      { apt-get update -qq && ( cd "$BENCH_TOOLS/debs" && apt-get -o APT::Sandbox::User=root download -qq "${pkgs[@]}" ); }
    for deb in "$BENCH_TOOLS"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  fi
  # shellcheck disable=SC2034  # read by the scripts that source this
  S6_SUPERVISE=$root/usr/bin/s6-supervise S6_SVSTAT=$root/usr/bin/s6-svstat
  # shellcheck disable=SC2034
  RUNSV=$root/usr/bin/runsv SUPERVISE_DAEMON=$root/sbin/supervise-daemon
  # shellcheck disable=SC2034
  ANCHOR_LIBS=$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu
}

# The payload binary every supervisor runs (scripts/bench/payload.c).
build_payload() {
  BENCH_PAYLOAD=$BENCH_TOOLS/payload
  if [ ! -x "$BENCH_PAYLOAD" ] || [ "$PISEC_SOURCE/scripts/bench/payload.c" -nt "$BENCH_PAYLOAD" ]; then
    mkdir -p "$BENCH_TOOLS"
    gcc -O2 -static -Wall -Wextra -Werror -o "$BENCH_PAYLOAD" "$PISEC_SOURCE/scripts/bench/payload.c"
  fi
}

# Threads' context switches (voluntary + involuntary) of process $1.
ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
# On-CPU time of process $1, all threads, in ns (schedstat).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'; }
# smaps_rollup field $2 (Rss, Private_Dirty, ...) of process $1, in KiB.
smaps_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/smaps_rollup"; }

# ns_pid NS COMM: the newest process named COMM inside network namespace NS.
ns_pid() {
  local p best=""
  for p in $(ip netns pids "$1" 2>/dev/null); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && best=$p
  done
  echo "$best"
}

# A pisecd configuration with every gate and the firewall off: the supervisor
# alone. pisecd_config FILE SOCKET MODE [EXTRA TOML].
pisecd_config() {
  cat > "$1" <<CFG
[daemon]
control_socket = "$2"
[gates.entropy]
enabled = false
[gates.clock]
enabled = false
[gates.integrity]
enabled = false
[gates.arch]
enabled = false
[firewall]
enabled = false
[payload]
command = ["$BENCH_PAYLOAD", "$3"]
ro_binds = ["/usr", "/lib", "/lib64", "/bin", "/etc", "$BENCH_TOOLS"]
rw_paths = ["$BENCH_OUT_DIR"]
env = { BENCH_OUT = "$BENCH_OUT_DIR/pisecd.out" }
uid = 41900
gid = 41900
max_processes = 1100
[logs]
stderr = false
${4:-}
CFG
}
