#!/bin/bash
# snap.sh LOG RUN N ALPHA [MEMBER...]: validation BLEU of RUN (mean of last N) with ensemble members
LOG=$1; RUN=$2; N=$3; A=$4; shift 4
args=(); for m in "$@"; do args+=(--ensemble "$m"); done
echo "== $RUN + [$*] mean$N alpha $A ($(date +%T))" >> "$LOG"
PYTHONPATH=/work/main /work/venv_s20/bin/python /work/main/scripts/evaluate.py --run-dir "$RUN" --split validation --lowercase \
  --average-last "$N" --length-penalty "$A" "${args[@]}" > "$LOG.tmp" 2>&1
grep -v -i warning "$LOG.tmp" | grep -i -E 'bleu|error' | tail -3 >> "$LOG"
