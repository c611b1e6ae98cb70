#!/usr/bin/env bash
# Issue 16, session 17 probe: the shipped recipe with twice the batch (4,096 tokens, padding
# included) and the peak rate scaled by sqrt(2) (0.002 -> 0.0028), warm-up 400 updates; compared at
# equal minutes of training with session 16's run (same CPU model). Validation only.
cd /work/run_s17
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s17
exec python scripts/train.py --config configs/multi30k_en_de.yaml --set data.dir=/work/shared/data/multi30k \
  --run-dir /work/runs/m30k_s17_b4096 --set data.batch_tokens=4096 --set train.learning_rate=0.0028 \
  --set train.eval_every=1000 --set train.steps=60000 --set train.keep_checkpoints=80 --no-eval --no-export
