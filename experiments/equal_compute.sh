#!/usr/bin/env bash
# Dense vs Spectron vs TSVD at the default config (4 layers, n_embd 256, rank 64) at
#   (a) equal steps: 2000 each, the runs of compare_modes.sh (made here if missing);
#   (b) equal wall-clock: each mode gets the steps it takes, at the pace of its own 2000-step run, to fill the time
#       Spectron's 2000-step run took, evals and checkpoints included (all three on 2 threads);
#   (c) equal parameters: dense at n_embd 156 (1.18M parameters) against the factorized n_embd 256 (1.20M).
# Then assets/equal_compute/ (runs.csv, loss_curves.png). Runs one at a time on 2 threads, so that their
# wall-clock is comparable. Took 17 minutes on a 2-core CPU, given compare_modes.sh's runs (21 more without).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
mkdir -p assets/equal_compute
for mode in dense spectron tsvd; do echo "runs/compare/$mode --mode=$mode $*"; done | JOBS=1 THREADS=2 train_all
read -r dense_iters tsvd_iters < <(python -c "
import json
seconds = {m: next(r['seconds'] for r in map(json.loads, open(f'runs/compare/{m}/log.jsonl')) if r['kind'] == 'summary')
           for m in ('dense', 'spectron', 'tsvd')}
print(*(round(2000 * seconds['spectron'] / seconds[m]) for m in ('dense', 'tsvd')))")
echo "equal wall-clock: dense gets $dense_iters steps and tsvd $tsvd_iters in the time of 2000 Spectron steps"
{ echo "runs/equal_compute/dense_${dense_iters}it --mode=dense --max_iters=$dense_iters --lr_decay_iters=$dense_iters $*"
  echo "runs/equal_compute/tsvd_${tsvd_iters}it --mode=tsvd --max_iters=$tsvd_iters --lr_decay_iters=$tsvd_iters $*"
  echo "runs/equal_compute/dense_d156 --mode=dense --n_embd=156 $*"
} | JOBS=1 THREADS=2 train_all
runs="runs/compare/dense runs/compare/spectron runs/compare/tsvd runs/equal_compute/dense_${dense_iters}it \
      runs/equal_compute/tsvd_${tsvd_iters}it runs/equal_compute/dense_d156"
python plot_spectra.py $runs --out=assets/equal_compute --figures=loss_curves
python experiments/table.py $runs --csv=assets/equal_compute/runs.csv \
  --columns=run,mode,n_embd,rank,iters,val,train,params,mflops,mean_rank,ms,minutes
for run in $runs; do cp $run/log.jsonl assets/equal_compute/$(basename $run).log.jsonl; done
