#!/usr/bin/env bash
# Two more runs of configs/fairytaleqa.yaml (seeds 7 and 8), side by side, one core each, from the frozen
# checkout /work/run_s16 (main 57c96f0; the model code of 9e0115e), for the ensemble with runs/fqa_s15 (seed 42).
cd /work/run_s16
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s16
for s in 7 8; do
  core=$((s % 2))
  mkdir -p /work/runs/fqa_s16_seed$s
  echo "taskset -c $core python scripts/train.py --config configs/fairytaleqa.yaml --set train.seed=$s --set train.eval_every=0 --no-eval --no-export --run-dir /work/runs/fqa_s16_seed$s" > /work/runs/fqa_s16_seed$s/command.txt
  TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 nohup taskset -c $core python scripts/train.py --config configs/fairytaleqa.yaml \
    --set train.seed=$s --set train.eval_every=0 --no-eval --no-export --run-dir /work/runs/fqa_s16_seed$s \
    > /work/runs/fqa_s16_seed$s/console.log 2>&1 &
done
wait
