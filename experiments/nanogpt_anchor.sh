#!/usr/bin/env bash
# Dense mode with nanoGPT's shakespeare_char CPU settings (nanoGPT reports val loss about 1.88), two seeds,
# then the seed-1337 model re-evaluated on 200 batches instead of 20. Took about 7 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p assets/anchor
python train.py config/shakespeare_char_cpu.py --mode=dense --out_dir=runs/anchor/dense --spectra_interval=0 "$@"
python train.py config/shakespeare_char_cpu.py --mode=dense --out_dir=runs/anchor/dense_seed2 --spectra_interval=0 --seed=2 "$@"
rm -rf runs/anchor/dense_eval200 && cp -r runs/anchor/dense runs/anchor/dense_eval200
python train.py config/shakespeare_char_cpu.py --mode=dense --out_dir=runs/anchor/dense_eval200 --init_from=resume --eval_iters=200
for run in dense dense_seed2 dense_eval200; do gzip -9nc runs/anchor/$run/log.jsonl > assets/anchor/$run.log.jsonl.gz; done
