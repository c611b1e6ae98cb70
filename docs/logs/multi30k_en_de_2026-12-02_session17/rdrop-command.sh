#!/usr/bin/env bash
# Issue 16, session 17: the shipped recipe (configs/multi30k_en_de.yaml, XLA, one shape a bucket
# now) with R-Drop, alpha 5 as the R-Drop paper's IWSLT'14 translation runs (dropreg/R-Drop,
# run_train.sh --reg-alpha 5). Each update costs two passes. Steps raised: the budget decides.
cd /work/run_s17
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s17
exec python scripts/train.py --config configs/multi30k_en_de.yaml --set data.dir=/work/shared/data/multi30k \
  --run-dir /work/runs/m30k_s17_rdrop --set train.rdrop_alpha=5 \
  --set train.steps=60000 --set train.keep_checkpoints=80 --no-eval --no-export
