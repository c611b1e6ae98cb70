#!/usr/bin/env bash
# The issue-16 long run of session 15: configs/multi30k_en_de.yaml as on main 003669e (query/key/value
# at 1/sqrt(2) of Glorot, now three independent draws), steps raised so the budget (at most 150 min of
# training) decides where it stops.
cd /work/run_s15
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s15
exec python scripts/train.py --config configs/multi30k_en_de.yaml --set data.dir=/work/shared/data/multi30k \
  --set train.steps=60000 --set train.keep_checkpoints=80 --run-dir /work/runs/m30k_s15 --no-eval --no-export
