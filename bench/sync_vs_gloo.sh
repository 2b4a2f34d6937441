#!/usr/bin/env bash
# Our sync round next to gloo's all-reduce, for the same W and P, in one invocation on the same
# machine, so every printed ratio compares like with like (issue 18; bench/README.md).
#
#   bench/sync_vs_gloo.sh [BUILD_DIR]        # default build/ (needs -DP2P_BUILD_BENCH=ON)
#   W=4 SIZES=1000000,10000000,100000000 CASES='round|round_rs' bench/sync_vs_gloo.sh
#
# Runs build/bench/sync_round_bench for CASES/zmq/W:$W/P:$SIZES (round = allgather-average,
# round_rs = reduce-scatter-average, ZeroMQ tcp on loopback) plus one memcpy of 40 MB, then
# bench/anchors/gloo_allreduce.py for the same W and sizes, and prints one table: our median round,
# gloo's, our/gloo (below 1 is faster than gloo), effective GB/s, page faults, CPU and peak RSS per
# peer (in gradients), and the memcpy GB/s measured in the same run. The machine's load average is
# printed before and after: other people's jobs make round times noisy, ratios less so.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
W="${W:-4}"
SIZES="${SIZES:-1000000,10000000}"
CASES="${CASES:-round|round_rs}"
PY=/usr/bin/python3  # Debian's python3-torch lives there, not in a pyenv
bench="$build/bench/sync_round_bench"
if [[ ! -x "$bench" ]]; then
  echo "sync_vs_gloo.sh: $bench not found; build it with cmake -DP2P_BUILD_BENCH=ON and" \
    "cmake --build $build --target sync_round_bench" >&2
  exit 2
fi
if ! "$PY" -c 'import torch.distributed' 2>/dev/null; then
  echo "sync_vs_gloo.sh: no torch for $PY; install it with apt-get install python3-torch" >&2
  exit 2
fi
[[ "$SIZES" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "sync_vs_gloo.sh: SIZES must be like 1000000,10000000" >&2; exit 2; }
[[ "$W" =~ ^[0-9]+$ && "$W" -ge 2 ]] || { echo "sync_vs_gloo.sh: W must be an integer >= 2" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "start: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
sizes_re="${SIZES//,/|}"
P2P_BENCH_SIZES="$SIZES" "$bench" \
  --benchmark_filter="^($CASES)/zmq/W:$W/P:($sizes_re)/|^envelope/memcpy/P:10000000\$" \
  --benchmark_format=json --benchmark_out="$tmp/ours.json" --benchmark_out_format=json >/dev/null
echo "ours done: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" "$here/anchors/gloo_allreduce.py" --world "$W" --sizes "$SIZES" >"$tmp/gloo.txt"
echo "gloo done: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$tmp/ours.json" "$tmp/gloo.txt" <<'PYEOF'
import json, re, sys
ours = json.load(open(sys.argv[1]))["benchmarks"]
gloo = {}
for line in open(sys.argv[2]):
    m = re.match(r"gloo W=(\d+) P=(\d+) .*median_ms=([\d.]+)", line)
    if m:
        gloo[(int(m[1]), int(m[2]))] = float(m[3])
names = {"round": "allgather-average", "round_rs": "reduce-scatter-average"}
print(f"{'case':<34}{'ours ms':>10}{'gloo ms':>10}{'ours/gloo':>10}{'GB/s':>8}{'faults':>10}"
      f"{'cpu ms':>9}{'RSS/peer':>10}")
for b in ours:
    name = b["name"]
    if name.startswith("envelope/memcpy"):
        print(f"memcpy of 40 MB in the same run: {b['bytes_per_second'] / 1e9:.1f} GB/s")
        continue
    if "error_message" in b:
        print(f"{name}: FAILED: {b['error_message']}")
        continue
    m = re.match(r"(\w+)/zmq/W:(\d+)/P:(\d+)/", name)
    group, w, p = m[1], int(m[2]), int(m[3])
    g = gloo.get((w, p))
    ratio = f"{b['median_ms'] / g:.2f}x" if g else "-"
    print(f"{names.get(group, group) + f' {w}x{p:,}':<34}{b['median_ms']:>10.1f}"
          f"{(f'{g:.1f}' if g else '-'):>10}{ratio:>10}{b['GBps']:>8.2f}{b['faults']:>10.0f}"
          f"{b['cpu_ms']:>9.0f}{b.get('rss_x_grad', 0):>9.1f}g")
print("GB/s = 4P(W-1) bytes / median round; RSS/peer = peak resident memory / W, in gradients (4P bytes)")
PYEOF
