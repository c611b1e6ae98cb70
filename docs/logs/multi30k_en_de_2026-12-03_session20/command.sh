#!/bin/bash
# session 20 (2026-12-03) full-budget run of configs/multi30k_en_de.yaml, code at c6f8930
cd /work/run_s20
exec timeout -s TERM 132m /work/venv_s20/bin/python scripts/train.py --config configs/multi30k_en_de.yaml \
  --set data.dir=/work/shared/data/multi30k --set train.steps=60000 --set train.keep_checkpoints=120 \
  --run-dir /work/runs/m30k_s20 --no-eval --no-export
