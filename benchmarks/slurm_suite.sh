#!/bin/bash
# Run a dfbench suite as a Slurm job array: array task k runs shard k+1 of n, so the n tasks
# together run every (method, dataset, seed) of the grid exactly once (see docs/scaling.md).
#
#   mkdir -p logs                                                   # from the checkout's root
#   sbatch --array=0-7 benchmarks/slurm_suite.sh paper            # 8 shards of benchmarks/paper.yaml
#   sbatch --array=0-7%4 benchmarks/slurm_suite.sh paper          # ... at most 4 at a time
#   dfbench leaderboard --results shared/results --out leaderboards   # once all tasks are done
#
# Every task writes its records to the same results folder (shared/results by default; set
# DFBENCH_RESULTS). Completed runs are skipped, so resubmitting the array after a failure or a
# time-out only runs what is missing, and interrupted runs resume from their checkpoints.
# Teachers are cached in DFBENCH_CACHE: put it on the shared file system too, so each teacher is
# trained once (a first single-shard run, or 'dfbench run' of one method, fills it).
#
#SBATCH --job-name=dfbench-suite
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

SUITE=${1:?usage: sbatch --array=0-N benchmarks/slurm_suite.sh SUITE [extra dfbench bench options]}
shift
RESULTS=${DFBENCH_RESULTS:-shared/results}
export DFBENCH_CACHE=${DFBENCH_CACHE:-shared/cache}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

if [[ -z "${SLURM_ARRAY_TASK_ID:-}" || -z "${SLURM_ARRAY_TASK_COUNT:-}" ]]; then
    echo "Submit this script as a job array: sbatch --array=0-N $0 $SUITE" >&2
    exit 2
fi
# shard i/n: i counts from 1 (an array numbered 0-7 or 1-8 alike; it must be contiguous, no :step)
SHARD="$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} + 1))/$SLURM_ARRAY_TASK_COUNT"
echo "dfbench suite $SUITE, shard $SHARD, results in $RESULTS" >&2
# a failed run is recorded and the shard goes on; bench then exits 1, which marks the task failed
dfbench bench "$SUITE" --shard "$SHARD" \
    --results "$RESULTS" --quiet "$@"
