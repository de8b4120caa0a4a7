# Sourced by the experiment scripts. `train_all` reads one run per line, "OUT_DIR --key=value ...", and trains
# them JOBS at a time (default: one per core) with THREADS threads each (default 1): small models use two 1-thread
# processes better than one 2-thread process. A run whose log.jsonl has its summary is skipped and one with a
# checkpoint resumes, so rerunning a script after a crash or Ctrl-C only finishes what is missing. PYTHON picks
# the interpreter (default: the `python` on PATH), e.g. PYTHON=.venv/bin/python when no venv is activated.
train_one() {
  local out=$1; shift
  if grep -qs '"kind": "summary"' "$out/log.jsonl"; then echo "already done: $out"; return 0; fi
  local resume=; [ -f "$out/ckpt.pt" ] && resume=--init_from=resume
  mkdir -p "$out"
  if OMP_NUM_THREADS=${THREADS:-1} "${PYTHON:-python}" train.py --out_dir="$out" "$@" $resume > "$out/stdout.txt" 2>&1; then
    echo "$(date +%T) $out: $(grep 'val loss' "$out/stdout.txt" | tail -n 1)"
  else
    echo "$(date +%T) FAILED $out: $(tail -n 1 "$out/stdout.txt")"; return 1
  fi
}
export -f train_one
train_all() { sed 's/[[:space:]]*$//' | grep -v '^$' | xargs -P "${JOBS:-$(nproc)}" -L 1 bash -c 'train_one "$@"' _; }
