#!/usr/bin/env bash
# Issue 16, session 17 probe: the shipped recipe with the reference's dropout (0.3 on the residual
# paths and embeddings, no attention or activation dropout), the package's schedule; validation
# every 1,000 updates, compared at equal minutes with session 16's run (same CPU model).
cd /work/run_s17
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s17
exec python scripts/train.py --config configs/multi30k_en_de.yaml --set data.dir=/work/shared/data/multi30k \
  --run-dir /work/runs/m30k_s17_drop03 --set model.rate=0.3 --set model.attention_dropout=0 \
  --set model.activation_dropout=0 --set train.eval_every=1000 --set train.steps=60000 \
  --set train.keep_checkpoints=80 --no-eval --no-export
