#!/usr/bin/env bash
# Rebuilds the seeded board leaderboards/collapse_facts.json with the tool itself: the embedded default task,
# losses ce, tce:0.9, tce:0.99 and focal:2 and the clean control (mode: clean, trained with ce), three seeds each
# (15 runs; BENCHMARKS.md "Collapse" gives the time per run measured on the shared 2-core development machine).
# Each run's command is recorded in its results.json and so in the entry.
# Re-running skips (loss, seed) pairs that already have a complete run under $OUT, so a killed script resumes.
# After a change of the task (a new version), delete the board first: publish refuses to mix task versions.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/seed-boards}
complete() {  # complete <loss slug> <seed>: is there a finished run?
  for r in "$OUT"/collapse_facts-"$1"-s"$2"-*/results.json; do
    [ -f "$r" ] && python3 -c "import json,sys; sys.exit(0 if json.load(open('$r')).get('complete') else 1)" && return 0
  done
  return 1
}
missing() {  # missing <loss slug>: the seeds 0,1,2 without a finished run, comma-separated
  local out=()
  for seed in 0 1 2; do complete "$1" "$seed" || out+=("$seed"); done
  (IFS=,; echo "${out[*]}")
}
# Each loss's missing seeds run side by side (--jobs 3: one process and one thread each, the numbers of
# --threads 1 runs one after another; BENCHMARKS.md "Threads and floors").
for loss in ce tce:0.9 tce:0.99 focal:2; do
  seeds=$(missing "${loss//:/-}")
  [ -z "$seeds" ] || fortifai-bench collapse --task collapse_facts --loss "$loss" --seeds "$seeds" \
    --no-control --out "$OUT" --quiet --jobs 3
done
seeds=$(missing control-ce)  # the ceiling row: the same schedule with every split kept real
[ -z "$seeds" ] || fortifai-bench collapse --task collapse_facts --loss ce --set mode=clean --seeds "$seeds" \
  --out "$OUT" --quiet --jobs 3
# one complete run per (loss, seed): the latest; a killed, unfinished run is left out
mapfile -t runs < <(python3 - "$OUT" <<'PY'
import json, pathlib, sys
best = {}
for r in sorted(pathlib.Path(sys.argv[1]).glob("collapse_facts-*/results.json")):
    d = json.loads(r.read_text())
    if d.get("complete"):
        best[(d["loss"]["spec"], bool(d.get("control")), d["seed"])] = str(r.parent)
print("\n".join(best[k] for k in sorted(best)))
PY
)
fortifai-bench publish "${runs[@]}" --to leaderboards/collapse_facts.json --replace  # the same entries, new runs
fortifai-bench leaderboard show leaderboards/collapse_facts.json
