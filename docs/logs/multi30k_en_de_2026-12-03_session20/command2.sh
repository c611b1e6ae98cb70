#!/bin/bash
# session 21 (2026-12-03): the same run resumed exactly from ckpt-33312 for the rest of the
# 150-minute budget (132 min + 18 min), code at c6f8930
cd /work/run_s20
exec timeout -s TERM 18m /work/venv_s20/bin/python scripts/train.py --config configs/multi30k_en_de.yaml \
  --set data.dir=/work/shared/data/multi30k --set train.steps=60000 --set train.keep_checkpoints=120 \
  --run-dir /work/runs/m30k_s20 --no-eval --no-export
