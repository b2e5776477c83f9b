#!/bin/bash
# Plain sbatch, without submitit or `llmtts launch`: one task per GPU, srun starts them, each task
# reads its rank from SLURM_PROCID/SLURM_NTASKS (llmtts.distributed.process_group translates them), and a
# pre-emption / time-limit signal makes the trainer checkpoint and exit 75 (REQUEUE_EXIT_CODE),
# after which this script requeues the job; the next run resumes with --resume auto.
#
#   sbatch slurm/sbatch-example.sh            (edit the #SBATCH lines and the command below)
#   sbatch slurm/sbatch-example.sh CMD ARGS...  (run CMD ARGS instead; give it --save-dir and --resume auto)
# RUN_DIR and MAX_REQUEUES may also come from the environment (sbatch passes it on).
# tests/launch/test_slurm_plain.py runs this script on the local cluster (2 tasks, the toy stage).
#
#SBATCH --job-name=llmtts-llm
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR2@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=runs/slurm-%x-%j.out
set -uo pipefail

RUN_DIR=${RUN_DIR:-runs/llm}
MAX_REQUEUES=${MAX_REQUEUES:-10}
if (( $# )); then
    CMD=("$@")
else
    CMD=(llmtts llm train --from-scratch --config configs/llm/soprano-80m.yaml --input-dir shards/tokens
         --save-dir "$RUN_DIR" --resume auto)
fi

export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

# B:USR2 goes to this batch shell only: pass it on to every task (srun forwards it).
STOPPED=0
trap 'echo "USR2: asking the trainer to checkpoint"; STOPPED=1; kill -USR2 "$SRUN_PID" 2>/dev/null' USR2

echo "job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0} of max $MAX_REQUEUES"
# Each task's shell ignores USR2 (SLURM signals the trainer itself) and turns "checkpointed after a
# signal" (75) into 0: with --kill-on-bad-exit (which stops a crashed rank from leaving the others
# hanging) the first rank to exit 75 would otherwise kill the rest.
srun --kill-on-bad-exit=1 bash -c 'trap "" USR2; "$@"; rc=$?; [[ $rc == 75 ]] && exit 0; exit $rc' task \
    "${CMD[@]}" &
SRUN_PID=$!
# `wait` returns early when the trap fires: wait again for srun itself.
while true; do
    wait "$SRUN_PID"; rc=$?
    kill -0 "$SRUN_PID" 2>/dev/null || break
done

if [[ $rc -eq 0 && $STOPPED == 1 ]]; then  # stopped by the signal after checkpointing
    if (( ${SLURM_RESTART_COUNT:-0} < MAX_REQUEUES )); then
        echo "checkpointed; requeueing"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    echo "max requeues ($MAX_REQUEUES) reached; the run checkpointed: submit the job again to resume" >&2
    exit 75  # not finished: the job ends FAILED (exit code 75), not COMPLETED, and is not requeued
fi
exit $rc
