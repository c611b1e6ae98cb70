#!/bin/bash
# session 24 (2026-12-03) full-budget probe: configs/multi30k_en_de.yaml with label smoothing 0.2, code at bd52c6a
cd /work/run_s24
exec timeout -s TERM 138m /work/venv/bin/python scripts/train.py --config configs/multi30k_en_de.yaml \
  --set data.dir=/work/shared/data/multi30k --set train.label_smoothing=0.2 --set train.steps=60000 \
  --set train.keep_checkpoints=120 --run-dir /work/runs/m30k_s24_ls02 --no-eval --no-export
