#!/usr/bin/env bash
# TSVD on the compute frontier (issue 17): at the default config (4 layers, n_embd 256, 2000 steps, TSVD's tuned LR
# 3e-3), start ranks d/4, d/2 and the full width (64, 128, 256) × energy thresholds τ 0.9, 0.95, 0.99. Then
# assets/tsvd_frontier/: frontier.png (val loss against total training FLOPs, Σ FLOPs/token × tokens so that a
# shrinking rank is credited, and against seconds), with the other modes' runs at the same config on the same axes
# (the tuning's best runs, the equal-compute runs and svd_vs_native.sh's native runs, whichever have finished), and
# table.md (every run: start rank, τ, final ranks per projection type, val loss, training TFLOPs, minutes).
# 9 runs (r=64 τ=0.99 is the tuning's run, reused) of 5-19 minutes, two at a time, and a second seed of the chosen
# default: about 50 minutes of a 2-core CPU. Logs already in assets/tsvd_frontier count as done.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
mkdir -p assets/tsvd_frontier runs/tsvd_frontier
restore_runs assets/tsvd_frontier runs/tsvd_frontier
# the tuning's seed-1337 run at 3e-3 is this grid's r=64 τ=0.99 point
restore_run assets/tune/tsvd_lr0.003_seed1337.log.jsonl.gz runs/tsvd_frontier/r64_tau0.99
python prepare_data.py > /dev/null
for r in 256 128 64; do  # the slowest first
  for tau in 0.9 0.95 0.99; do
    echo "runs/tsvd_frontier/r${r}_tau$tau --mode=tsvd --rank=$r --energy=$tau --learning_rate=3e-3 $*"
  done
done | train_all
# TSVD's default since (lowrank.MODES: start rank d/2, τ 0.99, LR 3e-3) is r128_tau0.99; its second seed, as a user runs it
train_one runs/tsvd_frontier/default_seed1 --mode=tsvd --seed=1 "$@"
finished=$(grep -l '"kind": "summary"' runs/tsvd_frontier/*/log.jsonl | xargs -n 1 dirname)
for run in $finished; do save_log "$run" "assets/tsvd_frontier/$(basename "$run").log.jsonl.gz"; done
# the other modes at their best step sizes (frontier.py keeps the best of each grid): the tuning's seed-1337 runs,
# dense at n_embd 156 (equal parameters), the equal-compute runs' longer and shorter ones (those at equal FLOPs for
# nfw and spectron now in compare.py's store, assets/compare/bc785171e5e1), eta_transfer.sh's n_embd 256
# runs at ranks 32, 64, 128 (1000 steps) and svd_vs_native.sh's native runs at those ranks (2200 steps)
c=assets/compare/bc785171e5e1  # only the runs this figure was made from: the store gains runs (the leaderboard's)
others=$(ls $c/{dense,muon,nfw,spectron}_lr*_seed1337_2000it.log.jsonl.gz \
         $c/{nfw_lr0.002,spectron_lr0.02}_seed1337_4962it.log.jsonl.gz \
         assets/equal_compute/*.log.jsonl.gz \
         assets/eta_transfer/d256_*.log.jsonl.gz assets/svd_vs_native/*_c_native.log.jsonl.gz 2> /dev/null || true)
python experiments/frontier.py $finished --others $others --out=assets/tsvd_frontier | tee assets/tsvd_frontier/table.md
