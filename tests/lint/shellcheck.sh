#!/usr/bin/env bash
# Runs shellcheck on every shell script of the repository; any finding fails.
# A script is found by its name (*.sh, *.bash, *.inc, etc/local.d/*.start|stop,
# etc/conf.d/*, APKBUILD*) or by its #! line (sh, bash, dash, ash, openrc-run).
#   - OpenRC services (#!/sbin/openrc-run) are POSIX sh that openrc-run sources
#     and whose variables (command, command_args, pidfile, ...) it reads after:
#     -s sh -e SC2034.
#   - APKBUILDs are POSIX sh that abuild sources, providing srcdir, pkgdir,
#     builddir, ... and reading pkgname, depends, ...; the usual aports
#     exclusions: -s sh -e SC2034,SC2154,SC2164.
#   - etc/conf.d/* and *.inc have no #! line: sh and bash respectively.
# A finding in a file someone else is rewriting can be waived, pinned to that
# file's exact content, in tests/lint/shellcheck-waivers; once the file
# changes the waiver no longer applies.
# Usage: shellcheck.sh SOURCE_DIR
set -euo pipefail
src=${1:-${PISEC_SOURCE:?usage: shellcheck.sh SOURCE_DIR}}
cd "$src"
command -v shellcheck >/dev/null || { echo "FAIL: shellcheck is not installed (scripts/setup.sh installs it)" >&2; exit 1; }

# Tracked and new (not ignored) files; a plain find when this is not a git tree.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard | sort -u)
else
  mapfile -t files < <(find . -path ./build -prune -o -path ./.git -prune -o -type f -print | sed 's|^\./||' | sort)
fi

waivers=tests/lint/shellcheck-waivers
fails=0 checked=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue  # deleted in the worktree
  shebang=$(head -c 128 "$f" | head -n 1 | tr -d '\0')
  opts=()
  case "$f" in
    */APKBUILD | */APKBUILD.*) opts=(-s sh -e 'SC2034,SC2154,SC2164') ;;
    etc/conf.d/*) opts=(-s sh) ;;
    etc/local.d/*.start | etc/local.d/*.stop) opts=(-s sh) ;;
    *.inc) [[ $shebang == '#!'* ]] || opts=(-s bash) ;;
    *.sh | *.bash) ;;
    *)
      case "$shebang" in
        '#!/sbin/openrc-run'*) opts=(-s sh -e SC2034) ;;
        '#!'*/env\ bash* | '#!'*/bash* | '#!'*/sh | '#!'*/sh\ * | '#!'*/dash* | '#!'*/ash*) ;;
        *) continue ;;
      esac
      ;;
  esac
  [[ $shebang == '#!/sbin/openrc-run'* ]] && opts=(-s sh -e SC2034)
  checked=$((checked + 1))
  # Follow sourced files relative to the script (tests source lib.sh.inc).
  out=$(shellcheck -x --source-path=SCRIPTDIR -f gcc "${opts[@]}" "$f" 2>&1) && continue
  # Waivers: "<sha256 of the file>  <path>  <SCxxxx,...>  <reason>".
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  waived=$(awk -v s="$sum" -v f="$f" '$1 == s && $2 == f { print $3 }' "$waivers" 2>/dev/null || true)
  if [ -n "$waived" ]; then
    rest=$(printf '%s\n' "$out" | grep -vE "\[($(tr ',' '|' <<<"$waived"))\]$" || true)
    if [ -z "$rest" ]; then
      echo "waived: $f: $(grep -c . <<<"$out") finding(s) ($waived), see $waivers"
      continue
    fi
    out=$rest
  fi
  echo "FAIL: shellcheck ${opts[*]} $f:" >&2
  printf '%s\n' "$out" | sed 's/^/    /' >&2
  fails=$((fails + 1))
done

# A waiver whose file changed is dead: say so, so it gets removed.
if [ -f "$waivers" ]; then
  while read -r sum path _; do
    case "$sum" in '' | '#'*) continue ;; esac
    [ -f "$path" ] && [ "$(sha256sum "$path" | cut -d' ' -f1)" = "$sum" ] ||
      echo "note: the waiver for $path no longer applies (the file changed): remove it from $waivers"
  done <"$waivers"
fi

[ "$checked" -ge 10 ] || { echo "FAIL: only $checked shell scripts found under $src" >&2; exit 1; }
if [ "$fails" -gt 0 ]; then echo "$fails of $checked shell scripts have shellcheck findings" >&2; exit 1; fi
echo "ok: shellcheck clean on $checked shell scripts"
