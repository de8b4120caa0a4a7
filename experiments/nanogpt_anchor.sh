#!/usr/bin/env bash
# Dense mode with nanoGPT's shakespeare_char CPU settings (nanoGPT reports val loss about 1.88).
# Took about 4 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python train.py config/shakespeare_char_cpu.py --mode=dense --out_dir=runs/anchor/dense --spectra_interval=0 "$@"
mkdir -p assets/anchor && cp runs/anchor/dense/log.jsonl assets/anchor/dense.log.jsonl
