#!/usr/bin/env bash
# Dense, Muon, NFW, Spectron and TSVD at the default config (4 layers, n_embd 256, rank 64), each at its tuned step
# size (the registry's and train.py's defaults, from experiments/tune.sh), compared on three axes beyond equal steps:
#   equal training FLOPs: each mode gets the steps whose Σ FLOPs/token × tokens equals dense's 2000 steps, at the
#     FLOPs of its own 2000-step tuning run (TSVD's shrinking rank is credited); Muon's 2000 steps already are;
#   equal wall-clock: each mode gets the steps it takes to fill the time of dense's 2000 steps, at the pace of its
#     own tuning runs (median seconds of its runs in assets/tune; they all ran as two 1-thread runs sharing 2 cores,
#     as these do, so the pace includes evals and the contention);
#   equal parameters: dense at n_embd 156 (1.18M parameters) against the factorized n_embd 256 (1.20M), 2000 steps,
#     at three AdamW LRs around dense's 1e-3 (a narrower model may prefer another).
# A run's schedule (warmup, cosine decay to min_lr) stretches over its own max_iters. Two 1-thread runs at a time,
# about 2.5 hours of run time. Then assets/equal_compute/ (runs.csv, loss_curves.png, every log).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
python prepare_data.py > /dev/null
# mode:axis:steps, computed once from assets/tune when this comparison ran (its median paces move as tuning runs are
# added, so the budgets are fixed here): equal FLOPs = 2000 × dense's training FLOPs / the mode's in its 2000-step run
# at its tuned step size; equal wall-clock = 2000 × dense's median seconds per run / the mode's
steps="nfw:flops:4962 spectron:flops:4962 tsvd:flops:5194 muon:clock:1190 nfw:clock:2856 spectron:clock:2892 tsvd:clock:2848"
echo "steps: $steps"
{ for s in $steps; do
    IFS=: read -r mode axis n <<< "$s"
    echo "runs/equal_compute/${mode}_${axis}_${n}it --mode=$mode --max_iters=$n --seed=1337 $*"
  done
  for lr in 0.001 0.002 0.003; do echo "runs/equal_compute/dense_d156_lr${lr} --mode=dense --n_embd=156 --learning_rate=$lr --seed=1337 $*"; done
} | train_all
mkdir -p assets/equal_compute
runs=$(ls -d runs/equal_compute/*)
dense=runs/tune/dense_lr0.001_seed1337  # the reference: dense's 2000 steps at its tuned LR (tune.sh's run)
python plot_spectra.py $dense $runs --out=assets/equal_compute --figures=loss_curves
python experiments/table.py $dense $runs --csv=assets/equal_compute/runs.csv \
  --columns=run,mode,n_embd,lr,iters,val,train,params,mflops,tflops,mean_rank,minutes
for run in $runs; do save_log "$run" "assets/equal_compute/$(basename "$run").log.jsonl.gz"; done
