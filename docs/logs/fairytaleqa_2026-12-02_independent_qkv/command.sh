#!/usr/bin/env bash
# FairytaleQA retrained with independent query/key/value draws (main 003669e), the shipped config.
cd /work/run_s15
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s15
exec python scripts/train.py --config configs/fairytaleqa.yaml --run-dir /work/runs/fqa_s15
