#!/usr/bin/env bash
# For someone with a GPU: every GPU path of the repo in one go, one line per check (not yet timed on a GPU).
#   bash experiments/gpu_check.sh               # STEPS=300 by default; logs in runs/gpu_check/NAME.txt
# Runs nanoGPT's GPU config (config/shakespeare_char_gpu.py: 6 layers, n_embd 384, block 256, batch 64, dropout 0.2)
# for STEPS steps per check: dense and Spectron in bf16 and fp32, compiled and not, TSVD through two truncations
# (compiled: the recompile after each one), a resume, two-process DDP and --device=cuda:1 where there are two
# GPUs, and bench.py on CUDA. Each line: ok or FAILED, the last eval, the last MFU printed, seconds.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
STEPS=${STEPS:-300}
out=runs/gpu_check
mkdir -p "$out"
common="config/shakespeare_char_gpu.py --max_iters=$STEPS --lr_decay_iters=$STEPS --eval_interval=$STEPS --overwrite=True"

report() {  # name, seconds, exit status
  local log="$out/$1.txt"
  if [ "$3" = 0 ]; then
    echo "ok      $1: $(grep 'val loss' "$log" | tail -n 1 | sed 's/^step //'), $(grep -o 'MFU [0-9.]*%' "$log" | tail -n 1), $2 s"
  else
    echo "FAILED  $1 (exit $3): $(grep -v '^\s*$' "$log" | tail -n 1)"
  fi
}
check() {  # name, then train.py arguments
  local name=$1 t0=$SECONDS; shift
  "$PY" train.py $common --out_dir="$out/$name" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  report "$name" $((SECONDS - t0)) $rc
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported(including_emulation=False))"
check dense_bf16 --mode=dense
check dense_fp32 --mode=dense --dtype=float32
check spectron_bf16 --mode=spectron
check spectron_fp32 --mode=spectron --dtype=float32
check dense_compiled --mode=dense --compile=True
check spectron_compiled --mode=spectron --compile=True
check tsvd_compiled --mode=tsvd --rank=0.5 --rank_warmup=$((STEPS / 3)) --rank_interval=$((STEPS / 3)) --energy=0.95 --compile=True
check nfw_half --mode=nfw --max_iters=$((STEPS / 2)) --eval_interval=$((STEPS / 2))
check nfw_resumed --mode=nfw --init_from=resume --out_dir="$out/nfw_half"  # to STEPS: CUDA RNG, fused AdamW
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  t0=$SECONDS
  "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 train.py $common --out_dir="$out/ddp_tsvd" --mode=tsvd --rank=0.5 \
    --rank_warmup=$((STEPS / 3)) --rank_interval=$((STEPS / 3)) --energy=0.95 --gradient_accumulation_steps=2 \
    > "$out/ddp_tsvd.txt" 2>&1
  rc=$?
  report ddp_tsvd $((SECONDS - t0)) $rc
  check second_gpu --mode=spectron --device=cuda:1
else
  echo "skip    ddp_tsvd, second_gpu: one GPU"
fi
for c in "bench --quick=True" "bench_compiled --quick=True --compile=True"; do
  set -- $c; name=$1; shift; t0=$SECONDS
  "$PY" bench.py --device=cuda --widths=384,768 "$@" > "$out/$name.txt" 2>&1
  status=$?; [ $status = 0 ] && grep -q 'ran eager' "$out/$name.txt" && status=eager
  if [ $status = 0 ]; then echo "ok      $name: $(grep -c ' spectron ' "$out/$name.txt") spectron rows, $((SECONDS - t0)) s"
  else echo "FAILED  $name ($status): $(tail -n 1 "$out/$name.txt")"; fi
done
echo "logs: $out/*.txt"
