#!/usr/bin/env bash
# The seed spread of the rank sweep: rank_sweep.sh's n_embd 128 runs (NFW and Spectron at ranks 4 .. 128, and
# dense) again with seed 1; then assets/rank_sweep_seeds/ (rank_sweep.png and runs.csv over both
# seeds; the table's numbers are "mean ±half-range (seeds)"). Took 15 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
common="--max_iters=1000 --lr_decay_iters=1000 --eval_interval=250 --log_interval=50 --spectra_interval=500 --learning_rate=1e-3"  # the step sizes these results were made with (and spectron_lr=0.1, below)
python prepare_data.py > /dev/null
for seed in 1; do
  echo "runs/rank_sweep_seeds/d128_dense_seed$seed --mode=dense --n_embd=128 --seed=$seed $common $*"
  for r in 4 8 16 32 64 128; do
    for mode in nfw spectron; do
      echo "runs/rank_sweep_seeds/d128_${mode}_r${r}_seed$seed --mode=$mode --rank=$r $([ $mode = spectron ] && echo --spectron_lr=0.1) --n_embd=128 --seed=$seed $common $*"
    done
  done
done | train_all
mkdir -p assets/rank_sweep_seeds
runs="runs/rank_sweep/d128_* runs/rank_sweep_seeds/*"
python plot_spectra.py $runs --out=assets/rank_sweep_seeds --figures=rank_sweep
python experiments/table.py $runs --csv=assets/rank_sweep_seeds/runs.csv --seeds \
  --columns=mode,n_embd,rank,seed,val,gap,params
for run in runs/rank_sweep_seeds/*; do save_log $run assets/rank_sweep_seeds/$(basename $run).log.jsonl.gz; done
