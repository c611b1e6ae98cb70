#!/bin/bash
# session 25 (2026-12-04 UTC) full-budget probe: configs/multi30k_en_de.yaml with word dropout 0.1, code at be2cba7
# (resumed at update 2,000 after the first start crashed at its first validation: it imported the
# package from the editable install at /work/main, whose trainer.py was being edited; PYTHONPATH now
# pins the frozen checkout)
cd /work/run_s25
export PYTHONPATH=/work/run_s25
exec timeout -s TERM 118m /work/venv/bin/python scripts/train.py --config configs/multi30k_en_de.yaml \
  --set data.dir=/work/shared/data/multi30k --set model.word_dropout=0.1 --set train.steps=60000 \
  --set train.keep_checkpoints=120 --run-dir /work/runs/m30k_s25_wd01 --no-eval --no-export
