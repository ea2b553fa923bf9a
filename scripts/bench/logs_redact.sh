#!/usr/bin/env bash
# Redaction throughput: 100 MB of payload output through `pisecd redact`
# (the capture pipeline the daemon runs: line assembly, built-in redaction,
# the example config's user regex, the ring) against GNU sed doing roughly the
# same substitutions. The daemon must not be the bottleneck for a chatty payload.
set -euo pipefail
: "${PISECD:?}" "${PISEC_SOURCE:?}"
work=$(mktemp -d /tmp/pisec-bench-redact-XXXXXX)
trap 'rm -rf "$work"' EXIT

# ~100 MB: mostly plain access-log lines, one in 20 carrying a secret.
awk 'BEGIN {
  for (i = 0; i < 1100000; i++) {
    if (i % 20 == 0) printf "%d POST /login user=bob password=hunter%d&next=/ Authorization: Bearer tok%d\n", i, i, i;
    else printf "%d 10.0.0.%d - - GET /static/app.%d.js HTTP/1.1 200 5123 \"Mozilla/5.0 (X11; Linux)\"\n", i, i % 250, i;
  }
}' > "$work/in.log"
size=$(stat -c %s "$work/in.log")

t() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }
p=$(t sh -c "'$PISECD' redact -c '$PISEC_SOURCE/etc/pisec/pisecd.toml' < '$work/in.log' > '$work/out.pisecd'")
s=$(t sh -c "sed -E 's/(passw[a-z]*|secret|token)=[^&[:space:]\"]+/\\1=[REDACTED]/Ig; s/(Authorization: ).*/\\1[REDACTED]/I; s/(bearer )[A-Za-z0-9._~+\\/=-]+/\\1[REDACTED]/Ig; s/api[_-]?key=[^&[:space:]]+/[REDACTED]/g' < '$work/in.log' > '$work/out.sed'")

leaks=$(grep -c hunter "$work/out.pisecd" || true)
mb=$(echo "$size / 1000000" | bc -l)
printf 'input: %.0f MB, %s lines\n' "$mb" "$(wc -l < "$work/in.log")"
printf 'pisecd redact: %6.2f s  %7.1f MB/s  (lines still holding a password: %s)\n' "$p" "$(echo "$mb / $p" | bc -l)" "$leaks"
printf 'sed -E:        %6.2f s  %7.1f MB/s\n' "$s" "$(echo "$mb / $s" | bc -l)"
printf 'ratio pisecd/sed time: %.2f\n' "$(echo "$p / $s" | bc -l)"
