# Sourced by the experiment scripts. `train_all` reads one run per line, "OUT_DIR --key=value ...", and trains
# them JOBS at a time (default: one per core) with THREADS threads each (default 1): small models use two 1-thread
# processes better than one 2-thread process. A run whose log.jsonl has its summary is skipped and one with a
# checkpoint resumes, so rerunning a script after a crash or Ctrl-C only finishes what is missing. PYTHON picks
# the interpreter (default: the `python` on PATH), e.g. PYTHON=.venv/bin/python when no venv is activated. Each run's
# line when it ends says how many of the runs left to do are done, and when the last should end at that pace.
train_one() {
  local out=$1; shift
  if grep -qs '"kind": "summary"' "$out/log.jsonl"; then echo "already done: $out"; return 0; fi
  if [ -f "$out/ckpt.pt" ]; then  # resume: the run's own line, but not where it started (a branch's or svd's source)
    local arg args=()
    for arg; do case $arg in --init_from=*|--branch_from=*|--svd_from=*) ;; *) args+=("$arg");; esac; done
    set -- "${args[@]}" --init_from=resume
  fi
  mkdir -p "$out"
  if OMP_NUM_THREADS=${THREADS:-1} "${PYTHON:-python}" train.py --out_dir="$out" "$@" > "$out/stdout.txt" 2>&1; then
    echo "$(date +%T) $out: $(grep 'val loss' "$out/stdout.txt" | tail -n 1)$(progress)"
  else
    echo "$(date +%T) FAILED $out: $(tail -n 1 "$out/stdout.txt")$(progress)"; return 1
  fi
}
progress() {  # in train_all: " [N of M done, ETA H:MM]", this run counted; M: the runs it found unfinished
  [ -n "${TRAIN_COUNT:-}" ] || return 0
  echo >> "$TRAIN_COUNT"
  local n eta; n=$(wc -l < "$TRAIN_COUNT")
  eta=$(( ($(date +%s) - TRAIN_T0) * (TRAIN_TODO - n) / n ))  # the mean wall time a run took so far
  printf ' [%d of %d done, ETA %d:%02d]' "$n" "$TRAIN_TODO" $((eta / 3600)) $((eta % 3600 / 60))
}
export -f train_one progress
restore_run() {  # restore_run LOG RUN: a committed log becomes the finished run RUN (unless RUN has finished itself);
  # the logs under assets/ are gzipped (gzip -dcf also passes a plain one through)
  grep -qs '"kind": "summary"' "$2/log.jsonl" ||
    { mkdir -p "$2" && gzip -dcf "$1" > "$2/log.jsonl.part" && mv "$2/log.jsonl.part" "$2/log.jsonl"; }
}
restore_runs() {  # restore_runs ASSETS RUNS: each committed ASSETS/NAME.log.jsonl.gz becomes the finished run RUNS/NAME
  local log name
  for log in "$1"/*.log.jsonl.gz "$1"/*.log.jsonl; do
    name=$(basename "$log" .gz)
    [ -e "$log" ] && restore_run "$log" "$2/${name%.log.jsonl}"
  done
  return 0
}
save_log() {  # save_log RUN LOG: RUN's log.jsonl becomes the committed LOG (NAME.log.jsonl.gz), gzipped
  gzip -9nc "$1/log.jsonl" > "$2"
}
train_all() {  # TRAIN_ONE names an exported function to run instead of train_one (one that also saves the log)
  local lines todo=0 out
  lines=$(sed 's/[[:space:]]*$//' | grep -v '^$') || return 0
  while read -r out _; do grep -qs '"kind": "summary"' "$out/log.jsonl" || todo=$((todo + 1)); done <<< "$lines"
  local count status=0; count=$(mktemp)
  echo "$lines" | TRAIN_COUNT=$count TRAIN_T0=$(date +%s) TRAIN_TODO=$todo \
    xargs -P "${JOBS:-$(nproc)}" -L 1 bash -c '"${TRAIN_ONE:-train_one}" "$@"' _ || status=$?
  rm -f "$count"
  return $status
}
# python_corpus: the second corpus of the rank sweeps, which every machine has offline: Python's own standard library
# (the top-level *.py files in name order, cut to TinyShakespeare's 1,115,394 characters), written to
# runs/corpora/python_stdlib.txt; prints one line naming its Python version and hash (another Python, another corpus).
python_corpus() {
  mkdir -p runs/corpora
  "${PYTHON:-python}" - <<'PY'
import glob, hashlib, os, sys, sysconfig
stdlib = sysconfig.get_paths()['stdlib']
text = ''.join(open(p, encoding='utf-8', errors='replace').read() for p in sorted(glob.glob(f'{stdlib}/*.py')))
text = text[:1_115_394]
open('runs/corpora/python_stdlib.txt', 'w', encoding='utf-8').write(text)
print(f"runs/corpora/python_stdlib.txt: {len(text):,} characters, {len(set(text))} distinct, from the *.py files of "
      f"{stdlib} (Python {sys.version.split()[0]}), sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}")
PY
}
