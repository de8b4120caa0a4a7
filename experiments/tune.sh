#!/usr/bin/env bash
# The tuning protocol (RESULTS.md, "How modes are compared"; METHODS.md §7) at the default config
# (4 layers, n_embd 256, rank 64, 2000 steps): each mode's own step size on a log grid of 5 values spanning a decade,
# seed 1337; then the best and its two neighbours again with seed 1; the default is the best seed mean.
# Step sizes: AdamW's peak LR for dense, nfw and tsvd (min_lr = LR/10), η for spectron, Muon's LR for muon (its grid
# moved down once its first runs put the best at 0.005, the bottom of a 0.005..0.08 grid).
# Then assets/tune/ (lr_sweep.png with each mode's chosen default starred, runs.csv, every log).
# Runs two 1-thread runs at a time; about 3.5 hours of a 2-core CPU in all. Logs already in assets/tune count as done,
# so a later session (or a fresh clone) only runs what is missing. REPORT_ONLY=1: no runs, only the report.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
declare -A GRID=([dense]="0.0003 0.0006 0.001 0.002 0.003" [nfw]="0.0003 0.0006 0.001 0.002 0.003"
                 [tsvd]="0.0003 0.0006 0.001 0.002 0.003 0.005 0.008" [spectron]="0.01 0.02 0.03 0.05 0.1"
                 [muon]="0.0025 0.005 0.01 0.02 0.04")
flag() { case $1 in spectron) echo "--spectron_lr=$2";; muon) echo "--muon_lr=$2";; *) echo "--learning_rate=$2";; esac; }
restore_runs assets/tune runs/tune  # committed results count as finished runs
python prepare_data.py > /dev/null
if [ -z "${REPORT_ONLY:-}" ]; then  # REPORT_ONLY=1: only the figures and tables of the runs that have finished
for mode in spectron nfw dense tsvd muon; do
  for v in ${GRID[$mode]}; do echo "runs/tune/${mode}_lr${v}_seed1337 --mode=$mode $(flag $mode $v) --seed=1337 $*"; done
done | train_all
# seed 1 at each mode's best seed-1337 value and its grid neighbours
for mode in spectron dense nfw muon tsvd; do
  for v in $(python - "$mode" ${GRID[$mode]} <<'PY'
import json, sys
mode, grid = sys.argv[1], sys.argv[2:]
def val(v):
    rows = [json.loads(l) for l in open(f'runs/tune/{mode}_lr{v}_seed1337/log.jsonl')]
    return [r for r in rows if r['kind'] == 'eval'][-1]['val_loss']
best = min(range(len(grid)), key=lambda i: val(grid[i]))
if best in (0, len(grid) - 1):
    print(f"warning: {mode}'s best value {grid[best]} is at the end of its grid: extend the grid", file=sys.stderr)
print(*grid[max(0, best - 1):best + 2])
PY
  ); do echo "runs/tune/${mode}_lr${v}_seed1 --mode=$mode $(flag $mode $v) --seed=1 $*"; done
done | train_all
fi
finished=$(grep -l '"kind": "summary"' runs/tune/*/log.jsonl | xargs -n 1 dirname)  # the report: finished runs only
python plot_spectra.py $finished --out=assets/tune --figures=lr_sweep
python experiments/table.py $finished --csv=assets/tune/runs.csv --seeds --columns=mode,lr,val,gap,params,mflops,ms,minutes
for run in $finished; do save_log "$run" "assets/tune/$(basename "$run").log.jsonl.gz"; done
# the default-config comparison: every mode at its chosen step size, both seeds
chosen=$(python - <<'PY'
import glob, json, os, sys
sys.path.insert(0, '.')
from plot_spectra import chosen_step
vals = {}
for log in glob.glob('runs/tune/*/log.jsonl'):
    mode, lr, seed = os.path.basename(os.path.dirname(log)).split('_')
    rows = [json.loads(line) for line in open(log)]
    if rows[-1]['kind'] != 'summary':
        continue
    last = [r for r in rows if r['kind'] == 'eval'][-1]['val_loss']
    vals.setdefault(mode, {}).setdefault(lr, []).append(last)
print(' '.join(f'runs/tune/{mode}_{chosen_step(v)}' for mode, v in sorted(vals.items())))
PY
)
mkdir -p assets/compare
python experiments/table.py $(for c in $chosen; do ls -d ${c}_seed*; done | grep -xF "$finished") --seeds --csv=assets/compare/runs.csv \
  --columns=mode,lr,val,train,params,mflops,mean_rank,ms,max_dw_over_eta
# figures from each mode's seed-1 run at its chosen step size: loss curves from every log, spectra figures from the
# runs that still have their spectra.npz (runs restored from assets/ have only their logs)
python plot_spectra.py $(for c in $chosen; do echo ${c}_seed1; done) --out=assets/compare \
  --figures=spectra_curves,rank_heatmaps,alpha_depth,loss_curves,tsvd_ranks,stability
