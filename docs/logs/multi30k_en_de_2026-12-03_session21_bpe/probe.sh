#!/bin/bash
# session 21 probe: sentencepiece BPE against the shipped unigram, one core each, 65-minute timer
# usage: probe.sh CORE NAME [--set ...]
core=$1; name=$2; shift 2
cd /work/run_s20
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
exec taskset -c $core timeout -s TERM 65m /work/venv_s20/bin/python scripts/train.py --config configs/multi30k_en_de.yaml \
  --set data.dir=/work/shared/data/multi30k --set train.steps=60000 --set train.keep_checkpoints=40 \
  --run-dir /work/runs/p21/$name --no-eval --no-export "$@"
