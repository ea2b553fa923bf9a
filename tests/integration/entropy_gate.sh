#!/usr/bin/env bash
# The entropy gate end to end through `pisecd entropy-check`, on fake hwrng
# files. Always --no-credit: crediting fake data would lie to the host kernel;
# mixed-in bytes only ever add to its pool. Touches nothing outside a temp dir.
set -euo pipefail
PISECD=${PISECD:?set PISECD to the pisecd binary}
command -v openssl >/dev/null || { echo "SKIP: openssl not installed"; exit 77; }

T=$(mktemp -d /tmp/pisec-entropy-gate.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$T/boot" "$T/sys"
# Good data, deterministic so the test cannot flake: AES-256-CTR keystream.
head -c $((17 * 2500)) /dev/zero |
  openssl enc -aes-256-ctr -nosalt -K "$(printf '%064d' 7)" -iv "$(printf '%032d' 0)" >"$T/good"
head -c $((17 * 2500)) /dev/zero >"$T/zeros"

config() {  # $1 = hwrng path or ""
  cat >"$T/pisecd.toml" <<TOML
[gates.entropy]
hwrng = "$1"
seed_file = "$T/boot/pisec/seed"
hwrng_blocks = 16
timeout_s = 20
[gates.integrity]
enabled = false
[gates.clock]
servers = ["127.0.0.1:1230", "127.0.0.2:1230"]
[payload]
command = ["/bin/true"]
TOML
}

check() {  # $1 = expected exit code, then texts the output must contain
  local rc=0 out want=$1
  shift
  out=$("$PISECD" entropy-check -c "$T/pisecd.toml" --no-credit --sysfs "$T/sys" 2>&1) || rc=$?
  echo "$out"
  [[ $rc == "$want" ]] || fail "exit $rc, wanted $want"
  for text in "$@"; do grep -qF -- "$text" <<<"$out" || fail "output lacks: $text"; done
}

config "$T/good"
check 0 "hwrng 16 blocks: 16 credited, 0 failed" "no seed at $T/boot/pisec/seed (first boot?), refreshed"
[[ -f "$T/boot/pisec/seed" ]] || fail "seed file missing"
[[ $(stat -c %a "$T/boot/pisec/seed") == 600 ]] || fail "seed file mode $(stat -c %a "$T/boot/pisec/seed")"
before=$(sha256sum <"$T/boot/pisec/seed")
check 0 "seed credited 512 bytes, refreshed"
[[ $(sha256sum <"$T/boot/pisec/seed") != "$before" ]] || fail "seed was not refreshed"

config "$T/zeros"
check 1 "rejected (stuck source" "16 blocks, 16 failed (monobit 16, poker 16, runs 16, long run 16, continuous 16)"

config ""
check 0 "crng ready"

# Real RNDADDENTROPY (root only): the seed now on disk came from this host's
# own initialised CRNG, so crediting it back is honest.
if [[ $(id -u) == 0 ]]; then
  out=$("$PISECD" entropy-check -c "$T/pisecd.toml" --sysfs "$T/sys" 2>&1) || fail "real credit run: $out"
  echo "$out"
  grep -qF "seed credited 512 bytes, refreshed" <<<"$out" || fail "seed not credited through RNDADDENTROPY"
fi

echo "PASS: entropy gate"
