#!/usr/bin/env bash
# Corpus-determined optimal rank (the NFW claim): NFW and Spectron at every power-of-two rank from 4 to the full
# width, at n_embd 128 and 256 (4 layers), plus a dense run per width as the reference, 1000 steps each on
# TinyShakespeare; then assets/rank_sweep/ (rank_sweep.png, runs.csv). The second corpus: rank_sweep_python.sh.
# Took 59 minutes on a 2-core CPU (two 1-thread runs at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
common="--max_iters=1000 --lr_decay_iters=1000 --eval_interval=250 --log_interval=50 --spectra_interval=500 --learning_rate=1e-3"  # the step sizes these results were made with (and spectron_lr=0.1, below)
python prepare_data.py > /dev/null  # once, before runs start in parallel
for d in 256 128; do
  echo "runs/rank_sweep/d${d}_dense --mode=dense --n_embd=$d $common $*"
  for r in 4 8 16 32 64 128 256; do
    [ $r -le $d ] || continue
    for mode in nfw spectron; do echo "runs/rank_sweep/d${d}_${mode}_r$r --mode=$mode --rank=$r $([ $mode = spectron ] && echo --spectron_lr=0.1) --n_embd=$d $common $*"; done
  done
done | train_all
mkdir -p assets/rank_sweep
python plot_spectra.py runs/rank_sweep/* --out=assets/rank_sweep --figures=rank_sweep
python experiments/table.py runs/rank_sweep/* --csv=assets/rank_sweep/runs.csv
for run in runs/rank_sweep/*; do save_log $run assets/rank_sweep/$(basename $run).log.jsonl.gz; done
