#!/bin/bash
# session 22: two runs of the shipped recipe side by side, one core each, 130-minute timer:
# the two-run ensemble at the budget. usage: member.sh CORE NAME SEED
core=$1; name=$2; seed=$3
cd /work/run_s20
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
exec taskset -c $core timeout -s TERM 130m /work/venv_s20/bin/python scripts/train.py --config configs/multi30k_en_de.yaml \
  --set data.dir=/work/shared/data/multi30k --set train.steps=60000 --set train.keep_checkpoints=60 \
  --set train.seed=$seed --run-dir /work/runs/p22/$name --no-eval --no-export
