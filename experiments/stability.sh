#!/usr/bin/env bash
# Stability: NFW + AdamW at learning rates 10x and 30x the default against Spectron at η 3x and 10x its default,
# 600 steps each at the default config, logging max ‖ΔW‖₂ every 5 steps; then assets/stability/stability.png.
# Took about 8 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
common="--max_iters=600 --lr_decay_iters=600 --eval_interval=200 --log_interval=5 --spectra_interval=0"
for lr in 0.01 0.03; do python train.py --mode=nfw --learning_rate=$lr $common --out_dir=runs/stability/nfw_lr$lr "$@"; done
for eta in 0.3 1.0; do python train.py --mode=spectron --spectron_lr=$eta $common --out_dir=runs/stability/spectron_eta$eta "$@"; done
mkdir -p assets/stability
python plot_spectra.py runs/stability/* --out=assets/stability
for d in runs/stability/*; do gzip -9nc $d/log.jsonl > assets/stability/$(basename $d).log.jsonl.gz; done
