#!/usr/bin/env bash
# Validation ROUGE of each FairytaleQA member alone and of their ensembles (greedy, no piece twice, as shipped).
cd /work/main; source /tmp/ci_clone/.venv/bin/activate; export PYTHONPATH=/work/main
R=/work/runs; LOG=$R/fqa_ensembles_s16.log
ev() { name=$1; shift; echo "== $name" | tee -a $LOG
  python -m transformer_tf.cli evaluate --split validation --output-dir $R/fqa_ens_out/$name "$@" 2>&1 | grep -E "ROUGE|Error|error:" | tail -n 2 | tee -a $LOG
  awk '{n+=NF} END {printf "  words per answer %.2f\n", n/NR}' $R/fqa_ens_out/$name/eval/*.hyp.txt | tee -a $LOG; }
ev seed7 --run-dir $R/fqa_s16_seed7
ev seed8 --run-dir $R/fqa_s16_seed8
ev 42+7 --run-dir $R/fqa_s15 --ensemble $R/fqa_s16_seed7
ev 42+8 --run-dir $R/fqa_s15 --ensemble $R/fqa_s16_seed8
ev 7+8 --run-dir $R/fqa_s16_seed7 --ensemble $R/fqa_s16_seed8
ev 42+7+8 --run-dir $R/fqa_s15 --ensemble $R/fqa_s16_seed7 --ensemble $R/fqa_s16_seed8
echo "done $(date +%T)" | tee -a $LOG
