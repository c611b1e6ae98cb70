#!/usr/bin/env bash
# Stop the session-16 long run right after its validation at STOP, cut its checkpoints there and at
# the last checkpoint within 90 minutes of training, start the two FairytaleQA seeds, choose on validation.
STOP=${1:-18000}
LOG=/work/runs/m30k_s16.console.log
until grep -q "validation at step $STOP" $LOG; do sleep 5; done
pkill -TERM -f "run-dir /work/runs/m30k_s16 " ; while pgrep -f "run-dir /work/runs/m30k_s16 " >/dev/null; do sleep 2; done
echo "stopped $(date +%T)"
CUT90=$(awk '/training .* step 0 ->/ {split($1,t,":"); start=t[1]*3600+t[2]*60+t[3]}
  /saved checkpoint/ {split($1,t,":"); s=t[1]*3600+t[2]*60+t[3]; if (s-start <= 5400) {n=$NF; sub(/.*ckpt-/,"",n); last=n}}
  END {print last}' $LOG)
echo "90-minute cut: $CUT90"
bash /work/make_cut.sh /work/runs/m30k_s16 /work/runs/m30k_s16_$STOP $STOP
bash /work/make_cut.sh /work/runs/m30k_s16 /work/runs/m30k_s16_90min $CUT90
# (the FairytaleQA seeds are started by hand after CI)
/work/select_s16.sh /work/runs/m30k_s16_$STOP /work/runs/m30k_s16/selection.log 5:1.5 5:1.0 5:2.0 10:1.5 1:1.5
/work/select_s16.sh /work/runs/m30k_s16_90min /work/runs/m30k_s16/selection-90min.log 5:1.5 10:1.5
echo "done $(date +%T)"
