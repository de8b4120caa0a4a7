#!/usr/bin/env bash
# NFW's and TSVD's step-size checks for the ladder (assets/ladder/factor_lr/README.md): each run is the ladder's run of
# that mode and width (`python experiments/ladder.py runs --stage=long`) as one straight WSD run of STEPS steps at
# LR, seed 1337; its log goes to assets/ladder/factor_lr/{mode}_d{d}_lr{LR}_T{STEPS}.log.jsonl.gz (a committed one
# counts as done). Two 1-thread runs at a time. Usage: bash experiments/factor_lr.sh "MODE D STEPS LR" ...
# (PLAN=1 first: the runs it would train, one line each)
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
assets=assets/ladder/factor_lr
mkdir -p "$assets" runs/factor_lr
restore_runs "$assets" runs/factor_lr
keep() { train_one "$@" && { ! grep -qs '"kind": "summary"' "$1/log.jsonl" ||
  save_log "$1" "assets/ladder/factor_lr/$(basename "$1").log.jsonl.gz"; }; }
export -f keep save_log
lines=()
for check; do  # every check's ladder line first, so a bad one stops the script before any run (one line, exit 2)
  read -r mode d steps lr <<< "$check"
  [[ $steps =~ ^[0-9]+$ && $lr =~ ^[0-9.e-]+$ ]] || { echo "error: \"$check\": want \"MODE D STEPS LR\"" >&2; exit 2; }
  line=$(python experiments/ladder.py runs --stage=long --modes="$mode" --seeds=1337 2>/dev/null |
    grep "^runs/ladder/${mode}_d${d}_") ||
    { echo "error: \"$check\": no ladder run of $mode at d=$d" >&2; exit 2; }
  lines+=("$(echo "$line" | sed -E "s|^[^ ]+|runs/factor_lr/${mode}_d${d}_lr${lr}_T${steps}|; s/ --save_at=[^ ]*//;
            s/--learning_rate=[^ ]*/--learning_rate=$lr/; s/--max_iters=[^ ]*/--max_iters=$steps/")")
done
[ -z "${PLAN:-}" ] || { printf '%s\n' "${lines[@]}"; exit 0; }  # PLAN=1: print the runs, run none
printf '%s\n' "${lines[@]}" | TRAIN_ONE=keep train_all
