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
steps=$(python - <<'PY'
import glob, json, os, statistics, sys
sys.path.insert(0, '.')
from plot_spectra import chosen_step
seconds, vals, tflops = {}, {}, {}
for log in glob.glob('assets/tune/*.log.jsonl'):
    rows = [json.loads(line) for line in open(log)]
    mode, lr, seed = os.path.basename(log).replace('.log.jsonl', '').split('_')
    seconds.setdefault(mode, []).extend(r['seconds'] for r in rows if r['kind'] == 'summary')
    last = [r for r in rows if r['kind'] == 'eval'][-1]
    vals.setdefault(mode, {}).setdefault(lr, []).append(last['val_loss'])
    if seed == 'seed1337':  # logs of older code lack train_flops: their modes' FLOPs/token never change
        c = rows[0]
        tflops[mode, lr] = last.get('train_flops') or last['flops_per_token'] * last['iter'] * c['batch_size'] * \
            c['block_size'] * c['gradient_accumulation_steps']
tflops = {m: tflops[m, chosen_step(v)] for m, v in vals.items()}  # at each mode's tuned step size
pace = {m: statistics.median(s) / 2000 for m, s in seconds.items()}
for m in ('nfw', 'spectron', 'tsvd'):
    print(f"{m}:flops:{round(2000 * tflops['dense'] / tflops[m])}")
for m in ('muon', 'nfw', 'spectron', 'tsvd'):
    print(f"{m}:clock:{round(2000 * pace['dense'] / pace[m])}")
PY
)
echo "steps: $steps"
{ for s in $steps; do
    IFS=: read -r mode axis n <<< "$s"
    echo "runs/equal_compute/${mode}_${axis}_${n}it --mode=$mode --max_iters=$n --seed=1337 $*"
  done
  for lr in 0.001 0.002 0.003; do echo "runs/equal_compute/dense_d156_lr${lr} --mode=dense --n_embd=156 --learning_rate=$lr --seed=1337 $*"; done
} | train_all
mkdir -p assets/equal_compute
runs=$(ls -d runs/equal_compute/*)
python plot_spectra.py $runs --out=assets/equal_compute --figures=loss_curves
python experiments/table.py $runs --csv=assets/equal_compute/runs.csv \
  --columns=run,mode,n_embd,lr,iters,val,train,params,mflops,tflops,mean_rank,minutes
for run in $runs; do cp "$run/log.jsonl" "assets/equal_compute/$(basename "$run").log.jsonl"; done
