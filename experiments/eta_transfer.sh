#!/usr/bin/env bash
# Does Spectron's η transfer across rank and width? (issue 14 part 2) η is the largest ‖ΔW‖₂ of a step, a unit that
# might not depend on the shape. Spectron's η grid and NFW's AdamW LR grid (for contrast) at ranks d/8, d/4, d/2 and
# n_embd 128 and 256 (4 layers, 1000 steps, seed 1337); val loss at the end of the cosine. Then
# assets/eta_transfer/ (eta_transfer.png: val loss against the step size, one curve per (width, rank); runs.csv;
# best.md: each curve's best grid value and the minimum of a parabola through it and its neighbours in log step).
# 54 runs (4 reused from the ablation's "both" runs): about 1 minute each at n_embd 128 and 3-4 at 256, two at a
# time: about an hour of a 2-core CPU. Logs already in assets/eta_transfer count as done.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
common="--max_iters=1000 --eval_interval=250 --spectra_interval=500"
SPECTRON_GRID="0.01 0.02 0.05 0.1 0.2"  # the default config's best is 0.02 (2000 steps); n_embd 128's is 0.05
NFW_GRID="0.001 0.002 0.005 0.01"  # the default config's best is 0.002; n_embd 128's 0.003 (lr_sweep, 500 steps)
mkdir -p assets/eta_transfer runs/eta_transfer
restore_runs assets/eta_transfer runs/eta_transfer
for eta in 0.02 0.05 0.1 0.2; do  # the ablation's "both" runs are this grid's n_embd 128, rank 32 Spectron runs
  restore_run assets/spectron_ablation/both_lr${eta}_seed1337.log.jsonl.gz runs/eta_transfer/d128_r32_spectron_lr$eta
done
python prepare_data.py > /dev/null
for d in 256 128; do  # the slow width first, so that the two processes finish together
  for r in $((d / 8)) $((d / 4)) $((d / 2)); do
    for eta in $SPECTRON_GRID; do
      echo "runs/eta_transfer/d${d}_r${r}_spectron_lr$eta --mode=spectron --n_embd=$d --rank=$r --spectron_lr=$eta --learning_rate=1e-3 $common $*"
    done
    for lr in $NFW_GRID; do
      echo "runs/eta_transfer/d${d}_r${r}_nfw_lr$lr --mode=nfw --n_embd=$d --rank=$r --learning_rate=$lr $common $*"
    done
  done
done | train_all
finished=$(grep -l '"kind": "summary"' runs/eta_transfer/*/log.jsonl | xargs -n 1 dirname)
python experiments/table.py $finished --csv=assets/eta_transfer/runs.csv > /dev/null
python experiments/eta_transfer.py $finished --out=assets/eta_transfer | tee assets/eta_transfer/best.md
for run in $finished; do save_log "$run" "assets/eta_transfer/$(basename "$run").log.jsonl.gz"; done
