#!/bin/bash
# make_cut.sh SRC DST STEP: a run directory whose checkpoints end at STEP (symlinks to SRC's)
set -e
SRC=$(realpath "$1"); DST=$2; STEP=$3
mkdir -p "$DST/checkpoints"
for f in "$SRC"/*; do
  name=$(basename "$f")
  case "$name" in checkpoints|eval|train.lock|console.log) ;; logs) cp -r "$f" "$DST/logs";; *) ln -sfn "$f" "$DST/$name";; esac
done
cd "$DST/checkpoints"
paths=()
for idx in $(ls "$SRC/checkpoints" | grep -o '^ckpt-[0-9]*' | sort -u -t- -k2 -n); do
  s=${idx#ckpt-}
  if [ "$s" -le "$STEP" ]; then
    for f in "$SRC/checkpoints/$idx".*; do ln -sfn "$f" .; done
    paths+=("$idx")
  fi
done
last=${paths[-1]}
{ echo "model_checkpoint_path: \"$last\""; for p in "${paths[@]}"; do echo "all_model_checkpoint_paths: \"$p\""; done; } > checkpoint
echo "cut at $last (${#paths[@]} checkpoints)"
