#!/usr/bin/env bash
# Issue 12, acceptance 4 and 5: pisec-verifier's fleet page (GET /, admin
# token) as a browser sees it. Simulated devices (fixtures/attest_device)
# attest so the fleet holds affirming and contraindicated ones (changed
# payload, changed ruleset, revoked, never reported); a report signed by a
# key not enrolled claims to be the affirming device and must not become its
# state. Debian's headless chromium, in the test's namespace (loopback only),
# loads the page with the token as HTTP Basic password, trusting the test
# certificate by its SPKI only; the rendered DOM is checked row by row, a
# screenshot is taken. Without the token the page is refused; a verifier
# started without --admin-token-file has no page at all.
source "$(dirname "$0")/lib.sh.inc"
source "$(dirname "$0")/attest_common.bash"
DEVICE=$FIXTURES/attest_device
PORT=18463
PORT_NO_PAGE=18464  # the same store, served without --admin-token-file
for tool in chromium python3 curl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
cd "$T_DIR"

make_test_pki
printf 'payload v1\n' >app.txt
make_release app.txt good payload ruleset revoked silent markup stranger
RULESET=$(printf 'ruleset' | sha256sum | cut -d' ' -f1)
CONFIG=$(printf 'config' | sha256sum | cut -d' ' -f1)

# measure RULESET PAYLOAD_SHA [PAYLOAD_PATH] — measurements.json as a device reports them.
measure() {
  jq -n --arg k "$(sha rel/boot/vmlinuz-rpi)" --arg i "$(sha rel/boot/initramfs-rpi)" \
    --arg a "$(sha rel/pi.apkovl.tar.gz)" --arg p "$2" --arg pp "${3:-srv/app}" --arg d "$(sha rel/usr/sbin/pisecd)" \
    --arg r "$1" --arg c "$CONFIG" --arg m "$(sha manifest)" '{
      kernel: {path: "boot/vmlinuz-rpi", sha256: $k}, initramfs: {path: "boot/initramfs-rpi", sha256: $i},
      apkovl: {path: "pi.apkovl.tar.gz", sha256: $a}, payload: {path: $pp, sha256: $p},
      pisecd: {path: "usr/sbin/pisecd", sha256: $d}, ruleset: {sha256: $r}, config: {sha256: $c},
      manifest: {sha256: $m}}'
}
measure "$RULESET" "$(sha rel/srv/app)" >good.json
measure "$RULESET" "$(printf 'payload v2 (tampered)\n' | sha256sum | cut -d' ' -f1)" >payload.json
measure "$(printf 'ruleset opened' | sha256sum | cut -d' ' -f1)" "$(sha rel/srv/app)" >ruleset.json
# A path not in the manifest, with markup in it: a warning whose text the page must show as text.
measure "$RULESET" "$(sha rel/srv/app)" 'srv/<i>x</i>' >markup.json

DB=$T_DIR/verifier.db
for id in good payload ruleset revoked silent markup; do
  "$VERIFIER" enroll --db "$DB" --device-id "pi-$id" --pubkey "$id.pub" --expect manifest \
    --expect-signature manifest.sig --release-key release.pub --expect-ruleset "$RULESET" \
    --expect-config "$CONFIG" >/dev/null
done

# The admin token, private to its owner (the verifier refuses a world-readable one).
( umask 077 && openssl rand -hex 32 >admin.token )
TOKEN=$(cat admin.token)
printf 'not-the-token-%s\n' "$(openssl rand -hex 8)" >wrong.token
serve "$PORT" 60 verifier.log --admin-token-file admin.token
serve "$PORT_NO_PAGE" 60 verifier-no-page.log

attest() {  # attest DEVICE_ID KEY MEASUREMENTS WANT_EXIT
  local rc=0
  ip netns exec "$T_NS" "$DEVICE" --connect "127.0.0.1:$PORT" --servername verifier.test --ca ca.pem \
    --verifier-key verifier.pub --device-id "$1" --key "$2.sec" --measurements "$3" >>devices.out 2>&1 || rc=$?
  check "$1 (key $2, $3) attests with exit $4" test "$rc" = "$4"
}
attest pi-good good good.json 0
attest pi-payload payload payload.json 2
attest pi-ruleset ruleset ruleset.json 2
attest pi-revoked revoked good.json 0
"$VERIFIER" revoke --db "$DB" --device-id pi-revoked >/dev/null
attest pi-revoked revoked good.json 2
attest pi-markup markup markup.json 1
# A key not enrolled claims pi-good, with a changed payload: refused, and
# (the newest decision filed under pi-good) it must not become pi-good's state.
attest pi-good stranger payload.json 2
check "the forged report is the newest decision filed under pi-good" test \
  "$(sqlite3 "$DB" "SELECT status FROM decisions WHERE device_id = 'pi-good' ORDER BY id DESC LIMIT 1")" = contraindicated

# ---- the page without, and with a wrong, token; a verifier without a page ----
http_code() {  # http_code PORT [CURL_ARGS...] — the status of GET / on 127.0.0.1:PORT as verifier.test
  local port=$1
  shift
  ip netns exec "$T_NS" curl -s -o /dev/null -w '%{http_code}' --cacert ca.pem \
    --resolve "verifier.test:$port:127.0.0.1" "$@" "https://verifier.test:$port/" || true
}
check "GET / without a token is refused (401)" test "$(http_code "$PORT")" = 401
check "GET / with a wrong bearer token is refused (401)" test \
  "$(http_code "$PORT" -H "Authorization: Bearer $(cat wrong.token)")" = 401
check "GET / with a wrong Basic password is refused (401)" test \
  "$(http_code "$PORT" -u "admin:$(cat wrong.token)")" = 401
check "POST / is refused (405)" test "$(http_code "$PORT" -X POST -H "Authorization: Bearer $TOKEN")" = 405
check "an unknown path is 404" test "$(ip netns exec "$T_NS" curl -s -o /dev/null -w '%{http_code}' \
  --cacert ca.pem --resolve "verifier.test:$PORT:127.0.0.1" "https://verifier.test:$PORT/v2/nothing")" = 404
check "a verifier started without --admin-token-file has no page (404), even for the token" test \
  "$(http_code "$PORT_NO_PAGE" -H "Authorization: Bearer $TOKEN")" = 404
ip netns exec "$T_NS" curl -s -D headers.txt -o curl-page.html --cacert ca.pem \
  --resolve "verifier.test:$PORT:127.0.0.1" -H "Authorization: Bearer $TOKEN" "https://verifier.test:$PORT/"
check "GET / with the bearer token answers 200" grep -q '^HTTP/1.1 200' headers.txt
check "the page's CSP allows nothing but its own style" \
  grep -qiE "^content-security-policy: default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*';" headers.txt
check "the page is not cached (Cache-Control: no-store)" grep -qi '^cache-control: no-store' headers.txt
check "the page is HTML in UTF-8" grep -qi '^content-type: text/html; charset=utf-8' headers.txt

# ---- chromium, headless, in the namespace ----
# The certificate comes from the test CA: chromium trusts exactly that key
# (its SPKI pin), not every certificate; verifier.test resolves to loopback.
SPKI=$(openssl x509 -in server.pem -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)
browse() {  # browse URL OUTPUT_ARGS... — chromium's answer on stdout, its log in chromium.log
  ip netns exec "$T_NS" env HOME="$T_DIR/home" timeout 90 chromium --headless --no-sandbox --disable-gpu \
    --user-data-dir="$T_DIR/chromium-profile" --ignore-certificate-errors-spki-list="$SPKI" \
    --host-resolver-rules="MAP verifier.test 127.0.0.1" --no-first-run --disable-extensions \
    --disable-background-networking --disable-component-update --disable-sync "${@:2}" "$1" 2>>chromium.log
}
mkdir -p home
# Without credentials headless chromium gets the 401 and renders nothing of
# the fleet (the same call with them must render it, just below).
browse "https://verifier.test:$PORT/" --dump-dom >refused.html || true
check "chromium without credentials sees no fleet (refused)" bash -c '! grep -q "data-device" refused.html'
browse "https://admin:$TOKEN@verifier.test:$PORT/" --dump-dom >page.html ||
  { cat chromium.log >&2; fail "chromium could not load the page"; }
check "chromium rendered the fleet table" grep -q '<table id="devices">' page.html

# The rendered table, one line per device: id, enrolment, at, verdict, differs, notes
# (cells' text, list items joined by "; "); and the refused table's rows.
python3 - page.html >rows.tsv <<'PY'
import sys
from html.parser import HTMLParser

class Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.row, self.cell, self.tags, self.table = [], None, None, set(), None
    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("id")
        elif tag == "tr" and self.table in ("devices", "refused"):
            self.row = [self.table]
        elif tag == "td" and self.row is not None:
            self.cell = []
        elif tag == "li" and self.cell is not None and self.cell:
            self.cell.append("; ")
    def handle_endtag(self, tag):
        if tag == "td" and self.row is not None and self.cell is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if len(self.row) > 1:
                self.rows.append(self.row)
            self.row = None
    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

p = Rows()
p.feed(open(sys.argv[1], encoding="utf-8").read())
for r in p.rows:
    print("\t".join(r))
print("tags\t" + " ".join(sorted(p.tags)))
PY
cat rows.tsv
row() { grep -P "^devices\t$1\t" rows.tsv || true; }
cell() { row "$1" | cut -f"$2"; }  # cell ID N: 3 enrolment, 4 at, 5 verdict, 6 differs, 7 notes
check "six devices on the page" test "$(grep -c $'^devices\t' rows.tsv)" = 6
check "pi-good: affirming, nothing differs (the forged report did not become its state)" \
  test "$(cell pi-good 5)|$(cell pi-good 6)" = "affirming|none"
check "pi-good's last report time is a UTC date" \
  grep -qP '^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$' <<<"$(cell pi-good 4)"
check "pi-payload: contraindicated, the payload differs" \
  test "$(cell pi-payload 5)|$(cell pi-payload 6)" = "contraindicated|payload (srv/app)"
check "pi-ruleset: contraindicated, the ruleset differs" \
  test "$(cell pi-ruleset 5)|$(cell pi-ruleset 6)" = "contraindicated|ruleset"
check "pi-revoked: revoked, contraindicated (its own signed report after the revocation)" \
  test "$(cell pi-revoked 3)|$(cell pi-revoked 5)|$(cell pi-revoked 7)" = "revoked|contraindicated|device pi-revoked is revoked"
check "pi-silent: enrolled, never reported" \
  test "$(cell pi-silent 3)|$(cell pi-silent 4)|$(cell pi-silent 5)" = "enrolled|never|none"
check "pi-markup: warning, its path shown as text" \
  test "$(cell pi-markup 5)|$(cell pi-markup 7)" = "warning|payload (srv/<i>x</i>): not in the enrolled manifest"
no_foreign_elements() { ! grep -qwE 'i|img|script' <<<"$(grep '^tags' rows.tsv | cut -f2)"; }
check "no markup from a report became an element (no i, img or script in the DOM)" no_foreign_elements
check "the forged report is listed as refused, under the device it claims" \
  grep -qP '^refused\t[^\t]+ UTC\tpi-good\tcontraindicated\treport signed by a key not enrolled' rows.tsv
check "one refused report counted" grep -q '<p id="refused-count">1 refused' page.html

browse "https://admin:$TOKEN@verifier.test:$PORT/" --screenshot="$T_DIR/fleet.png" --window-size=1400,900 \
  >/dev/null || { cat chromium.log >&2; fail "chromium could not take the screenshot"; }
check "the screenshot is a non-empty 1400x900 PNG" python3 - "$T_DIR/fleet.png" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
ok = len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
w, h = struct.unpack(">II", data[16:24]) if ok else (0, 0)
print(f"screenshot: {len(data)} bytes, {w}x{h}")
sys.exit(0 if ok and (w, h) == (1400, 900) else 1)
PY

"$VERIFIER" log verify --db "$DB" | tee verify.out
check "the decision log still verifies" grep -q 'chain intact' verify.out
stopped=0
for pid in "${SERVERS[@]}"; do kill -TERM "$pid" && wait "$pid" && stopped=$((stopped + 1)); done
check "both verifiers stop cleanly on SIGTERM" test "$stopped" = 2
finish
