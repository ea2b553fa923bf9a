# shellcheck shell=bash
# Shared by the attestation tests (sourced after lib.sh.inc, in $T_DIR): a
# throwaway CA and a stranger CA, the verifier's certificate, a release with
# its signed manifest, and keys. Nothing here is a test itself.

VERIFIER=$PISEC_BUILD/pisec-verifier
for tool in openssl sqlite3 jq sha256sum; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

mkca() {  # mkca NAME — NAME.key, NAME.pem: a self-signed P-256 CA for one day
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" \
    -subj "/CN=$1" -days 1 2>/dev/null
}

# ca.pem, other-ca.pem, and server.{key,pem} for verifier.test/localhost, signed by ca.
make_test_pki() {
  mkca ca
  mkca other-ca
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
    -subj "/CN=verifier.test" 2>/dev/null
  printf 'subjectAltName=DNS:verifier.test,DNS:localhost\n' >san.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 \
    -extfile san.ext 2>/dev/null
}

# rel/: boot files, apkovl, the payload (PAYLOAD_SOURCE, a file to copy, or
# a text), and a copy of pisecd; manifest + manifest.sig by release.sec.
# Keys: release, verifier, and one per name given.
make_release() {  # make_release PAYLOAD_FILE KEY_NAME...
  mkdir -p rel/boot rel/srv rel/usr/sbin
  printf 'kernel\n' >rel/boot/vmlinuz-rpi
  printf 'initramfs\n' >rel/boot/initramfs-rpi
  printf 'apkovl\n' >rel/pi.apkovl.tar.gz
  cp "$1" rel/srv/app
  shift
  cp "$PISECD" rel/usr/sbin/pisecd
  local k
  for k in release verifier "$@"; do "$PISECD" keygen -p "$k.pub" -s "$k.sec" >/dev/null; done
  "$PISECD" manifest create -o manifest --root rel boot pi.apkovl.tar.gz srv usr >/dev/null
  "$PISECD" manifest sign -s release.sec -m manifest >/dev/null
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# serve PORT TTL LOG [OPTION...] — pisec-verifier on 127.0.0.1:PORT in $T_NS
# over $DB, with any further serve options; its pid is added to SERVERS.
SERVERS=()
serve() {
  ip netns exec "$T_NS" "$VERIFIER" serve --db "$DB" --listen "127.0.0.1:$1" --cert server.pem --key server.key \
    --signing-key verifier.sec --nonce-ttl-s "$2" "${@:4}" >>"$3" 2>&1 &
  SERVERS+=("$!")
  for _ in $(seq 100); do
    ip netns exec "$T_NS" bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
    sleep 0.05
  done
  cat "$3" >&2
  fail "the verifier did not listen on port $1"
  exit 1
}
