#!/usr/bin/env bash
# Is the WSD shortcut sound here (issue 24, part 2)? At the default config (4 layers, n_embd 256, rank 64, 2000 steps),
# warmup-stable-decay (--lr_schedule=wsd --decay_frac=0.2 --decay_shape=linear: the peak LR from the end of warmup to
# step 1600, then linear down to min_lr at 2000) against the default cosine, for dense (AdamW LR 1e-3) and Spectron
# (η 0.02), seeds 1337 and 1. A straight 2000-step WSD run is, to the digit, what a cooldown branch from step k <= 1600
# of any longer WSD run gives (test_train.py: test_a_cooldown_branch_is_the_straight_wsd_run_to_the_digit), so it
# stands for every such branch. The cosine runs are the committed tuning runs (assets/compare/bc785171e5e1/
# dense_lr0.001_seed*_2000it, spectron_lr0.02_seed*_2000it: the same config apart from out_dir); COSINE=rerun trains them here too (as *_cosine_rerun_*),
# on this code and machine. Four (eight) runs, two 1-thread runs at a time: about 20 (40) minutes of a 2-core CPU.
# Then assets/wsd_check/: table.md (val and train loss at 2000 per run, seeds merged as mean ±half-range, and
# WSD − cosine per seed) and every log. Committed logs there count as finished runs; OUT and ASSETS move both folders
# (a smoke test: OUT=/tmp/w ASSETS=/tmp/w COSINE=rerun bash experiments/wsd_check.sh --n_layer=1 --n_embd=32 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
out=${OUT:-runs/wsd_check}
assets=${ASSETS:-assets/wsd_check}
cosine=$(if [ "${COSINE:-}" = rerun ]; then echo cosine_rerun; else echo cosine; fi)
declare -A STEP=([dense]=--learning_rate=0.001 [spectron]=--spectron_lr=0.02)
declare -A TUNED=([dense]=dense_lr0.001 [spectron]=spectron_lr0.02)  # the tuning's cosine runs (compare.py's store)
mkdir -p "$assets"
restore_runs "$assets" "$out"
python prepare_data.py > /dev/null
runs=
for mode in dense spectron; do
  for seed in 1337 1; do
    if [ "$cosine" = cosine ]; then
      restore_run "assets/compare/bc785171e5e1/${TUNED[$mode]}_seed${seed}_2000it.log.jsonl.gz" \
        "$out/${mode}_cosine_seed$seed"
    fi
    runs="$runs $out/${mode}_wsd_seed$seed $out/${mode}_${cosine}_seed$seed"
  done
done
for mode in dense spectron; do
  for seed in 1337 1; do
    echo "$out/${mode}_wsd_seed$seed --mode=$mode ${STEP[$mode]} --seed=$seed --lr_schedule=wsd --decay_frac=0.2" \
      "--decay_shape=linear $*"
    echo "$out/${mode}_${cosine}_seed$seed --mode=$mode ${STEP[$mode]} --seed=$seed $*"
  done
done | train_all
{
  echo "# WSD (decay_frac 0.2, linear) against cosine at the default config: experiments/wsd_check.sh"
  echo
  python experiments/table.py $runs --columns=run,mode,schedule,lr,seed,iters,val,train
  echo
  echo "Seeds merged (mean ±half-range (n)):"
  echo
  python experiments/table.py $runs --seeds --columns=mode,schedule,lr,seed,iters,val,train
  echo
  python - $runs <<'PY'
import json, statistics, sys
val = {}
for run in sys.argv[1:]:
    rows = [json.loads(line) for line in open(f'{run}/log.jsonl')]
    name = run.rstrip('/').split('/')[-1]
    mode, schedule, seed = name.split('_')[0], 'wsd' if '_wsd_' in name else 'cosine', name.rsplit('_seed', 1)[1]
    val[mode, schedule, seed] = [r for r in rows if r['kind'] == 'eval'][-1]['val_loss']
print('| mode | WSD − cosine, val loss per seed | mean | cosine half-range over seeds |')
print('|---|---|---|---|')
for mode in sorted({m for m, _, _ in val}):
    seeds = sorted({s for m, _, s in val if m == mode})
    d = [val[mode, 'wsd', s] - val[mode, 'cosine', s] for s in seeds]
    cos = [val[mode, 'cosine', s] for s in seeds]
    print(f"| {mode} | {', '.join(f'{s}: {x:+.4f}' for s, x in zip(seeds, d))} | {statistics.mean(d):+.4f} | "
          f"{(max(cos) - min(cos)) / 2:.4f} |")
PY
} > "$assets/table.md"
cat "$assets/table.md"
for run in $runs; do
  case $run in  # the committed cosine logs stay in assets/compare/bc785171e5e1
    *_cosine_seed*) ;;
    *) save_log "$run" "$assets/$(basename "$run").log.jsonl.gz";;
  esac
done
