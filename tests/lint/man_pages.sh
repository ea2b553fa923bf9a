#!/usr/bin/env bash
# The man pages render without warnings and document the whole interface:
#   - pisecd.8: every command of `pisecd --help`, and every option and action
#     word of its usage line, in that command's SYNOPSIS line, plus an entry
#     under COMMANDS;
#   - pisecd.toml.5: every key the config loader reads (taken from the
#     loader's source, so a key added without docs fails here), under its
#     table; no documented key that the loader does not know.
# Needs PISECD (the host binary), PISEC_MAN_DIR (the rendered pages) and
# PISEC_SOURCE (the source tree).
set -euo pipefail
: "${PISECD:?PISECD must point at the pisecd binary}"
: "${PISEC_MAN_DIR:?PISEC_MAN_DIR must point at the rendered man pages}"
: "${PISEC_SOURCE:?PISEC_SOURCE must point at the source tree}"

fails=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

page8=$PISEC_MAN_DIR/pisecd.8
page5=$PISEC_MAN_DIR/pisecd.toml.5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. both pages render, with no warning from man or groff -----------------
for page in "$page8" "$page5"; do
  [ -s "$page" ] || { fail "$page is missing or empty (is scdoc installed? the 'man' target builds it)"; continue; }
  # man's stderr only (stdout discarded): troff and preprocessor warnings.
  warnings=$(MANWIDTH=80 man -l "$page" 2>&1 >/dev/null || echo "man -l exited with $?")
  warnings+=$(groff -ww -z -t -man "$page" 2>&1 || echo "groff exited with $?")
  if [ -n "$warnings" ]; then
    fail "$(basename "$page") renders with warnings:"
    printf '%s\n' "$warnings" | sed 's/^/    /' >&2
  else
    ok "$(basename "$page") renders without warnings"
  fi
done
[ "$fails" -eq 0 ] || exit 1

# Plain ASCII text, wide enough that no SYNOPSIS or entry line wraps.
render() { LC_ALL=C MANWIDTH=250 man -l "$1" 2>/dev/null | col -b; }
render "$page8" >"$tmp/8.txt"
render "$page5" >"$tmp/5.txt"

# section FILE NAME: the lines of one section (headings are unindented).
section() { awk -v name="$2" '/^[A-Z]/ { on = ($0 == name); next } on' "$1"; }
section "$tmp/8.txt" SYNOPSIS >"$tmp/synopsis"
section "$tmp/8.txt" COMMANDS >"$tmp/commands"
section "$tmp/8.txt" "EXIT STATUS" >"$tmp/exit"
section "$tmp/8.txt" SIGNALS >"$tmp/signals"

# --- 2. pisecd.8: every command, option and action word of the usage ---------
"$PISECD" --help >"$tmp/usage"
grep -q '^  pisecd ' "$tmp/usage" || { fail "pisecd --help lists no command"; exit 1; }
ncmd=0
while IFS= read -r line; do
  rest=${line#  pisecd }
  cmd=${rest%% *}
  ncmd=$((ncmd + 1))
  # SYNOPSIS lines of this command ("pisecd manifest create ...", ...).
  grep -E "^ +pisecd ${cmd}( |$)" "$tmp/synopsis" >"$tmp/syn.$cmd" || true
  if [ ! -s "$tmp/syn.$cmd" ]; then
    fail "pisecd.8 SYNOPSIS has no line for \"pisecd $cmd\""
    continue
  fi
  # An entry under COMMANDS: a line starting with the command's name.
  grep -qE "^ {7}${cmd}( |$)" "$tmp/commands" || fail "pisecd.8 COMMANDS has no entry for \"$cmd\""
  # Options (-x, --long) anywhere in the usage line, and action words: the
  # word after the command and words next to a '|' (create|sign|verify,
  # armv6|host). Upper-case words are placeholders.
  words=$(printf '%s\n' "$rest" | grep -oE '(^|[][ (|])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[][ (|]//' || true)
  words+=" $(printf '%s\n' "$rest" | awk '{ print $2 }' | grep -E '^[a-z][a-z0-9-]*$' || true)"
  words+=" $(printf '%s\n' "$rest" | grep -oE '(\| ?[a-z][a-z0-9-]*|[a-z][a-z0-9-]*\|)' | tr -d '| ' || true)"
  for w in $words; do
    [ "$w" = "$cmd" ] && continue
    grep -qE -- "(^|[][ |])${w}([][ |]|$)" "$tmp/syn.$cmd" ||
      fail "pisecd.8 SYNOPSIS of \"pisecd $cmd\" lacks \"$w\" (from: $line)"
  done
done < <(grep '^  pisecd ' "$tmp/usage")
ok "pisecd.8 checked against $ncmd commands of pisecd --help"

for code in 0 1 2 3; do
  grep -qE "^ {7}${code}$" "$tmp/exit" || fail "pisecd.8 EXIT STATUS lacks status $code"
done
for sig in SIGTERM SIGHUP; do
  grep -qE "^ {7}.*${sig}" "$tmp/signals" || fail "pisecd.8 SIGNALS lacks $sig"
done
for f in /etc/pisec/pisecd.toml /run/pisecd/control.sock /usr/sbin/pisecd; do
  grep -qF "$f" "$tmp/8.txt" || fail "pisecd.8 does not mention $f"
done

# --- 3. pisecd.toml.5: every key the loader reads -----------------------------
# The loader is the file that calls reject_unknown(); src/ may be reorganised.
loader=$(grep -rl --include='*.cpp' 'reject_unknown(' "$PISEC_SOURCE/src" | head -n 1)
[ -n "$loader" ] || { fail "cannot find the config loader (reject_unknown) under src/"; exit 1; }
# Prints "table key" for every r.<reader>("key", ...) call: the table is the
# last argument of the reader(...) that made r; read_gate_common(r, ...)
# stands for the keys read in its own body.
awk '
  /^void read_gate_common\(/ { in_common = 1; next }
  in_common && /^}/ { in_common = 0; next }
  match($0, /r\.(boolean|integer|number|size|string|string_list|string_map|choice)(<[^>]*>)?\("[a-z0-9_]+"/) {
    call = substr($0, RSTART, RLENGTH); sub(/^[^"]*"/, "", call); sub(/"$/, "", call)
    if (in_common) common[++ncommon] = call
    else print table, call
    next
  }
  match($0, /reader\(.*, *"[a-z0-9_.]+"\)/) {
    t = substr($0, RSTART, RLENGTH); sub(/"\)$/, "", t); sub(/.*"/, "", t); table = t; next
  }
  /read_gate_common\(r,/ { for (i = 1; i <= ncommon; i++) print table, common[i] }
' "$loader" | sort -u >"$tmp/loader_keys"
nkeys=$(wc -l <"$tmp/loader_keys")

# The extraction itself must be right: every key of the commented example
# config (commented-out keys included) must be among the loader keys.
awk '
  /^\[[a-z0-9_.]+\]/ { t = $0; gsub(/[][]/, "", t); next }
  match($0, /^#? ?[a-z0-9_]+ =/) { k = substr($0, RSTART, RLENGTH); sub(/^#? ?/, "", k); sub(/ =$/, "", k); print t, k }
' "$PISEC_SOURCE/etc/pisec/pisecd.toml" | sort -u >"$tmp/example_keys"
missing=$(comm -23 "$tmp/example_keys" "$tmp/loader_keys")
if [ -n "$missing" ] || [ "$nkeys" -lt 50 ]; then
  fail "key extraction from $loader found $nkeys keys; it misses these keys of etc/pisec/pisecd.toml:"
  printf '%s\n' "$missing" | sed 's/^/    /' >&2
  exit 1
fi
ok "$nkeys config keys read by $(basename "$loader")"

# Documented keys per table: an entry line "key = default" or "key (...)",
# under a line "[table]" (gate keys common to every [gates.*] table are
# documented once, in GATES before the first [gates.*] heading).
awk '
  /^[A-Z]/ { sect = $0; table = ""; next }
  match($0, /^ +\[[a-z0-9_.]+\]$/) { table = $0; gsub(/[][ ]/, "", table); next }
  match($0, /^       [a-z0-9_]+ (=|\()/) {
    k = $1
    if (table != "") print table, k
    else if (sect == "GATES") for (g in gates) print g, k
  }
  BEGIN { gates["gates.entropy"]; gates["gates.clock"]; gates["gates.integrity"]; gates["gates.arch"] }
' "$tmp/5.txt" | sort -u >"$tmp/doc_keys"
undocumented=$(comm -23 "$tmp/loader_keys" "$tmp/doc_keys")
unknown=$(comm -13 "$tmp/loader_keys" "$tmp/doc_keys")
if [ -n "$undocumented" ]; then
  fail "pisecd.toml.5 does not document these keys the loader reads:"
  printf '%s\n' "$undocumented" | sed 's/^/    /' >&2
fi
if [ -n "$unknown" ]; then
  fail "pisecd.toml.5 documents keys the loader does not read:"
  printf '%s\n' "$unknown" | sed 's/^/    /' >&2
fi
[ -n "$undocumented$unknown" ] || ok "pisecd.toml.5 documents exactly the $nkeys loader keys, each under its table"

if [ "$fails" -gt 0 ]; then echo "$fails check(s) failed" >&2; exit 1; fi
echo "all checks passed"
