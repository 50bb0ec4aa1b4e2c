#!/usr/bin/env bash
# Rebuilds the regime suite's seeded boards (issue 19) with the tool itself: for each regime of the suite,
# its collapse task run with ce, tce:0.9, tce:0.99 and focal:2 and the clean control (mode: clean, trained
# with ce), five seeds each, every run with one torch thread; the mode-seeking regime also sweeps gamma
# (tce:0.5, tce:0.7). Then each regime's board is written afresh from its runs:
#   hot       collapse_facts           -> leaderboards/collapse_facts.json
#   greedy    collapse_facts_greedy    -> leaderboards/collapse_facts_greedy.json
#   longtail  collapse_facts_longtail  -> leaderboards/collapse_facts_longtail.json
# and the suite view (loss x regime, verdicts against CE) is printed.
# Where a task samples a base per seed (model.pretrain.seed: run, collapse_facts from v3), each seed's first run
# pretrains that seed's base once (cached; seed 0's is the shipped one) and the seed's other runs reuse it.
# The runs are benchmarks/collapse_regimes.py's: a finished run under $OUT is reused and a killed one resumed,
# so a killed script resumes. Run two of these at once on a 2-core machine with REGIMES=hot and
# REGIMES=greedy,longtail; BENCHMARKS.md ("Regime suite") has the times.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/regimes}
REGIMES=${REGIMES:-hot,greedy,longtail}
declare -A TASK=([hot]=collapse_facts [greedy]=collapse_facts_greedy [longtail]=collapse_facts_longtail)
declare -A LOSSES=([hot]=ce,tce:0.9,tce:0.99,focal:2 [greedy]=ce,tce:0.9,tce:0.99,tce:0.5,tce:0.7,focal:2
                   [longtail]=ce,tce:0.9,tce:0.99,focal:2)
for regime in ${REGIMES//,/ }; do
  python3 benchmarks/collapse_regimes.py --regimes "$regime" --losses "${LOSSES[$regime]}" --control \
    --seeds 0-4 --out "$OUT" --threads 1 --quiet
  board="leaderboards/${TASK[$regime]}.json"
  rm -f "$board"  # a board of one task version (and one base, or a base per seed where the task's
                  # model.pretrain.seed is run): written afresh from these runs
  mapfile -t runs < <(ls -d "$OUT/$regime"/*/*/ | sort)
  fortifai-bench publish "${runs[@]}" --to "$board"
done
fortifai-bench leaderboard suite leaderboards/collapse_facts.json leaderboards/collapse_facts_greedy.json \
  leaderboards/collapse_facts_longtail.json --markdown
