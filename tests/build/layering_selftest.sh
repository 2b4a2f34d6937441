#!/usr/bin/env bash
# check-layering.sh must accept a clean tree and reject one where `low` includes `high`'s header
# without linking it, naming the file and line.
set -euo pipefail
check=${1:?usage: layering_selftest.sh CHECK_SCRIPT}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/low" "$tmp/src/high" "$tmp/src/high/sub"
printf '#include "low/a.h"\n' >"$tmp/src/high/b.cc"
printf '#include "high/b.h"\n#include "low/a.h"\n' >"$tmp/src/high/sub/c.cc"
printf '#pragma once\n#include <vector>\n' >"$tmp/src/low/a.h"
printf 'high p2p_high p2p_low\nhigh/sub p2p_sub p2p_high\nlow p2p_low\n' >"$tmp/map.txt"
"$check" "$tmp/map.txt" "$tmp/src" >/dev/null || { echo "FAIL: clean tree rejected" >&2; exit 1; }

printf '#pragma once\n#include "high/b.h"  // wrong way\n' >"$tmp/src/low/a.h"
if out=$("$check" "$tmp/map.txt" "$tmp/src" 2>&1); then
  echo "FAIL: low/a.h includes high/b.h, yet the check passed: $out" >&2; exit 1
fi
grep -q 'low/a.h:2: .*includes "high/b.h" but does not link p2p_high' <<<"$out" ||
  { echo "FAIL: violation not named as expected: $out" >&2; exit 1; }
echo "ok: clean tree accepted, low -> high violation reported"
