#!/usr/bin/env bash
# Session 18: session 16's run (stopped by SIGTERM at update 18,004 after 108 min of training) continued
# to the 150-minute budget, exact resume, with main at dda381d: the same model, step and data
# order; since c3f684d a bucket's last partial batch is padded with empty rows (no target tokens, same
# loss), so XLA compiles each bucket once. Stopped by SIGTERM when the budget is spent.
cd /work/run_s17
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s17
exec python scripts/train.py --config configs/multi30k_en_de.yaml --set data.dir=/work/shared/data/multi30k \
  --set data.pad_to_buckets=true --set train.jit_compile=true \
  --set train.steps=60000 --set train.keep_checkpoints=80 --run-dir /work/runs/m30k_s16 --no-eval --no-export
