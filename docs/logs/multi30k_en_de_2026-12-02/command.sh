#!/usr/bin/env bash
# The issue-16 long run of session 14: configs/multi30k_en_de.yaml as on main b183ba2 (query/key/value
# at 1/sqrt(2) of Glorot), steps raised so the budget (at most 150 min of training) decides where it stops.
cd /work/run_s14
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s14
exec python scripts/train.py --config configs/multi30k_en_de.yaml --set data.dir=/work/shared/data/multi30k \
  --set train.steps=60000 --set train.keep_checkpoints=80 --run-dir /work/runs/m30k_s14 --no-eval --no-export
