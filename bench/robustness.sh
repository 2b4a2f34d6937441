#!/usr/bin/env bash
# Rules x attacks: final test accuracy of W local peers (p2ptrain launch, ZeroMQ, --insecure) on
# Fashion-MNIST, with A of them attacking (ranks 1..A), for every rule and attack listed.
# Writes OUT.csv and OUT.md (a markdown table: one row per rule, one column per attack).
# Usage: bench/robustness.sh [BUILD_DIR] [OUT]   (OUT default: robustness; files OUT.csv, OUT.md)
# Env: PEERS (5), ATTACKERS (1), EPOCHS (3), MODEL (mlp), BATCH (64),
#   RULES ("mean median trimmed-mean:beta=0.2 krum:f=1 centered-clip geomedian"),
#   ATTACKS ("none signflip:scale=10 gaussian:std=100 labelflip alie ipm:eps=0.5"). The issue's grid is
#   PEERS=5 ATTACKERS=1 and PEERS=7 ATTACKERS=2 (RULES with f=2 for the latter).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/peer/p2ptrain
OUT=${2:-robustness}
[ -x "$BIN" ] || { echo "robustness.sh: $BIN not found; build first" >&2; exit 1; }
PEERS=${PEERS:-5}
ATTACKERS=${ATTACKERS:-1}
EPOCHS=${EPOCHS:-3}
MODEL=${MODEL:-mlp}
BATCH=${BATCH:-64}
RULES=${RULES:-"mean median trimmed-mean:beta=0.2 krum:f=1 centered-clip geomedian"}
ATTACKS=${ATTACKS:-"none signflip:scale=10 gaussian:std=100 labelflip alie ipm:eps=0.5"}
ranks=$(seq -s, 1 "$ATTACKERS")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "peers,attackers,epochs,model,rule,attack,test_accuracy,seconds,status" >"$OUT.csv"
for rule in $RULES; do
  for attack in $ATTACKS; do
    attack_args=()
    [ "$attack" != none ] && attack_args=(--attack "$attack" --attack-ranks "$ranks")
    rm -rf "$work/m"
    start=$(date +%s)
    status=ok
    "$BIN" launch --size "$PEERS" --metrics-dir "$work/m" --progress off -- \
      --dataset fashion-mnist --model "$MODEL" --epochs "$EPOCHS" --batch "$BATCH" --threads 1 \
      --insecure --no-early-stopping --aggregation "$rule" "${attack_args[@]}" \
      >"$work/out" 2>"$work/err" || status="failed: $(grep -m1 -o 'error.*' "$work/err" | tr ',' ';' | cut -c1-120)"
    secs=$(($(date +%s) - start))
    acc=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["test_accuracy"])' \
      "$work/m/rank-0.jsonl" 2>/dev/null || echo "")
    echo "$PEERS,$ATTACKERS,$EPOCHS,$MODEL,$rule,$attack,$acc,$secs,$status" | tee -a "$OUT.csv" >&2
  done
done

python3 - "$OUT.csv" "$OUT.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
attacks = list(dict.fromkeys(r["attack"] for r in rows))
rules = list(dict.fromkeys(r["rule"] for r in rows))
cell = {(r["rule"], r["attack"]): r for r in rows}
def show(r):
    if r["status"] != "ok": return "stopped"
    return f"{100 * float(r['test_accuracy']):.1f}"
r0 = rows[0]
with open(sys.argv[2], "w") as f:
    f.write(f"Final test accuracy (%), {r0['peers']} peers, {r0['attackers']} attacking, "
            f"{r0['epochs']} epochs of {r0['model']} on Fashion-MNIST\n\n")
    f.write("| rule | " + " | ".join(attacks) + " |\n|---|" + "---|" * len(attacks) + "\n")
    for rule in rules:
        f.write(f"| `{rule}` | " + " | ".join(show(cell[(rule, a)]) for a in attacks) + " |\n")
print(open(sys.argv[2]).read())
PY
