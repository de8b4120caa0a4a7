#!/usr/bin/env bash
# The Spectron paper's ablation (METHODS.md §2: neither ingredient diverged at 6.95, renorm only 3.18,
# ortho only 3.04, both 3.00): Spectron with its orthogonalisation (NS) and its renormalisation (ρ = η/(σ_U+σ_V+1))
# each on or off, at n_embd 128, 4 layers, rank 32 (d/4), 1000 steps. Each variant at its own best η, by the tuning
# protocol (METHODS.md §7): a grid of 5 values over more than a decade with seed 1337, then seed 1 at the best.
# Variants (run names): both | ortho (renorm off: ρ = η) | renorm (ortho off: M/‖M‖₂ for NS(M)) | neither.
# Then assets/spectron_ablation/ (runs.csv, a table per variant, the best runs' loss curves and ‖ΔW‖₂, every log).
# 24 runs of about 100 s (a d=128 Spectron run of the rank sweep), two at a time: about 20 minutes of a 2-core CPU.
# Logs already in assets/spectron_ablation count as done, so a rerun only runs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
common="--mode=spectron --n_embd=128 --rank=32 --max_iters=1000 --eval_interval=250 --spectra_interval=500 --learning_rate=1e-3"
declare -A FLAGS=([both]="" [ortho]="--spectron_renorm=False" [renorm]="--spectron_ortho=False"
                  [neither]="--spectron_ortho=False --spectron_renorm=False")
# the renormalised variants' grid is centred on η = 0.1, Spectron's best at this config (LR sweep); without the
# renormalisation every step is larger by σ_U + σ_V + 1 (about 3-3.6 at init, more later), so its grid starts lower
declare -A GRID=([both]="0.02 0.05 0.1 0.2 0.5" [renorm]="0.02 0.05 0.1 0.2 0.5"
                 [ortho]="0.005 0.01 0.02 0.05 0.1" [neither]="0.005 0.01 0.02 0.05 0.1")
VARIANTS="both ortho renorm neither"
best() {  # a variant's chosen η (plot_spectra.chosen_step) from its finished runs; a warning if it is at a grid end
  python - "$1" ${GRID[$1]} <<'PY'
import glob, json, math, os, sys
sys.path.insert(0, '.')
from plot_spectra import chosen_step
variant, grid, vals = sys.argv[1], sys.argv[2:], {}
for log in glob.glob(f'runs/spectron_ablation/{variant}_lr*_seed*/log.jsonl'):
    rows = [json.loads(line) for line in open(log)]
    if rows[-1]['kind'] == 'summary':
        val = [r for r in rows if r['kind'] == 'eval'][-1]['val_loss']
        vals.setdefault(os.path.basename(os.path.dirname(log)).split('_')[1][2:], []).append(
            val if math.isfinite(val) else math.inf)  # a diverged run loses, rather than confuse min()
eta = chosen_step(vals)
if eta in (grid[0], grid[-1]):
    print(f"warning: {variant}'s best η {eta} is at the end of its grid: extend the grid", file=sys.stderr)
print(eta)
PY
}
mkdir -p assets/spectron_ablation
restore_runs assets/spectron_ablation runs/spectron_ablation  # committed results count as finished runs
python prepare_data.py > /dev/null
for v in $VARIANTS; do
  for eta in ${GRID[$v]}; do
    echo "runs/spectron_ablation/${v}_lr${eta}_seed1337 $common ${FLAGS[$v]} --spectron_lr=$eta --seed=1337 $*"
  done
done | train_all
for v in $VARIANTS; do
  eta=$(best $v)
  echo "runs/spectron_ablation/${v}_lr${eta}_seed1 $common ${FLAGS[$v]} --spectron_lr=$eta --seed=1 $*"
done | train_all
finished=$(grep -l '"kind": "summary"' runs/spectron_ablation/*/log.jsonl | xargs -n 1 dirname)
python experiments/table.py $finished --csv=assets/spectron_ablation/runs.csv > /dev/null
for v in $VARIANTS; do  # one table per variant: val loss against η (table.py sorts by η, so variants would interleave)
  echo; echo "**$v** (${FLAGS[$v]:-both on})"
  python experiments/table.py $(echo "$finished" | grep -F "/${v}_lr") --seeds --columns=run,lr,seed,val,gap,max_dw_over_eta,spikes
done | tee assets/spectron_ablation/tables.md
# the ablation itself: each variant at its chosen η, both seeds; and their loss curves and largest steps in W
chosen=$(for v in $VARIANTS; do echo "$finished" | grep -F "/${v}_lr$(best $v 2> /dev/null)_seed"; done)
echo; echo "**each variant at its chosen η**" | tee -a assets/spectron_ablation/tables.md
python experiments/table.py $chosen --seeds --columns=run,lr,seed,val,gap,max_dw_over_eta,spikes \
  | tee -a assets/spectron_ablation/tables.md
python plot_spectra.py $(echo "$chosen" | grep _seed1337) --out=assets/spectron_ablation --figures=loss_curves,stability
for run in $finished; do save_log "$run" "assets/spectron_ablation/$(basename "$run").log.jsonl.gz"; done
