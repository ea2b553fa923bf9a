#!/usr/bin/env bash
# pisecd elfcheck against real binaries built here: an ARMv7 armhf C program
# and a GOARM=7 Go program are refused with the reason; an ARMv6 armel C
# program, a GOARM=6 Go program and the armv6 pisecd build run; an x86-64
# binary is refused for ARMv6 but runs with --target host. Needs no root.
set -euo pipefail

: "${PISECD:?set PISECD to the pisecd binary}"
: "${PISEC_BUILD:?set PISEC_BUILD to the build directory}"
PISEC_SOURCE=${PISEC_SOURCE:-$(cd "$(dirname "$0")/../.." && pwd)}

work="$PISEC_BUILD/elf-fixtures"
mkdir -p "$work"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect EXIT PATTERN ARGS...: runs elfcheck, checks exit status and output.
expect() {
  local want_rc=$1 pattern=$2
  shift 2
  local out rc=0
  out=$("$PISECD" elfcheck "$@" 2>&1) || rc=$?
  echo "$out"
  [[ $rc -eq $want_rc ]] || fail "elfcheck $* exited $rc, expected $want_rc"
  grep -qE -- "$pattern" <<<"$out" || fail "elfcheck $*: output does not match /$pattern/"
}

cat >"$work/hello.c" <<'EOF'
#include <stdio.h>
int main(void) { puts("hello"); return 0; }
EOF
cat >"$work/hello.go" <<'EOF'
package main

func main() { println("hello") }
EOF

# --- C programs ------------------------------------------------------------
if command -v arm-linux-gnueabihf-gcc >/dev/null; then
  arm-linux-gnueabihf-gcc -march=armv7-a -mfpu=vfpv3-d16 -O2 -o "$work/armv7-hf" "$work/hello.c"
  expect 1 'armv7-hf: does not run on ARMv6: Tag_CPU_arch v7 \(ARMv7\) is above ARMv6KZ.*Thumb-2.*VFPv3-D16.*hard-float' \
    "$work/armv7-hf"
else
  fail "arm-linux-gnueabihf-gcc not installed (scripts/setup.sh installs it): the ARMv7 fixture is required"
fi

if command -v arm-linux-gnueabi-gcc >/dev/null; then
  arm-linux-gnueabi-gcc -march=armv6 -mfpu=vfp -mfloat-abi=softfp -marm -static -O2 \
    -o "$work/armv6-el" "$work/hello.c"
  expect 0 'armv6-el: runs on ARMv6 \(ARMv(5TE|6|6KZ), (no FP|VFPv2), Thumb-1, soft-float\)' "$work/armv6-el"
  # Truncated copy: a clear error, exit 1, no crash.
  head -c 200 "$work/armv6-el" >"$work/truncated"
  expect 1 'truncated: not a valid ELF file: .*beyond the end' "$work/truncated"
else
  fail "arm-linux-gnueabi-gcc not installed (scripts/setup.sh installs it): the ARMv6 fixture is required"
fi

# --- Go programs (no .ARM.attributes; judged by GOARM) ------------------------
if command -v go >/dev/null; then
  for goarm in 6 7; do
    (cd "$work" && env -u GOFLAGS GOOS=linux GOARCH=arm GOARM=$goarm CGO_ENABLED=0 \
       GOCACHE="$work/gocache" GOPATH="$work/gopath" GOTOOLCHAIN=local GO111MODULE=off \
       go build -o "go-goarm$goarm" hello.go)
  done
  expect 0 'go-goarm6: runs on ARMv6 \(Go go[0-9.]+, GOARM=6\)' "$work/go-goarm6"
  expect 1 'go-goarm7: does not run on ARMv6: Go build setting GOARM=7' "$work/go-goarm7"
else
  fail "go not installed (scripts/setup.sh installs golang-go): the Go fixtures are required"
fi

# --- other machines and the host target -------------------------------------
host_bin=$(type -P true)
case "$(uname -m)" in
  x86_64)
    expect 1 'does not run on ARMv6: built for x86-64 \(e_machine 62\), not 32-bit ARM' "$host_bin"
    expect 0 'runs on this host \(x86-64\)' --target host "$host_bin"
    ;;
  *) echo "SKIP: x86-64 checks on a $(uname -m) host" ;;
esac

# --- the armv6 pisecd build itself (acceptance: it runs on ARMv6) -------------
armv6_pisecd="$PISEC_SOURCE/build/armv6/pisecd"
if [[ -x "$armv6_pisecd" ]]; then
  expect 0 'runs on ARMv6 \(ARMv6KZ, VFPv2, Thumb-1, soft-float\)' "$armv6_pisecd"
else
  echo "SKIP: $armv6_pisecd not built (cmake --build --preset armv6)"
fi

# --- memory does not grow with the file: a 100 MiB ELF (sparse padding behind
# the section headers) is judged from its headers, in well under 16 MiB ---------
case "$(uname -m)" in
  x86_64)
    if [ "${PISEC_SANITIZED:-0}" = 1 ]; then
      echo "SKIP: peak RSS check (sanitized build: ASan's shadow memory is resident too)"
    elif [[ -x /usr/bin/time ]]; then
      cp "$host_bin" "$work/big-elf"
      truncate -s 100M "$work/big-elf"
      rss_kib=$(/usr/bin/time -f '%M' "$PISECD" elfcheck --target host "$work/big-elf" 2>&1 >/dev/null | tail -n 1)
      echo "elfcheck of a 100 MiB ELF: peak RSS ${rss_kib} KiB"
      ((rss_kib < 16 * 1024)) || fail "elfcheck of a 100 MiB ELF took ${rss_kib} KiB (limit 16384)"
      rm -f "$work/big-elf"
    else
      echo "SKIP: /usr/bin/time not installed (peak RSS check)"
    fi
    ;;
  *) echo "SKIP: peak RSS check uses the x86-64 host binary" ;;
esac

# --- several files: one bad file makes the exit status 1 --------------------
if [[ -f "$work/armv6-el" && -f "$work/armv7-hf" ]]; then
  expect 1 'armv6-el: runs on ARMv6' "$work/armv6-el" "$work/armv7-hf"
fi
expect 1 'cannot read: No such file or directory' "$work/does-not-exist"
rc=0
"$PISECD" elfcheck >/dev/null 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "elfcheck without FILE exited $rc, expected 2 (usage)"
rc=0
"$PISECD" elfcheck --target armv7 "$host_bin" >/dev/null 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "elfcheck --target armv7 exited $rc, expected 2 (usage)"

if [[ $failures -ne 0 ]]; then
  echo "elfcheck: $failures check(s) failed" >&2
  exit 1
fi
echo "elfcheck: all checks passed"
