#!/usr/bin/env bash
# Rebuilds the regime suite's seeded boards (issues 19 and 26) with the tool itself, each at its design
# (BENCHMARKS.md, "Power of the exact test over seeds"): for each regime, its collapse task run with its losses
# and the clean control (mode: clean, trained with ce), every run with one torch thread, seed by seed (every arm
# of a seed before the next seed, so that a sweep cut short leaves whole seeds). Then the board is written afresh
# from its runs:
#   hot       collapse_facts v3            seeds 0-4, control 0-4, unpaired  -> leaderboards/collapse_facts.json
#   greedy    collapse_facts_greedy v2     seeds 0-11, control 0-4, --paired -> leaderboards/collapse_facts_greedy.json
#   longtail  collapse_facts_longtail v3   seeds 0-7, control 0-4, unpaired  -> leaderboards/collapse_facts_longtail.json
# (greedy v2 and longtail v3 are benchmarks/collapse_regimes.py's regimes greedy_seedrun and longtail_v3. Each seed
# count is its regime's design for 0.8 power at 1.5x, measured on the arms' sds: BENCHMARKS.md "Power of the exact
# test over seeds". Both boards were built at these designs on 2026-12-05, from the seeds of two sessions on one VM.)
# Every regime samples a base per seed (model.pretrain.seed: run): each seed's first run pretrains that seed's base
# once (cached; seed 0's is the shipped one) and the seed's other runs reuse it. A finished run under $OUT is reused and a killed one resumed,
# so a killed script resumes, but only while $OUT lives: a board's runs must all come from one CPU kind (publish
# refuses a mix), so start a sweep where it can finish. JOBS=2 runs the seeds in two processes (even and odd).
# Example: JOBS=2 REGIMES=greedy leaderboards/seed_suite.sh   (twelve greedy seeds: about 85 min on the 2-core VM)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/regimes}
REGIMES=${REGIMES:-hot,greedy,longtail}
JOBS=${JOBS:-1}
declare -A TASK=([hot]=collapse_facts [greedy]=collapse_facts_greedy [longtail]=collapse_facts_longtail)
declare -A RUNS=([hot]=hot [greedy]=greedy_seedrun [longtail]=longtail_v3)  # collapse_regimes.py's regime
declare -A LOSSES=([hot]=ce,tce:0.9,tce:0.99,focal:2 [greedy]=ce,tce:0.9,tce:0.99,tce:0.5,tce:0.7,focal:2
                   [longtail]=ce,tce:0.9,tce:0.99,focal:2)
declare -A SEEDS=([hot]="0 1 2 3 4" [greedy]="0 1 2 3 4 5 6 7 8 9 10 11" [longtail]="0 1 2 3 4 5 6 7")
CONTROL_SEEDS=" 0 1 2 3 4 "
declare -A PUBLISH=([hot]="" [greedy]="--paired" [longtail]="")

sweep() {  # sweep REGIME SEED...: one seed after another, each seed's arms in turn
  local regime=$1 seed control
  shift
  for seed in "$@"; do
    control=""
    [[ "$CONTROL_SEEDS" == *" $seed "* ]] && control="--control"
    python3 benchmarks/collapse_regimes.py --regimes "${RUNS[$regime]}" --losses "${LOSSES[$regime]}" $control \
      --seeds "$seed" --out "$OUT" --threads 1 --quiet
  done
}

for regime in ${REGIMES//,/ }; do
  read -ra seeds <<< "${SEEDS[$regime]}"
  pids=()
  for ((job = 0; job < JOBS; job++)); do
    mine=()
    for ((i = job; i < ${#seeds[@]}; i += JOBS)); do mine+=("${seeds[$i]}"); done
    sweep "$regime" "${mine[@]}" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done  # set -e: a failed sweep stops the script before publishing
  board="leaderboards/${TASK[$regime]}.json"
  rm -f "$board"  # a board of one task version and its design: written afresh from these runs
  runs=()  # the design's seeds only (a folder of the regime may hold more)
  for seed in "${seeds[@]}"; do runs+=("$OUT/${RUNS[$regime]}"/*-s"$seed"/*/); done
  fortifai-bench publish "${runs[@]}" --to "$board" ${PUBLISH[$regime]} --jobs "$JOBS" -q
done
fortifai-bench leaderboard suite leaderboards/collapse_facts.json leaderboards/collapse_facts_greedy.json \
  leaderboards/collapse_facts_longtail.json --markdown
