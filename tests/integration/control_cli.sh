#!/usr/bin/env bash
# The control/logs CLI as an operator sees it, without a daemon: unreachable
# daemon -> exit 3 with a clear message; `pisecd redact` keeps secrets out of
# what would be stored. (Status/logs against a live server are covered by the
# [control] unit tests, which drive the same client code.)
set -euo pipefail
: "${PISECD:?}" "${PISEC_SOURCE:?}"
tmp=$(mktemp -d /tmp/pisec-control-cli-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

rc=0; "$PISECD" status -s "$tmp/none.sock" >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" = 3 ] || fail "status without daemon: exit $rc, want 3"
grep -qx "pisecd: cannot reach daemon at $tmp/none.sock: No such file or directory" "$tmp/err" \
  || fail "status without daemon: stderr was: $(cat "$tmp/err")"
[ ! -s "$tmp/out" ] || fail "status without daemon printed to stdout"

rc=0; "$PISECD" logs -f -s "$tmp/none.sock" 2>/dev/null || rc=$?
[ "$rc" = 3 ] || fail "logs without daemon: exit $rc, want 3"
rc=0; "$PISECD" logs -n many 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "logs -n many: exit $rc, want 2 (usage)"

# A socket file nobody listens on is "unreachable" too, not a hang.
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$tmp/dead.sock" 2>/dev/null || true
if [ -S "$tmp/dead.sock" ]; then
  rc=0; timeout 20 "$PISECD" status -s "$tmp/dead.sock" 2>"$tmp/err" || rc=$?
  [ "$rc" = 3 ] || fail "status on a dead socket: exit $rc, want 3"
  grep -q "Connection refused" "$tmp/err" || fail "dead socket message: $(cat "$tmp/err")"
fi

# The example config with its redact list swapped for a test pattern.
sed "s/^redact = .*/redact = ['card=[0-9]{4}-[0-9]{4}']/" "$PISEC_SOURCE/etc/pisec/pisecd.toml" >"$tmp/pisecd.toml"
grep -q "^redact = \['card" "$tmp/pisecd.toml" || fail "could not set logs.redact in the example config"
printf '%s\n' 'login password=hunter2 ok' 'Authorization: Bearer abc123' 'paid card=1234-5678' \
  '-----BEGIN OPENSSH PRIVATE KEY-----' 'b3BlbnNzaC1rZXk' '-----END OPENSSH PRIVATE KEY-----' 'plain' \
  | "$PISECD" redact -c "$tmp/pisecd.toml" >"$tmp/redacted"
for secret in hunter2 abc123 1234-5678 b3BlbnNzaC1rZXk; do
  ! grep -q "$secret" "$tmp/redacted" || fail "secret $secret survived: $(cat "$tmp/redacted")"
done
[ "$(wc -l <"$tmp/redacted")" = 7 ] || fail "redact changed the line count"
grep -qx plain "$tmp/redacted" || fail "plain line altered"
echo "control_cli: OK"
