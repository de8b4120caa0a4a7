#!/usr/bin/env bash
# Native low-rank against post-hoc SVD of a dense model (issue 15, part 2), at the default config (4 layers, n_embd
# 256, TinyShakespeare): a dense model trained 2000 steps at its default LR (lifecycle.sh's runs/lifecycle/dense when
# it has finished at that config, else trained here as runs/svd_vs_native/dense), then for r = d/8, d/4, d/2 (32, 64,
# 128) and NFW and Spectron:
#   (a) _a_svd:    the dense model truncated to rank r by SVD (--init_from=svd), evaluated, no training
#                  (--max_iters=0; NFW and Spectron start from the same factors, so their rows must agree);
#   (b) _b_ft:     (a) fine-tuned for 200 steps (10% of the dense run), each mode at its tuned step size (NFW AdamW
#                  LR 2e-3, Spectron η 0.02: the defaults), warmup 20 steps, cosine to LR/10, eval every 50; and
#                  _b_ft_small at a tenth of those step sizes; the table takes the better of the two;
#   (c) _c_native: the mode trained at rank r from scratch for 2200 steps (= dense 2000 + fine-tune 200).
# Then assets/svd_vs_native/: table.md (one row per rank and mode: (a), (b), (c) and the dense model's val loss),
# runs.csv (every run, table.py's columns) and the logs. 18 runs (+1 dense): the six native runs are nearly all of the
# cost (about 63 run-minutes, from the tuning's timings: r=128 runs ~15-17 minutes, r=32 and 64 ~5-9), the
# fine-tunes ~7, the evaluations ~2, the dense run ~10 when needed; two 1-thread runs at a time, about 40 minutes
# of a 2-core CPU (45 with the dense run). Reruns finish what is missing; logs in assets/svd_vs_native count as done.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
out=runs/svd_vs_native
assets=assets/svd_vs_native
ranks="32 64 128"
DENSE_ITERS=2000 FT_ITERS=200  # the native runs get both: 2200
# a fine-tune also at a tenth of the from-scratch step sizes (a trained model may want smaller steps); the better counts
declare -A SMALL=([nfw]="--learning_rate=2e-4" [spectron]="--learning_rate=1e-4 --spectron_lr=0.002")
dense=runs/lifecycle/dense
python prepare_data.py > /dev/null
# lifecycle.sh's dense run, if it has finished at the default config with dense's default LR (else our own)
python - "$dense" "$DENSE_ITERS" <<'PY' || dense=$out/dense
import json, os, sys
run, iters = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(os.path.join(run, 'log.jsonl'))] if os.path.isfile(f'{run}/log.jsonl') else [{}]
c = rows[0]
want = dict(mode='dense', n_layer=4, n_head=4, n_embd=256, block_size=64, batch_size=16, max_iters=iters,
            learning_rate=1e-3, input_file='data/tinyshakespeare.txt', tokenizer='char', train_tokens=0, seed=1337)
sys.exit(0 if rows[-1].get('kind') == 'summary' and os.path.isfile(f'{run}/ckpt.pt')
         and all(c.get(k) == v for k, v in want.items()) else 1)
PY
echo "dense model: $dense"
mkdir -p "$assets"
restore_runs "$assets" "$out"  # committed results count as finished runs
{ [ "$dense" = "$out/dense" ] && echo "$out/dense --mode=dense $* --max_iters=$DENSE_ITERS"
  for r in $(echo $ranks | tr ' ' '\n' | sort -rn); do  # the longest runs first
    for mode in spectron nfw; do
      echo "$out/r${r}_${mode}_c_native --mode=$mode --rank=$r $* --max_iters=$((DENSE_ITERS + FT_ITERS))"
    done
  done
} | train_all
for r in $ranks; do
  for mode in nfw spectron; do
    svd="--mode=$mode --rank=$r --init_from=svd --svd_from=$dense $*"
    echo "$out/r${r}_${mode}_a_svd $svd --max_iters=0"
    echo "$out/r${r}_${mode}_b_ft $svd --max_iters=$FT_ITERS --warmup_iters=20 --eval_interval=50"
    echo "$out/r${r}_${mode}_b_ft_small $svd --max_iters=$FT_ITERS --warmup_iters=20 --eval_interval=50 ${SMALL[$mode]}"
  done
done | train_all

runs="$dense $(for r in $ranks; do for m in nfw spectron; do echo $out/r${r}_${m}_{a_svd,b_ft,b_ft_small,c_native}; done; done)"
python experiments/table.py $runs --csv="$assets/runs.csv" --columns=run,mode,rank,iters,val,gap,params > /dev/null
python - $runs <<'PY' | tee "$assets/table.md"
import json, os, sys
def last_eval(run):
    rows = [json.loads(l) for l in open(os.path.join(run, 'log.jsonl'))]
    return rows[0], [r for r in rows if r['kind'] == 'eval'][-1]
dense, rest = sys.argv[1], sys.argv[2:]
config, ev = last_eval(dense)
print(f"dense ({dense}, {ev['iter']} steps, {ev['params'] / 1e6:.2f}M parameters): val loss {ev['val_loss']:.4f}\n")
print("| rank | mode | params | (a) SVD of dense, no training | (b) + fine-tune | (c) native | (c) − (b) |")
print("|---|---|---|---|---|---|---|")
for a, b, b_small, c in zip(rest[0::4], rest[1::4], rest[2::4], rest[3::4]):
    (ca, ea), (cc, ec) = last_eval(a), last_eval(c)
    cb, eb = min(last_eval(b), last_eval(b_small), key=lambda run: run[1]['val_loss'])  # the better fine-tune
    step = f"η {cb['spectron_lr']:g}" if cb['mode'] == 'spectron' else f"LR {cb['learning_rate']:g}"
    print(f"| {cc['rank']} | {cc['mode']} | {ec['params'] / 1e6:.2f}M | {ea['val_loss']:.4f} | {eb['val_loss']:.4f} "
          f"({eb['iter']} steps, {step}) | {ec['val_loss']:.4f} ({ec['iter']} steps) | {ec['val_loss'] - eb['val_loss']:+.4f} |")
PY
for run in $runs; do save_log "$run" "$assets/$(basename "$run").log.jsonl.gz"; done
