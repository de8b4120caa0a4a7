#!/usr/bin/env bash
# dense vs NFW vs Spectron vs TSVD at the default config (4 layers, n_embd 256, rank 64 = d/4, 2000 iters),
# then the figures. Extra arguments go to every run, e.g. --max_iters=200 for a quick look.
# Took about 25 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
for mode in spectron nfw dense tsvd; do
  python train.py --mode=$mode --out_dir=runs/compare/$mode "$@"
done
mkdir -p assets/compare
python plot_spectra.py runs/compare/{dense,nfw,spectron,tsvd} --out=assets/compare
for mode in dense nfw spectron tsvd; do cp runs/compare/$mode/log.jsonl assets/compare/$mode.log.jsonl; done
