#!/usr/bin/env bash
# TSVD on the compute frontier (issue 17): at the default config (4 layers, n_embd 256, 2000 steps, TSVD's tuned LR
# 3e-3), start ranks d/4, d/2 and the full width (64, 128, 256) × energy thresholds τ 0.9, 0.95, 0.99. Then
# assets/tsvd_frontier/: frontier.png (val loss against total training FLOPs, Σ FLOPs/token × tokens so that a
# shrinking rank is credited, and against seconds), with the other modes' runs at the same config on the same axes
# (the tuning's best runs, the equal-compute runs and svd_vs_native.sh's native runs, whichever have finished), and
# table.md (every run: start rank, τ, final ranks per projection type, val loss, training TFLOPs, minutes).
# 8 runs of 5-19 minutes, two at a time (r=128 τ=0.99 and the default's second seed are compare.py's default-config
# TSVD runs at 3e-3, reused): about 40 minutes of a 2-core CPU. Logs already in assets/tsvd_frontier count as done;
# the first retraction's runs (issue 29: it inflated s) are kept in assets/tsvd_frontier/old_retraction/.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
mkdir -p assets/tsvd_frontier runs/tsvd_frontier
restore_runs assets/tsvd_frontier runs/tsvd_frontier
c=assets/compare/bc785171e5e1  # compare.py's TSVD runs at 3e-3 are this grid's r=128 τ=0.99 point and its second seed
restore_run $c/tsvd_lr0.003_seed1337_2000it.log.jsonl.gz runs/tsvd_frontier/r128_tau0.99
restore_run $c/tsvd_lr0.003_seed1_2000it.log.jsonl.gz runs/tsvd_frontier/default_seed1
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
# dense at n_embd 156 (equal parameters), the equal-compute runs' longer and shorter ones but TSVD's (the first
# retraction; those at equal FLOPs for nfw and spectron now in compare.py's store, $c), eta_transfer.sh's n_embd 256
# runs at ranks 32, 64, 128 (1000 steps) and svd_vs_native.sh's native runs at those ranks (2200 steps): only the runs
# this figure was made from ($c gains runs: the leaderboard's)
others=$(ls $c/{dense,muon,nfw,spectron}_lr*_seed1337_2000it.log.jsonl.gz \
         $c/{nfw_lr0.002,spectron_lr0.02}_seed1337_4962it.log.jsonl.gz \
         assets/equal_compute/{dense,muon,nfw,spectron}_*.log.jsonl.gz \
         assets/eta_transfer/d256_*.log.jsonl.gz assets/svd_vs_native/*_c_native.log.jsonl.gz 2> /dev/null || true)
python experiments/frontier.py $finished --others $others --out=assets/tsvd_frontier | tee assets/tsvd_frontier/table.md
