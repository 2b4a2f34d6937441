#!/usr/bin/env bash
# `cmake --install` into a fresh prefix, then run the installed binary alone: its help, and a
# short training run that offloads to function processes (which needs p2ptrain-function next to
# p2ptrain in the installed tree, not in the build tree).
set -euo pipefail
build=${1:?usage: install_test.sh BUILD_DIR}
prefix=$(mktemp -d); trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/p2ptrain bin/p2ptrain-function share/doc/p2ptrain/README.md \
         share/doc/p2ptrain/security.md share/p2ptrain/scripts/start-rabbitmq.sh; do
  [ -e "$prefix/$f" ] || { echo "FAIL: $f is not installed" >&2; exit 1; }
done
help=$("$prefix/bin/p2ptrain" --help) || { echo "FAIL: installed p2ptrain --help failed" >&2; exit 1; }
grep -q train <<<"$help" || { echo "FAIL: installed p2ptrain --help lists no train command" >&2; exit 1; }
cd "$prefix"
"$prefix/bin/p2ptrain" train --dataset synthetic --synthetic-train 512 --synthetic-test 128 \
  --model logreg --epochs 1 --offload process --functions 2 --progress off \
  --metrics "$prefix/m.jsonl" >"$prefix/out.txt" 2>&1 ||
  { echo "FAIL: installed p2ptrain train --offload process:" >&2; cat "$prefix/out.txt" >&2; exit 1; }
grep -q '"param_hash"' "$prefix/m.jsonl" || { echo "FAIL: no metrics line" >&2; exit 1; }
echo "ok: installed tree runs (help, offloaded training)"
