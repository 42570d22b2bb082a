#!/usr/bin/env bash
# Fails when a C++ file under src/, include/ or tests/ differs from what
# clang-format makes of it (.clang-format at the top). Fix with:
#   clang-format -i $(git ls-files 'src/*.[ch]pp' 'include/*.hpp' 'tests/*.[ch]pp')
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check-format: clang-format is missing (scripts/install-deps.sh)" >&2; exit 2; }
mapfile -t files < <(find src include tests -name '*.cpp' -o -name '*.hpp' | sort)
if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/check-format.$$; then
  grep -E '^[^ ].*(warning|error):' /tmp/check-format.$$ | cut -d: -f1 | sort -u | sed 's/^/not formatted: /'
  rm -f /tmp/check-format.$$
  exit 1
fi
rm -f /tmp/check-format.$$
echo "check-format: ${#files[@]} files formatted as .clang-format says"
