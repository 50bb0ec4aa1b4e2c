#!/usr/bin/env bash
# Start (or resume) a sweep: LANES copies of benchmarks/sweep_lane.py on QUEUE, one thread each, in the
# background, from a worktree of this checkout's HEAD frozen at FROZEN, so that editing and committing in the
# checkout while they run (hours) never changes the code a running job imports. The lanes share QUEUE and OUT
# (claims under OUT/.claims); a finished run is skipped and a killed one resumed stage by stage, so after a stop
# the same command carries the sweep on. The queue can be edited while they run (a lane reads it before each job).
# Each finished run is published, verified, onto its board in this checkout's leaderboards/ where that board
# exists (PUBLISH=0: not): the board file outlives the machine the run folders live on. KERNELS=AVX2 holds torch,
# MKL and oneDNN to AVX2 kernels, which makes an AMD family-25 or -26 CPU with AVX-512 the light board's kind
# (`results.cpu_kind`; BENCHMARKS.md, "Two AMD EPYCs, one kind", "A Zen 5 joins the kind").
#   QUEUE=runs/queue.txt OUT=runs/regimes_v3 benchmarks/sweep_lanes.sh      # two lanes; logs OUT/lane_N.log
#   UNTIL=10:20 QUEUE=... benchmarks/sweep_lanes.sh   # the session stops at 10:20: runs that finish by then first
#   PRUNE=1 QUEUE=... benchmarks/sweep_lanes.sh       # remove published runs' stage models (a disk's worth a sweep)
#   python benchmarks/sweep_lane.py runs/queue.txt --out runs/regimes_v3 --status
# Needs WikiText-2 (FORTIFAI_DATA_DIR, default ../shared/data beside the checkout) for the SmolLM2 regimes.
set -euo pipefail
cd "$(dirname "$0")/.."
QUEUE=$(realpath "${QUEUE:-benchmarks/smol_queue.txt}")
OUT=$(realpath -m "${OUT:-runs/regimes_v3}")
LANES=${LANES:-2}
FROZEN=$(realpath -m "${FROZEN:-../frozen-$(git rev-parse --short HEAD)}")
PYTHON=${PYTHON:-$(command -v python3)}
PUBLISH_TO=()
if [[ ${KERNELS:-} == AVX2 ]]; then
  export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
elif [[ -n ${KERNELS:-} ]]; then
  echo "error: KERNELS=$KERNELS: only AVX2 is known (or leave it unset)" >&2; exit 2
fi
[[ ${PUBLISH:-1} == 0 ]] || PUBLISH_TO=(--publish "$(pwd)/leaderboards")
# PRUNE=1: a run's stage models go once its board holds it (sweep_lane.py --prune; CE's stage 0 kept for its control)
[[ ${PRUNE:-0} == 0 || ${PUBLISH:-1} == 0 ]] || PUBLISH_TO+=(--prune)
UNTIL_ARG=()
[[ -z ${UNTIL:-} ]] || UNTIL_ARG=(--until "$UNTIL")  # HH:MM the session stops: jobs that finish by then first
export FORTIFAI_DATA_DIR=$(realpath -m "${FORTIFAI_DATA_DIR:-../shared/data}")
[[ -f $QUEUE ]] || { echo "error: no queue at $QUEUE (QUEUE=FILE)" >&2; exit 2; }
[[ -d $FROZEN ]] || git worktree add --quiet --detach "$FROZEN" HEAD
mkdir -p "$OUT"
for n in $(seq 1 "$LANES"); do
  # PYTHONPATH puts the frozen copy's package ahead of the checkout's editable install. setsid: a lane is a session
  # of its own, not a member of the shell's that started it; that does not keep it alive past the end of a sandbox
  # session (session 16's lanes died with it, no handler ran: killed), so a stop loses each lane's work since its
  # run last saved a phase (`sweep_lane.py --status` says how much) and the same command resumes the rest.
  (cd "$FROZEN" && OMP_NUM_THREADS=1 PYTHONPATH="$FROZEN" setsid nohup "$PYTHON" benchmarks/sweep_lane.py "$QUEUE" \
     --out "$OUT" "${PUBLISH_TO[@]}" "${UNTIL_ARG[@]}" >>"$OUT/lane_$n.log" 2>&1 < /dev/null &)
  echo "lane $n: $FROZEN on $QUEUE, log $OUT/lane_$n.log"
  sleep 5  # lanes claim jobs one after the other
done
