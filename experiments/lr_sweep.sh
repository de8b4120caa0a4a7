#!/usr/bin/env bash
# Stability (the Spectron claim): NFW + AdamW at peak LR 0.001 .. 0.1 and Spectron at η 0.01 .. 1.0 (5 values over
# two decades each), 3 seeds each, n_embd 128, 4 layers, rank 32, 500 steps, logging max ‖ΔW‖₂ every 5 steps;
# then assets/lr_sweep/ (lr_sweep.png, runs.csv). Took about 15 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
common="--n_embd=128 --rank=32 --max_iters=500 --lr_decay_iters=500 --eval_interval=500 --log_interval=5 --spectra_interval=0"
python prepare_data.py > /dev/null
for seed in 1337 1 2; do
  for lr in 0.001 0.003 0.01 0.03 0.1; do echo "runs/lr_sweep/nfw_lr${lr}_seed$seed --mode=nfw --learning_rate=$lr --seed=$seed $common $*"; done
  for eta in 0.01 0.03 0.1 0.3 1.0; do echo "runs/lr_sweep/spectron_eta${eta}_seed$seed --mode=spectron --spectron_lr=$eta --seed=$seed $common $*"; done
done | train_all
mkdir -p assets/lr_sweep
python plot_spectra.py runs/lr_sweep/* --out=assets/lr_sweep --figures=lr_sweep
python experiments/table.py runs/lr_sweep/* --csv=assets/lr_sweep/runs.csv --seeds \
  --columns=run,mode,lr,seed,val,gap,max_dw,max_dw_over_eta,spikes
for run in runs/lr_sweep/*; do save_log $run assets/lr_sweep/$(basename $run).log.jsonl.gz; done
