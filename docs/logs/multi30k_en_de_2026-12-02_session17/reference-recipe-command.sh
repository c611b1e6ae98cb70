#!/usr/bin/env bash
# Issue 16, session 17: the reference's own recipe (LividWo/Revisit-MMT's fairseq transformer_tiny) in full,
# now that the package draws attention as fairseq does (sessions 13/15): 8,192-token batches, peak 0.005
# after 2,000 warm-up updates, dropout 0.3 and no other dropout, no clipping; the step compiled by XLA.
# Its earlier run (Glorot's attention draw, session 11) stalled at BLEU 10 after 3,000 updates.
cd /work/run_s17
source /tmp/ci_clone/.venv/bin/activate
export PYTHONPATH=/work/run_s17
exec python scripts/train.py --config configs/multi30k_en_de.yaml --set data.dir=/work/shared/data/multi30k \
  --run-dir /work/runs/m30k_s17_ref \
  --set data.batch_tokens=8192 --set train.learning_rate=0.005 --set train.warmup_steps=2000 \
  --set model.rate=0.3 --set model.attention_dropout=0 --set model.activation_dropout=0 \
  --set train.clip_norm=null --set train.steps=9600 --set train.eval_every=1000 \
  --set train.checkpoint_every=200 --set train.keep_checkpoints=60 --no-eval --no-export
