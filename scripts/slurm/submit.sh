#!/usr/bin/env bash
# Submit a carabm sweep as a Slurm array, then `carabm collect` as a job that runs after
# every array task has ended (afterany: also when some members failed).
#   scripts/slurm/submit.sh SWEEP.yaml DIR [--gpu] [extra sbatch options...]
# e.g. scripts/slurm/submit.sh configs/cohort_axicel.yaml cohort --partition=short
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SWEEP=${1:?usage: submit.sh SWEEP.yaml DIR [--gpu] [sbatch options...]}
DIR=${2:?usage: submit.sh SWEEP.yaml DIR [--gpu] [sbatch options...]}
shift 2
SCRIPT=$HERE/sweep_array.sbatch
if [[ "${1:-}" == "--gpu" ]]; then SCRIPT=$HERE/sweep_array_gpu.sbatch; shift; fi
# Expand once on the login node: writes DIR/members.csv and the configs, prints N (and
# stops here on a bad sweep file, before anything is queued).
N=$(carabm sweep "$SWEEP" --out "$DIR" --expand)
MAX=${CARABM_MAX_CONCURRENT:-}   # e.g. CARABM_MAX_CONCURRENT=50 -> --array=0-(N-1)%50
ARRAY="0-$((N - 1))${MAX:+%$MAX}"
mkdir -p "$DIR/logs"
ARRAY_ID=$(sbatch --parsable --array="$ARRAY" --output="$DIR/logs/member-%a.out" "$@" "$SCRIPT" "$SWEEP" "$DIR")
ARRAY_ID=${ARRAY_ID%%;*}
COLLECT_ID=$(sbatch --parsable --dependency=afterany:"$ARRAY_ID" --job-name=carabm-collect \
  --time=00:30:00 --mem=4G --output="$DIR/logs/collect.out" "$@" --wrap="carabm collect '$DIR'")
echo "carabm: $N members: array job $ARRAY_ID ($SCRIPT), collect job $COLLECT_ID -> $DIR/summary.md"
