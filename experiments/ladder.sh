#!/usr/bin/env bash
# The compute ladder (issues 24 and 29): dense + AdamW, dense + Muon, Spectron and NFW at rank d/4, and TSVD from rank
# d/2 (its default), 9–11 widths each at 4 layers, 7 training-FLOP budgets from 1e12 to 4e13 (1e12–1e13 in quarter
# decades, then 2e13 and 4e13), on the complete works (data/shakespeare_complete: val = 4 held-out plays), a point
# run if it takes ≥ 150 steps and ≤ 16 epochs, every (mode, width) at seeds 1337 and 1. The plan (sizes, steps,
# epochs, hours): `python experiments/ladder.py plan`. One WSD run per (mode, width, seed) to the top budget it runs
# keeps a checkpoint at every lower budget's decay start; each lower budget is a cooldown branch from it (a branch
# equals the straight WSD run to the digit: test_train.py, so the first ladder's long runs count as branches now).
# Step sizes (ladder.py's step_rule): muon_lr 0.01 at every width; spectron_lr 0.02·√(256/d), the measured η ∝ 1/√d;
# dense's learning_rate 1.3e-3·(256/d)^(2/3), from a sweep (1e-3 at every width lost up to 0.2 at narrow widths:
# assets/ladder/dense_lr/); NFW at 4e-3·min(1, 32/d), its best in long runs; TSVD at 6e-3·min(1, √(96/d)), its best
# at its shortest runs and in a long one, with its retraction fixed (assets/ladder/factor_lr/).
# Checked by a grid at ½× and 2× at each mode's narrowest and widest widths, at the highest budget up to 1e13 they run
# within 4 epochs (the first ladder's check) and at the lowest, and at seed 1337's best points of a mid budget and the
# top one (ladder.py's GRID_BEST); where 2× won by more than seeds differ (dense d=48 and 64), that width runs at 2×
# (ladder.py's STEP_X; runs named _x2), its 1× runs kept as the grid's.
# Then assets/ladder/: grid.md (the check), the figures, ladder.md, points.csv and every log (committed logs count as
# finished runs, so a rerun only trains what is missing; a long run restored so has no checkpoints, and the straight
# run to its highest unfinished branch remakes those its branches still need: ladder.py run_lines). Two 1-thread runs
# at a time. MODES picks modes (default "dense muon spectron nfw tsvd"), SEEDS the seeds of the long and branch stages
# (default "1337 1", but "1337" for nfw and tsvd: one seed each, as issue 29 asks), STAGES the stages (default "grid
# long branch third analyze"; third: seed 2 at a budget's best points whose seeds disagree by more than the gap they
# are used for), e.g. MODES="nfw tsvd" SEEDS=1337 bash experiments/ladder.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
modes=${MODES:-dense muon spectron nfw tsvd}
seeds=${SEEDS:-1337 1}
seeds_of() { case $1 in nfw|tsvd) echo "${SEEDS:-1337}";; *) echo "$seeds";; esac; }  # one seed each by default
stages=${STAGES:-grid long branch third analyze}
mkdir -p assets/ladder/logs runs/ladder/grid
for log in assets/ladder/logs/*.log.jsonl.gz; do  # committed runs: grid runs are named grid_*
  [ -e "$log" ] || continue
  name=$(basename "$log" .log.jsonl.gz)
  case $name in grid_*) restore_run "$log" "runs/ladder/grid/${name#grid_}";; *) restore_run "$log" "runs/ladder/$name";; esac
done
python prepare_data.py --input=data/shakespeare_complete > /dev/null
python experiments/ladder.py plan > assets/ladder/plan.md  # sizes, params, steps, epochs, estimated hours
keep() {  # train one run; its finished log goes to assets/ladder/logs at once, so a session that ends mid-stage keeps it
  train_one "$@" || return 1
  grep -qs '"kind": "summary"' "$1/log.jsonl" || return 0  # stopped by a signal (train.py exits 0): not finished
  local name; name=$(basename "$1"); case $1 in */grid/*) name=grid_$name;; esac
  [ -e "assets/ladder/logs/$name.log.jsonl.gz" ] || save_log "$1" "assets/ladder/logs/$name.log.jsonl.gz"
}
export -f keep save_log
run_stage() {  # run_stage STAGE SEED [MODES]: its runs of each mode (default: all), two at a time
  case " $stages " in *" $1 "*)
    for mode in ${3:-$modes}; do python experiments/ladder.py runs --stage=$1 --modes=$mode --seeds=$2; done |
      TRAIN_ONE=keep train_all;;
  esac
}
run_stage grid "${seeds%% *}"
for seed in $seeds; do  # a (seed, mode) whole before the next: the branch checkpoints stay on this machine, so a
  for mode in $modes; do case " $(seeds_of $mode) " in *" $seed "*)  # session's end loses less
    run_stage long $seed $mode; run_stage branch $seed $mode;; esac; done
done
finished() { grep -l '"kind": "summary"' "$@" 2>/dev/null | xargs -r -n 1 dirname; }
case " $stages " in *" third "*)  # a third seed where two disagree by more than a gap (ladder.py third_seed_lines)
  python experiments/ladder.py third $(finished runs/ladder/*/log.jsonl) --modes=${modes// /,} | TRAIN_ONE=keep train_all;;
esac
for run in $(finished runs/ladder/*/log.jsonl); do save_log "$run" "assets/ladder/logs/$(basename "$run").log.jsonl.gz"; done
for run in $(finished runs/ladder/grid/*/log.jsonl); do save_log "$run" "assets/ladder/logs/grid_$(basename "$run").log.jsonl.gz"; done
case " $stages " in *" analyze "*)
  python experiments/ladder.py grid > assets/ladder/grid.md  # every mode run so far, whichever MODES this is
  cat assets/ladder/grid.md
  # every shape's sampling speed, once (delete the CSV to re-time it), with nothing else running: one thread each
  [ -e assets/ladder/speeds.csv ] || python experiments/ladder.py speeds --out=assets/ladder/speeds.csv
  python experiments/ladder.py analyze $(finished runs/ladder/*/log.jsonl) --out=assets/ladder --bench=assets/ladder/speeds.csv
  ;;
esac
