#!/bin/sh
# Project lint: the unsafe C functions curl's style bans (use snprintf, memcpy with sizes, strtol
# with checks) must not appear in our C/C++ sources. Exits 1 and lists each use found.
set -eu
cd "$(dirname "$0")/.."
pattern='(^|[^_a-zA-Z0-9.>])(sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|atoll|atof|strtok|tmpnam)[[:space:]]*\('
files=$(git ls-files 'server/*.c' 'server/*.h' 'shim/*.cc' 'shim/*.h' 'shim/plugin/*' 'bench/*.c' 'tests/unit/*.c' 'tests/shim/*.c' 'tests/fuzz/*.c' 2>/dev/null || true)
if [ -z "$files" ]; then  # not a git checkout (an exported tarball): the same folders
  files=$(find server shim bench tests/unit tests/shim tests/fuzz -maxdepth 2 -type f \
            \( -name '*.c' -o -name '*.h' -o -name '*.cc' \) | sort)
fi
[ -n "$files" ] || { echo "lint: no sources found"; exit 1; }
# shellcheck disable=SC2086
hits=$(grep -nE "$pattern" $files | grep -vE '^[^:]+:[0-9]+:\s*(\*|//|/\*)' || true)
if [ -n "$hits" ]; then
  echo "lint: banned functions (use snprintf / memcpy / strtol):"
  echo "$hits"
  exit 1
fi
echo "lint: ok ($(echo "$files" | wc -l) files)"
