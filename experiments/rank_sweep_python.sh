#!/usr/bin/env bash
# The rank sweep's second corpus: Python's own standard library (top-level *.py files in name order, cut to
# TinyShakespeare's 1,115,394 characters: same size, very different statistics), NFW and Spectron at ranks 4 .. 128
# plus dense, n_embd 128, the same 1000 steps as rank_sweep.sh; then assets/rank_sweep_python/ with both corpora
# in one figure (run rank_sweep.sh first for the TinyShakespeare half). Took 16 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
mkdir -p assets/rank_sweep_python
python_corpus | tee assets/rank_sweep_python/corpus.txt
python prepare_data.py --input=runs/corpora/python_stdlib.txt > /dev/null
common="--input_file=runs/corpora/python_stdlib.txt --n_embd=128 --max_iters=1000 --lr_decay_iters=1000 --eval_interval=250 --log_interval=50 --spectra_interval=500 --learning_rate=1e-3"  # the step sizes these results were made with (and spectron_lr=0.1, below)
{ echo "runs/rank_sweep_python/d128_dense --mode=dense $common $*"
  for r in 4 8 16 32 64 128; do
    for mode in nfw spectron; do echo "runs/rank_sweep_python/d128_${mode}_r$r --mode=$mode --rank=$r $([ $mode = spectron ] && echo --spectron_lr=0.1) $common $*"; done
  done
} | train_all
python plot_spectra.py runs/rank_sweep/d128_* runs/rank_sweep_python/* --out=assets/rank_sweep_python --figures=rank_sweep
python experiments/table.py runs/rank_sweep_python/* --csv=assets/rank_sweep_python/runs.csv
for run in runs/rank_sweep_python/*; do save_log $run assets/rank_sweep_python/$(basename $run).log.jsonl.gz; done
