"""
The compute ladder (issues 24 and 29): model sizes × modes × training-FLOP budgets × seeds. Its plan, its analysis.

    python experiments/ladder.py plan                     # shapes, params, FLOPs/token, steps, epochs, CPU hours
    python experiments/ladder.py plan --measure=True      # re-time the measured shapes first (1 thread, 20 steps)
    python experiments/ladder.py runs --stage=long|branch|grid [--modes=dense,muon] [--seeds=1337,1]  # ladder.sh's
    python experiments/ladder.py grid                     # the step-size check's table, from runs/ladder
    python experiments/ladder.py third runs/ladder/* [--modes=dense,muon]  # the third seed's runs (where 2 disagree)
    python experiments/ladder.py speeds --out=assets/ladder/speeds.csv  # every shape's sampling tokens/s (--bench)
    python experiments/ladder.py analyze runs/ladder/* --out=assets/ladder [--bench=bench.csv] [--resamples=1000]

Keys in configurator's --key=value style (--help lists them); bad input is one line and exit status 2.

The plan: depth fixed (n_layer 4, n_head 4), width varied; block 64 × batch 16 = 1,024 tokens per step at every size
(the config every step size in this repo was tuned at). With a WSD schedule each (mode, size, seed) has one long run
to the top budget it runs; every lower budget is a branch from its stable phase that cools down over the last 20 % of
that budget's steps. Parameters are counted as the model has them: every parameter, both embeddings included (the tied
head once); with 84 characters the embeddings are small. FLOPs are model.flops_per_token's (6 per weight per token
+ attention's 12·L·d·T) × tokens, i.e. train.py's train_flops.

analyze takes the last eval of every run (a branch is a run of its own; a long run's earlier evals are not cooled
down, so they are not points); the runs of one (mode, size, steps) at several seeds are one point at their mean loss,
and budgets group points by nominal FLOPs (TSVD's shrinking rank logs fewer: it is fitted at what it logged). It
writes to --out: loss_vs_flops.png (every point and each mode's fitted frontier),
isoflop.png (val loss against parameters at each budget, quadratic fits in log N; N_opt(C) and D_opt(C)),
gap.png (each mode − dense, and − dense + Muon, at equal FLOPs), ladder.md (the fits, exponents, gaps and inference at equal quality)
and points.csv (every run). A frontier is fitted to each budget's best point. Intervals are 90 % bootstrap intervals,
each point's loss drawn from its seeds in every resample, so they include the seed spread: over the budgets' best
points for a frontier, over the points for the rest. ladder.md also checks the fits
(issue 29): each frontier refitted without its top budget and its prediction there against the measured best loss,
and Approach 3 (Hoffmann et al.'s parametric L(N, D) = E + A/N^α + B/D^β over every point) beside the isoFLOP
exponents (Approach 2); a fit that is degenerate or misses its held-out budget is called not a law.
"""
import csv
import functools
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lowrank  # noqa: E402
from configurator import parse_args, stable_steps  # noqa: E402
from plot_spectra import log_file, read_log, run_name, save_png, unwritable  # noqa: E402
from table import die, read  # noqa: E402

# -----------------------------------------------------------------------------
# the plan, as data
VOCAB = 84  # the complete works' distinct characters
TRAIN_TOKENS = 4_568_778  # its training split (the 38 works not held out), as prepare_data.py tokenises it
N_LAYER, N_HEAD = 4, 4  # depth fixed at every width: the repo's default shape
BLOCK_SIZE, BATCH_SIZE = 64, 16  # 1,024 tokens per step at every size
RANK = 0.25  # nfw and spectron: rank d/4 in every layer (a fraction of each layer's smaller side); tsvd: its registry
# default (lowrank.MODES['tsvd'].defaults: start rank d/2, then shrinking to what holds τ = 0.99 of Σ s²)
WIDTHS = {  # per mode, ≥ 1.5 decades of parameters; at a width the factorized modes have ~0.375× the weights and TSVD
    # (start rank d/2) ~0.75×. The narrowest of dense, muon and spectron (12, 16; 24; 32) were added after the first
    # analysis put their 1e12 minima at the narrowest width run (dense's left of every point)
    'dense': (12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384),
    'muon': (24, 32, 48, 64, 96, 128, 192, 256, 384),
    'spectron': (32, 48, 64, 96, 128, 192, 256, 384, 576),
    'nfw': (32, 48, 64, 96, 128, 192, 256, 384, 576),
    'tsvd': (16, 24, 32, 48, 64, 96, 128, 192, 256, 384),
}
GRID_WIDTHS = {'dense': (12, 24, 48, 384), 'muon': (24, 32, 48, 384), 'spectron': (32, 48, 64, 576),  # checked: the
               'nfw': (32, 48, 576), 'tsvd': (16, 24, 384)}  # narrowest, the first ladder's checked ones, the widest
GRID_TOP, GRID_EPOCHS = 1e13, 4  # the grid's first check (its runs grid/{mode}_d{d}_x{x}): each width at the highest
# budget up to GRID_TOP it reaches within GRID_EPOCHS epochs, the first ladder's rule; its second at the lowest it runs
GRID_BEST = {'dense': ((32, 5.62e12), (64, 1e13), (96, 4e13)), 'muon': ((64, 5.62e12), (96, 4e13)),  # the grid's third
             'spectron': ((96, 5.62e12), (192, 4e13)),  # check: seed 1337's best points at a mid budget and the top one
             'nfw': ((64, 1e13), (128, 4e13)), 'tsvd': ((64, 1e13), (64, 4e13))}  # (dense's at every budget from 1.8e12
# up, 32–96, none among its checked widths, once the grid at d=48 preferred 2×; nfw's at 5.6e12, d=48, is its first
# check's; three of nfw's four, d=64 at ½× and d=128 at ½× and 2×, and tsvd's at 1e13, are factor_lr's runs at the
# same flags, their logs copied)
STEP_X = {('dense', 48): 2, ('dense', 64): 2, ('tsvd', 24): 2}  # the grid's verdict: where 2× the rule beat it near a
# mode's minimum by more than seeds differ there (dense d=48 by 0.04 at 1e12 and at 1e13, d=64 by 0.017 at 1e13, tsvd
# d=24 by 0.037 at 1e12; seeds 0.001–0.008), the width runs at 2× at every budget and seed (runs named _x2); its 1×
# runs stay as the grid's 1×
THIRD_SEED = 2  # a budget's best point gets it where its two seeds disagree by more than a gap (third_seed_lines)
SEEDS = (1337, 1)  # every (mode, width) at each; the first is the first ladder's (its runs keep their names), another
# appends _s{seed} to the name (runs/ladder/dense_d64_T694_s1), its branches from that seed's long run
MAX_EPOCHS = 16  # a (width, budget) point needing more epochs is not run. The complete works are all the data we have;
# Muennighoff et al. 2023 (arXiv:2305.16264): up to 4 epochs repeated tokens are worth nearly fresh ones, returns
# diminish around 16 (their R*_D ≈ 15). The plan prints each point's epochs; ladder.md counts those past FRESH_EPOCHS
FRESH_EPOCHS = 4  # the first ladder's cap: up to here repetition is nearly free
TIMED_LIKE = {'nfw': 'spectron', 'tsvd': 'muon'}  # ms/step of a mode not timed: another's law in FLOPs/token. nfw:
# spectron's (an upper bound: no Newton–Schulz); tsvd: muon's (its per-step SVD retraction, like Newton–Schulz, costs
# beyond the FLOPs: bench_cpu d=256, rank 128: 1.34× dense, muon's law at its FLOPs 1.38×; its rank shrinks: an upper
# bound)
OPTIONAL = ()  # modes run only if asked (--modes / MODES=...); the plan prints the total with and without them
BUDGETS = tuple(1e12 * 10 ** (k / 4) for k in range(5)) + (2e13, 4e13)  # training FLOPs: the first ladder's decade
# in quarter decades, then two doublings past it (0.30 decades a step, near the quarter decade): round budgets, and
# the most whose minima (N_opt ∝ C^0.7–0.8 from the first ladder) keep widths on both sides within MAX_EPOCHS
SAMPLE_TOKENS = 500  # speeds: new tokens sampled per shape
COOLDOWN = 0.2  # each branch cools down over this fraction of its budget's steps
WARMUP = 50  # WSD warmup steps: below 0.8 × the shortest branch that is run
MIN_STEPS = 150  # a (size, budget) point shorter than this is not run: it would be mostly warmup
EVAL_ITERS = 40  # batches per split in an eval (the same batches in every run): 2 × 40 forward passes ≈ 27 steps
EVAL_INTERVAL = 500  # evals of the long run (the branches eval once, at their end)
PRIOR_TOKENS_PER_PARAM = 30  # D/N at the optimum, for placing widths only: the first ladder measured D_opt/N_opt
# 14–43 for muon and spectron, 125–250 for dense (its minima at the edge); the plan prints the D/N range it tolerates
MEASURED_MS = {  # ms/step, 1 thread, nice, while other work shared the 2 cores: bench.py --threads=1 --vocab_size=84
    ('dense', 64): 22.2, ('dense', 256): 209.4,  # --steps=20 --ranks=0.25 (median of 20 steps after 3 warm-up);
    ('muon', 64): 26.7, ('muon', 256): 381.8,  # other shapes: a power law in FLOPs/token through the two widths
    ('spectron', 64): 18.7, ('spectron', 256): 108.5,  # nfw and tsvd: TIMED_LIKE
}
DENSE_LR, DENSE_LR_POWER = 1.3e-3, 2 / 3  # dense's AdamW peak ∝ d^(−2/3) (step_rule): the sweep's best 9.2e-3 at d=12,
# 6.5e-3 at 24, 5.3e-3 at 48, 1e-3 at 384; their least-squares line in log-log, 1.4e-3·(256/d)^0.65, rounded
FLOOR_MS = 15  # ms/step of the narrowest shapes, from their logs (dense d=12, 16, 24 at 1e-3: 987 s for 65,079 steps,
# 648 s for 41,939, 629 s for 38,797; assets/ladder/dense_lr), where the power law says 2–5
FACTOR_LR = {'nfw': (4e-3, 32, 1), 'tsvd': (6e-3, 96, 0.5)}  # (lr, d₀, p): learning_rate lr·min(1, d₀/d)^p
# (assets/ladder/factor_lr). NFW's: the best of ⅛×–2× where each width is near its budget's best, the long runs
# (4e-3 at d=32, 13,724 steps; 2e-3 at 64, 14,549; 1e-3 at 128, 17,539; 2e-3 and 4e-3 tie at 48): its first rule,
# 4e-3·min(1, 128/d) from the shortest runs, lost 0.04 and 0.10 there. TSVD's: with its retraction fixed (unit
# columns; the first one inflated s and diverged in long runs), the best at d=96's shortest runs and at d=64 in 1e13's
# 8,770 steps (at d=384's shortest, 6e-3 beats the rule's 3e-3 by 0.010)
PAPER = (0.479, 0.521)  # the paper's N_opt and D_opt exponents; Chinchilla's are ≈ 0.5 each
FIRST_DECADE = (1e12, 1e13)  # the first ladder's budgets, whose fits its verdict extrapolated: ladder.md checks them
# against every budget past it
C_REF = 1e13  # the frontier's A is the reducible loss at this many FLOPs: L = E + A·(C / C_REF)^−α
HELD_OUT_TOL = 0.02  # nats: a held-out prediction further off than this misses, however wide its interval (a wide
# interval only says the lower budgets do not pin the curve; the ladder's gaps at the top budget are 0.01–0.1)
BUDGET_TOL = 1.15  # runs within this factor of nominal training FLOPs belong to the same budget (nominal: the steps
# run × their start shape's FLOPs/token, the budget planned; for every mode but tsvd, whose rank shrinks, as logged)
TOKENS_PER_STEP = BLOCK_SIZE * BATCH_SIZE

# the command line's keys, each for the commands named
measure = False  # plan: re-time the measured shapes first (1 thread, 20 steps)
stage = ''  # runs: long | branch | grid
modes = ','.join(m for m in WIDTHS if m not in OPTIONAL)  # runs, grid: comma-separated modes of WIDTHS
seeds = ','.join(map(str, SEEDS))  # runs: comma-separated seeds (long and branch stages)
out = ''  # analyze: the folder for the figures, ladder.md and points.csv; speeds: the CSV
bench = ''  # analyze: a bench.py --csv file whose sampling tokens/s (gen_tok_s) the inference table shows
resamples = 1000  # analyze: bootstrap resamples of the 90% intervals
KEYS = dict(measure=measure, stage=stage, modes=modes, seeds=seeds, out=out, bench=bench, resamples=resamples)
COMMANDS = {'plan': {'measure'}, 'runs': {'stage', 'modes', 'seeds'}, 'grid': {'modes'}, 'third': {'modes'},
            'speeds': {'modes', 'out'},
            'analyze': {'out', 'bench', 'resamples'}}
USAGE = ("usage: ladder.py plan [--measure=True] | runs --stage=long|branch|grid [--modes=a,b] [--seeds=1337,1] | grid "
         "[--modes=a,b] | third RUN_DIR|LOG.jsonl ... [--modes=a,b] | speeds --out=CSV [--modes=a,b]"
         " | analyze RUN_DIR|LOG.jsonl ... --out=DIR [--bench=CSV] [--resamples=N]")


def gpt(mode, d):
    from model import GPT, GPTConfig
    return GPT(GPTConfig(block_size=BLOCK_SIZE, vocab_size=VOCAB, n_layer=N_LAYER, n_head=N_HEAD, n_embd=d,
                         mode=mode, rank=rank_of(mode) or d))


def factorized(mode):
    return lowrank.MODES[mode].layer is not lowrank.DenseLinear


def rank_of(mode):
    """the rank fraction a ladder run of mode trains at (its registry default, else RANK); None: full rank"""
    return lowrank.MODES[mode].defaults.get('rank', RANK) if factorized(mode) else None


@functools.lru_cache(maxsize=None)
def shape(mode, d):
    """params (all of them, both embeddings included) and training FLOPs per token of one ladder shape"""
    model = gpt(mode, d)
    return sum(p.numel() for p in model.parameters()), model.flops_per_token()


def ms_per_step(mode, fpt, measured):
    """measured ms/step where there is a measurement, else a power law in FLOPs/token through the mode's two (or
    through TIMED_LIKE's mode's), but never below FLOOR_MS: the narrowest shapes cost a step's overhead, not FLOPs"""
    (f0, m0), (f1, m1) = sorted(measured[mode if mode in measured else TIMED_LIKE[mode]])
    return max(FLOOR_MS, m0 * (fpt / f0) ** (math.log(m1 / m0) / math.log(f1 / f0)))


def bench_config(**kw):
    """bench.py's config of a ladder shape's timing (1 thread, the ladder's vocabulary and batch), after an untimed run
    that loads kernels and thread pools"""
    import torch
    import bench
    torch.set_num_threads(1)
    c = bench.validate(dict(bench.DEFAULTS, vocab_size=VOCAB, block_size=BLOCK_SIZE, batch_size=BATCH_SIZE, **kw))
    c['opt_cfg'] = dict(bench.OPT_CFG, device_type='cpu', rank_warmup=10**9)
    bench.run(dict(c, steps=1), 64, 'dense', 64)
    return bench, c


def speeds(opts):
    """sampling tokens/s (one token at a time, 1 thread) of every ladder shape of --modes, into --out as a CSV that
    analyze's --bench reads; time it on a quiet machine (tsvd: at its start rank, an upper bound on its cost)"""
    bench, c = bench_config(warmup=1, steps=1, sample_tokens=SAMPLE_TOKENS)
    shapes = [(m, d) for m in opts['modes'].split(',') for d in WIDTHS[m]]
    with open(opts['out'], 'w', newline='') as f:
        out = csv.writer(f)
        out.writerow(['mode', 'width', 'rank', 'params', 'mflops_tok', 'gen_tok_s'])
        for k, (mode, d) in enumerate(shapes):
            rank = max(1, round(rank_of(mode) * d)) if factorized(mode) else d
            r = bench.run(c, d, mode, rank)
            out.writerow([mode, d, rank, r['params'], f"{r['flops'] / 1e6:.4f}", f"{r['gen']:.1f}"])
            print(f"{k + 1} of {len(shapes)}: {mode} d={d} rank {rank}: {r['gen']:,.0f} tokens/s", flush=True)


def measure():
    """ms/step of MEASURED_MS's shapes, timed now by bench.py's train step (1 thread)"""
    bench, c = bench_config(warmup=3, steps=20, sample_tokens=0)
    out = {}
    for mode, d in MEASURED_MS:
        out[mode, d] = bench.run(c, d, mode, max(1, round(RANK * d)) if factorized(mode) else d)['ms']
        print(f"measured {mode} d={d}: {out[mode, d]:.1f} ms/step", flush=True)
    return out


def steps_for(budget, fpt):
    return math.ceil(budget / (fpt * TOKENS_PER_STEP))


def budget_steps(mode, d, max_epochs=None):
    """[(budget, steps)] of the budgets a width runs: at least MIN_STEPS steps and at most max_epochs (MAX_EPOCHS)
    epochs (tsvd: the steps its start shape needs, so its shrinking rank spends less than the budget it was given)"""
    fpt = shape(mode, d)[1]
    return [(b, s) for b, s in ((b, steps_for(b, fpt)) for b in BUDGETS)
            if MIN_STEPS <= s and s * TOKENS_PER_STEP <= (max_epochs or MAX_EPOCHS) * TRAIN_TOKENS]


def prior_n_opt(budget, sizes, tokens_per_param=PRIOR_TOKENS_PER_PARAM):
    """N where C = FLOPs/token(N) × tokens_per_param × N, FLOPs/token interpolated log-log between the sizes"""
    logn, logf = np.log([n for n, _ in sizes]), np.log([f for _, f in sizes])
    grid = np.linspace(logn[0] - 1, logn[-1] + 1, 2000)
    cost = np.interp(grid, logn, logf, left=np.nan, right=np.nan)
    slope = (logf[-1] - logf[0]) / (logn[-1] - logn[0])
    cost = np.where(np.isnan(cost), logf[0] + slope * (grid - logn[0]), cost) + grid + math.log(tokens_per_param)
    return float(np.exp(grid[np.argmin(abs(cost - math.log(budget)))]))


def plan_rows(measured):
    """per (mode, width), one seed: params, FLOPs/token, {budget: steps} of the points it runs, ms/step, CPU hours (the
    long run, the branches' cooldowns, the evals); and per mode the step-size grid's CPU hours"""
    rows, grid = [], {}
    for mode, widths in WIDTHS.items():
        for d in widths:
            params, fpt = shape(mode, d)
            steps = dict(budget_steps(mode, d))
            top = max(steps.values())  # the long run's length: the highest budget it serves
            evals = 2 * EVAL_ITERS / 3 * (top / EVAL_INTERVAL + len(steps))
            total = top + sum(COOLDOWN * s for s in steps.values() if s < top) + evals
            ms = ms_per_step(mode, fpt, measured)
            rows.append(dict(mode=mode, d=d, rank=max(1, round(rank_of(mode) * d)) if factorized(mode) else '-',
                             params=params, fpt=fpt, steps=steps, tokens=top * TOKENS_PER_STEP, ms=ms,
                             measured=(mode, d) in MEASURED_MS, hours=total * ms / 3.6e6))
        grid[mode] = sum(2 * s * ms_per_step(mode, shape(mode, d)[1], measured) for d, s, _ in grid_points(mode)) / 3.6e6
    return rows, grid


def plan(opts):
    measured = {}
    for (mode, d), ms in (measure() if opts['measure'] else MEASURED_MS).items():
        measured.setdefault(mode, []).append((shape(mode, d)[1], ms))
    rows, grid = plan_rows(measured)
    print(f"ladder: n_layer {N_LAYER}, n_head {N_HEAD}, block {BLOCK_SIZE} × batch {BATCH_SIZE} = "
          f"{TOKENS_PER_STEP:,} tokens/step, vocab {VOCAB}, training split ≈ {TRAIN_TOKENS:,} tokens; "
          f"WSD: warmup {WARMUP}, branches cool down over the last {COOLDOWN:.0%} of each budget; seeds "
          f"{', '.join(map(str, SEEDS))}\nbudgets (training FLOPs): {', '.join(f'{b:.3g}' for b in BUDGETS)}; params: "
          f"all, embeddings included; a point is run if it takes ≥ {MIN_STEPS} steps and ≤ {MAX_EPOCHS} epochs\n")
    print("| mode | n_embd | rank | params | MFLOPs/token | steps (epochs) per budget; – : not run | ms/step | "
          "CPU hours, one seed |\n" + '|---' * 8 + '|')
    for r in rows:
        steps = ' / '.join(f"{r['steps'][b]:,} ({r['steps'][b] * TOKENS_PER_STEP / TRAIN_TOKENS:.1f})"
                           if b in r['steps'] else '–' for b in BUDGETS)
        print(f"| {r['mode']} | {r['d']} | {r['rank']} | {r['params'] / 1e6:.3f}M | {r['fpt'] / 1e6:.2f} | {steps} "
              f"| {r['ms']:.0f}{'' if r['measured'] else ' (est.)'} | {r['hours']:.2f} |")
    print(f"\nms/step: measured at {sorted({d for _, d in MEASURED_MS})} (1 thread), the rest a power law in "
          f"FLOPs/token between them, at least {FLOOR_MS} (est.; nfw, tsvd: "
          f"{', '.join(f'{a} as {b}' for a, b in TIMED_LIKE.items())}); "
          "CPU hours include the branches and the evals")
    for mode in WIDTHS:
        mine = [r for r in rows if r['mode'] == mode]
        sizes = [(r['params'], r['fpt']) for r in mine]
        run_at = [[r['params'] for r in mine if b in r['steps']] for b in BUDGETS]

        def inside(k):  # every minimum nearer an inner size run at its budget than an edge one
            return all(len(ns) >= 3 and math.sqrt(ns[0] * ns[1]) <= prior_n_opt(b, sizes, k) <= math.sqrt(
                ns[-2] * ns[-1]) for b, ns in zip(BUDGETS, run_at))
        ok = [k for k in np.geomspace(0.3, 1000, 400) if inside(k)]
        print(f"{mode}: N_opt if D/N = {PRIOR_TOKENS_PER_PARAM} at the optimum: "
              + ', '.join(f"{prior_n_opt(b, sizes) / 1e6:.2f}M" for b in BUDGETS)
              + (f"; every minimum is inside the sizes run for D/N ≈ {ok[0]:.1f} … {ok[-1]:.1f}" if ok else
                 "; no D/N puts every minimum inside"))
    hours = {m: sum(r['hours'] for r in rows if r['mode'] == m) for m in WIDTHS}
    longest = max(r['hours'] for r in rows)
    for label, ms in [('default modes', [m for m in WIDTHS if m not in OPTIONAL])] + (
            [('with ' + ', '.join(OPTIONAL), list(WIDTHS))] if OPTIONAL else []):
        one, checks = sum(hours[m] for m in ms), sum(grid[m] for m in ms)
        total = len(SEEDS) * one + checks
        print(f"{label}: {one:.1f} core-hours a seed × {len(SEEDS)} seeds + {checks:.1f} the step-size grid = "
              f"{total:.1f} core-hours = {total / 2:.1f} h on 2 cores (two 1-thread runs at a time; longest run "
              f"{longest:.2f} h); a seed, per mode: " + ', '.join(f"{m} {hours[m]:.1f}" for m in ms)
              + '; grid: ' + ', '.join(f"{m} {grid[m]:.1f}" for m in ms))


def step_key(mode):
    return lowrank.MODES[mode].step_size


def step_rule(mode, d):
    """the step size (step_key's value) a ladder run of mode trains at, at width d: muon_lr 0.01 at every width and
    spectron_lr 0.02·√(256/d) (train.py's defaults); dense's learning_rate DENSE_LR·(256/d)^DENSE_LR_POWER, fitted to
    the best of a sweep at widths 12–384 (assets/ladder/dense_lr/: 1e-3 at every width, dense's default, lost up to
    0.2 at the narrow widths); nfw's and tsvd's FACTOR_LR rule; the others their registry default"""
    if mode == 'dense':
        return DENSE_LR * (256 / d) ** DENSE_LR_POWER
    if mode in FACTOR_LR:
        lr, d0, power = FACTOR_LR[mode]
        return lr * min(1, d0 / d) ** power
    return {'muon_lr': 0.01, 'spectron_lr': lowrank.spectron_lr_at_width(0.02, d)}.get(
        step_key(mode), lowrank.MODES[mode].defaults['learning_rate'])


def ladder_x(mode, d):
    """the ladder's step size at width d as a multiple of step_rule: 1, or STEP_X's"""
    return STEP_X.get((mode, d), 1)


def point_dir(mode, d, steps, seed=SEEDS[0], x=None):
    """a ladder point's run: runs/ladder/{mode}_d{d}_T{steps}, _x{x} after the width where x (default: ladder_x) is
    not 1, _s{seed} appended for a seed other than SEEDS[0]"""
    x = ladder_x(mode, d) if x is None else x
    return f"runs/ladder/{mode}_d{d}" + (f"_x{x:g}" if x != 1 else '') + f"_T{steps}" + (
        '' if seed == SEEDS[0] else f"_s{seed}")


def grid_points(mode):
    """the step-size check's (n_embd, steps, name suffix) of a mode: each GRID_WIDTHS width at the highest budget up to
    GRID_TOP it reaches within GRID_EPOCHS epochs (the first ladder's check: grid/{mode}_d{d}_x{x}) and at the lowest
    budget it runs (grid/{mode}_d{d}_x{x}_T{steps}; one check where the two are the same), then GRID_BEST's points"""
    out = []
    for d in GRID_WIDTHS[mode]:
        top = [s for b, s in budget_steps(mode, d, GRID_EPOCHS) if b <= GRID_TOP * 1.001][-1]
        low = budget_steps(mode, d)[0][1]
        out += [(d, top, '')] + ([(d, low, f"_T{low}")] if low != top else [])
    for d, budget in GRID_BEST.get(mode, ()):
        steps = next(s for b, s in budget_steps(mode, d) if abs(b / budget - 1) < 0.01)
        out += [(d, steps, f"_T{steps}")]
    return out


def run_flags(mode, d, seed, x=None):
    """train.py's flags of a ladder run of mode at width d and seed but its length, at x (default: ladder_x) ×
    step_rule (a flag only where that is not train.py's default: dense's rule, FACTOR_LR, or x ≠ 1)"""
    x = ladder_x(mode, d) if x is None else x
    return (f"--mode={mode} --n_layer={N_LAYER} --n_head={N_HEAD} --n_embd={d} --block_size={BLOCK_SIZE} "
            f"--batch_size={BATCH_SIZE} --input_file=data/shakespeare_complete --lr_schedule=wsd "
            f"--decay_frac={COOLDOWN} --warmup_iters={WARMUP} --eval_interval={EVAL_INTERVAL} "
            f"--eval_iters={EVAL_ITERS} --spectra_interval=0 --log_interval=100 --seed={seed}"
            + (f" --rank={rank_of(mode)}" if factorized(mode) else '')
            + (f" --{step_key(mode)}={x * step_rule(mode, d):.6g}" if mode == 'dense' or mode in FACTOR_LR or x != 1
               else ''))


def third_seed_lines(points, modes):
    """issue 29's third seed: train_all's lines of the budgets' best points (a straight WSD run at THIRD_SEED, equal to
    a branch of that seed's long run) where two seeds disagree by more than the gap they are used for: per budget, a
    mode's best point against dense's and dense + Muon's (measured_gaps' pairs), both with ≥ 2 seeds, when either's
    seed range exceeds |gap|. Only points of the modes given, and not those with a third seed already; each reason on
    stderr."""
    lines = {}
    for ref in ('dense', 'muon'):
        for b, g in sorted(group_budgets(points).items()):
            best = {m: min((p for p in g if p['mode'] == m), key=lambda p: p['val_loss'])
                    for m in {p['mode'] for p in g}}
            for mode in (m for m in best if m not in ('dense', ref) and ref in best):
                pair = best[mode], best[ref]
                gap, spread = pair[0]['val_loss'] - pair[1]['val_loss'], max(np.ptp(p['losses']) for p in pair)
                if min(len(p['losses']) for p in pair) < 2 or spread <= abs(gap):
                    continue
                for p in pair:
                    if p['mode'] in modes and THIRD_SEED not in p['seeds'] and len(p['seeds']) < 3:
                        name = point_dir(p['mode'], p['n_embd'], p['iter'], THIRD_SEED)
                        lines[name] = f"{name} {run_flags(p['mode'], p['n_embd'], THIRD_SEED)} --max_iters={p['iter']}"
                        print(f"third seed: {p['mode']} d={p['n_embd']} at {b:.2g} FLOPs ({mode} − {ref} {gap:+.4f}, "
                              f"seeds spread {spread:.4f})", file=sys.stderr)
    return list(lines.values())


def finished(run):
    """a run with its summary (experiments/lib.sh's test), read by the one log reader"""
    return os.path.exists(os.path.join(run, 'log.jsonl')) and any(r['kind'] == 'summary' for r in read_log(run))


def run_lines(stage, modes, seeds=SEEDS):
    """train_all's lines (OUT_DIR --key=value ...) of one stage: 'long' (one WSD run per mode, size and seed to the
    highest budget it runs, keeping a checkpoint at every lower budget's decay start), 'branch' (the cooldowns from
    those), or 'grid' (the step-size check at ½× and 2× each mode's rule, grid_points; first seed only)."""
    lines = []
    for mode in modes:
        for seed in seeds if stage != 'grid' else SEEDS[:1]:
            for d in WIDTHS[mode]:
                steps = [s for _, s in budget_steps(mode, d)]
                flags = run_flags(mode, d, seed)
                top = steps[-1]
                starts = [stable_steps(s, COOLDOWN) for s in steps[:-1]]  # each lower budget's decay start
                long_dir = point_dir(mode, d, top, seed)
                def source(i):  # branch i's checkpoint: the long run's, or else a longer point's that made it
                    return next((p for p in (f"{point_dir(mode, d, t, seed)}/ckpt_{starts[i]}.pt" for t in
                                             steps[:i:-1]) if os.path.exists(p)), None)
                if stage == 'long':
                    # a long run restored from its committed log lacks its checkpoints (they stay on the machine that
                    # made them): the straight run to its highest unfinished branch makes the ones still needed
                    todo = [i for i, s in enumerate(steps[:-1]) if not finished(point_dir(mode, d, s, seed))]
                    lost = finished(long_dir) and any(source(i) is None for i in todo)
                    end, keep = (steps[todo[-1]], [starts[i] for i in todo[:-1]]) if lost else (top, starts)
                    lines.append(f"{point_dir(mode, d, end, seed)} {flags} --max_iters={end}"
                                 + (f" --save_at={','.join(map(str, keep))}" if keep else ''))
                elif stage == 'branch':
                    lines += [f"{point_dir(mode, d, s, seed)} {flags} --max_iters={s} --init_from=branch --branch_from="
                              + (source(i) or f"{long_dir}/ckpt_{k}.pt") for i, (s, k) in enumerate(zip(steps, starts))]
                elif stage == 'grid':
                    lines += [f"runs/ladder/grid/{mode}_d{d}_x{x:g}{tag} {run_flags(mode, d, seed, x)} --max_iters={s}"
                              for dd, s, tag in grid_points(mode) if dd == d for x in (0.5, 2)]
    return lines


def grid_table(modes):
    """The step-size check as a markdown table: val loss at ½×, 1× (the ladder's own run of that width and steps) and
    2× each mode's rule, at each grid_points width and budget, and where the best of the three lies; a row only where
    one of them has finished, so every mode's grid fits one table whichever modes ran (ladder.sh's MODES)."""
    out = ["# Step-size check (experiments/ladder.sh): each mode's rule against ½× and 2×, WSD, at each checked "
           f"width's highest budget up to {GRID_TOP:.0e} within {GRID_EPOCHS} epochs and at its lowest, then at seed "
           "1337's best points of a mid budget and the top one", "",
           "| mode | n_embd | budget | steps | step-size key | ½× | 1× (the rule) | 2× | best |", '|---' * 9 + '|']
    for mode in modes:
        for d, steps, tag in grid_points(mode):
            dirs = [f"runs/ladder/grid/{mode}_d{d}_x0.5{tag}", point_dir(mode, d, steps, x=1),
                    f"runs/ladder/grid/{mode}_d{d}_x2{tag}"]
            points = [read_point(r) if os.path.isfile(os.path.join(r, 'log.jsonl')) else None for r in dirs]
            vals = [p['val_loss'] if p and p['seconds'] is not None else math.nan for p in points]  # finished only
            if all(map(math.isnan, vals)):
                continue  # a mode or width not run (yet)
            best = ('½×', '1×', '2×')[int(np.nanargmin(vals))] if not any(map(math.isnan, vals)) else 'not yet run'
            budget = next(b for b, s in budget_steps(mode, d) if s == steps)
            out.append(f"| {mode} | {d} | {budget:.3g} | {steps:,} | {step_key(mode)} | "
                       + ' | '.join(f"{v:.4f}" for v in vals) + f" | {best} |")
    return '\n'.join(out)


# -----------------------------------------------------------------------------
# analysis: reading runs, fits, bootstrap

def read_point(path):
    """one point from a run's last eval: mode, width, params (both embeddings included), training FLOPs, val loss"""
    log = log_file(path)
    if not os.path.isfile(log):
        die(f"no run at {path}")
    try:
        rows = read_log(log)
    except (OSError, ValueError) as e:
        die(f"{log} is not a readable log.jsonl: {type(e).__name__}")
    config = next((r for r in rows if r.get('kind') == 'config'), None)
    evals = [r for r in rows if r.get('kind') == 'eval']
    if config is None or not evals:
        die(f"{log} has no config or no eval record")
    last, first = evals[-1], evals[0]
    summary = next((r for r in rows if r.get('kind') == 'summary'), None)  # a branch's seconds count from its parent's
    start = max((r['iter'] for r in rows if r.get('kind') == 'config' and r.get('init_from') == 'branch'), default=0)
    rank = config['rank']
    if not factorized(config['mode']):  # the registry, not the name: a full-rank W
        rank = config['n_embd']
    elif isinstance(rank, float):
        rank = max(1, round(rank * config['n_embd']))
    tokens = last['iter'] * config['block_size'] * config['batch_size'] * config.get('gradient_accumulation_steps', 1)
    x = config.get(step_key(config['mode']), math.nan) / step_rule(config['mode'], config['n_embd'])
    return dict(run=run_name(path), mode=config['mode'], seed=config.get('seed'), x=float(f"{x:.3g}"),
                n_embd=config['n_embd'], n_layer=config['n_layer'], rank=rank, iter=last['iter'],
                params=last['params'] + config['block_size'] * config['n_embd'],  # num_params() leaves out wpe
                flops_per_token=last['flops_per_token'], train_flops=last['train_flops'], tokens=tokens,
                budget=first['flops_per_token'] * tokens,  # nominal: its start shape's (tsvd's rank then shrinks)
                val_loss=last['val_loss'], seconds=summary and summary['seconds'], start=start)


def on_the_ladder(runs):
    """the runs at their width's ladder step size (ladder_x × step_rule); each other one (a width's 1× runs where
    STEP_X moved it: the grid's) set aside with a line on stderr"""
    kept, aside = [], {}
    for r in runs:
        if r['x'] == ladder_x(r['mode'], r['n_embd']):
            kept.append(r)
        else:
            aside.setdefault((r['mode'], r['n_embd'], r['x']), []).append(r['run'])
    for (mode, d, x), names in aside.items():
        print(f"not on the ladder: {len(names)} runs of {mode} d={d} at {x:g}× the rule, where the ladder runs "
              f"{ladder_x(mode, d):g}× ({', '.join(names)})", file=sys.stderr)
    return kept


def merge_seeds(runs):
    """one point per (mode, n_embd, n_layer, steps): its runs at several seeds averaged (val loss, params, FLOPs as
    logged: the mean), each seed's val loss kept in 'losses' (the bootstrap draws from them), its runs in 'members'"""
    groups = {}
    for r in runs:
        groups.setdefault((r['mode'], r['n_embd'], r['n_layer'], r['iter']), []).append(r)
    points = []
    for g in groups.values():
        seeds = [r['seed'] for r in g]
        if len(set(seeds)) < len(seeds):  # the same run twice, or a run of another setting (a grid run) among them
            die(f"{', '.join(r['run'] for r in g)}: one point ({g[0]['mode']} d={g[0]['n_embd']}, {g[0]['iter']} "
                f"steps) with seed {max(seeds, key=seeds.count)} more than once")
        p = dict(g[0], members=g, seeds=seeds, losses=np.array([r['val_loss'] for r in g]))
        points.append(dict(p, **{k: float(np.mean([r[k] for r in g])) for k in (
            'val_loss', 'params', 'flops_per_token', 'train_flops', 'budget')}))
    return points


def seed_draw(losses, rng):
    """each point's loss drawn from its seeds: the mean of as many of them drawn with replacement as it has (the
    bootstrap's share of the seed spread); with one seed each, the losses themselves and no draw from rng"""
    if all(len(s) == 1 for s in losses):
        return np.array([s[0] for s in losses], float)
    return np.array([rng.choice(s, len(s)).mean() for s in losses])


def group_budgets(points):
    """the points at each budget: runs within BUDGET_TOL of each other in nominal training FLOPs ('budget': the
    steps × their start shape's FLOPs/token, as logged for every shape that does not shrink; tsvd's logged FLOPs are
    below it, by what its rank shed); {geometric mean of the nominal FLOPs: points}"""
    groups = [[points[i] for i in g] for g in budget_groups([p['budget'] for p in points])]
    return {float(np.exp(np.mean([np.log(p['budget']) for p in g]))): g for g in groups}


def budget_groups(B):
    """indices of the runs at each budget, cheapest first: runs within BUDGET_TOL of each other in nominal FLOPs B"""
    groups = []
    for i in np.argsort(B, kind='stable'):
        if groups and B[i] <= B[groups[-1][0]] * BUDGET_TOL:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def budget_best(B, L):
    """indices of each budget's best point, the frontier's points: runs within BUDGET_TOL of each other in nominal FLOPs
    (B) share a budget. Not the lower envelope of single runs: a budget's runs differ in FLOPs by up to a step's worth
    (steps are whole), so its cheapest run would join that envelope whatever its loss and pull the frontier up."""
    return np.array([g[int(np.argmin(np.asarray(L)[g]))] for g in budget_groups(B)], int)


def frontier_draw(C, B, S, rng):
    """one bootstrap draw of the frontier's points: each point's loss drawn from its seeds, each budget's best of them,
    the budgets resampled with replacement; (C, L) of the draw, or None with fewer than 3 distinct budgets"""
    L = seed_draw(S, rng)
    best = budget_best(B, L)
    e = best[rng.integers(len(best), size=len(best))]
    return (C[e], L[e]) if len(np.unique(C[e])) >= 3 else None


def fit_frontier(C, L):
    """(E, A, α) of L = E + A·(C/C_REF)^−α, least squares in L: for each E on a grid below min L, A and α are the
    linear least squares of log(L − E) on log C; a finer grid around the best E refines it"""
    C, L = np.asarray(C, float), np.asarray(L, float)
    x = np.log(C / C_REF)
    X = np.stack([np.ones_like(x), -x], 1)

    def at(E):
        (logA, alpha), *_ = np.linalg.lstsq(X, np.log(L - E), rcond=None)
        return float(((E + np.exp(logA) * np.exp(-alpha * x) - L) ** 2).sum()), (E, float(np.exp(logA)), float(alpha))

    top = L.min() * (1 - 1e-4)
    grid = np.linspace(0, top, 400)
    best = min(grid, key=lambda E: at(E)[0])
    step = grid[1] - grid[0]
    return min((at(E) for E in np.linspace(max(0, best - step), min(top, best + step), 101)), key=lambda t: t[0])[1]


def frontier_loss(fit, C):
    E, A, alpha = fit
    return E + A * (np.asarray(C) / C_REF) ** -alpha


def isoflop_fit(N, L):
    """(N_opt, L at N_opt) of the quadratic in log10 N through the best size and up to two on each side of it (the
    curve is not a parabola far from its minimum); None if it has no minimum. A vertex outside the sizes is not
    measured, only extrapolated: it is held within half a decade of them (the tables call it an edge)."""
    order = np.argsort(N)
    N, L = np.asarray(N, float)[order], np.asarray(L, float)[order]
    k = int(np.argmin(L))
    N, L = N[max(0, k - 2):k + 3], L[max(0, k - 2):k + 3]
    if len(np.unique(N)) < 3:  # a bootstrap draw that repeats sizes: no parabola to fit
        return None
    a, b, c = np.polyfit(np.log10(N), L, 2)
    if a <= 0:
        return None
    lo, hi = np.log10(min(N)) - 0.5, np.log10(max(N)) + 0.5
    x = float(np.clip(-b / (2 * a), lo, hi))
    return float(10 ** x), float(np.polyval((a, b, c), x))


def at_bound(fit, L):
    """why a frontier fit is degenerate, or '': fit_frontier searches E in [0, min L) only, and an E on either end
    means the points fix no loss floor: E, A and α then trade off along a ridge, and none of them alone means much"""
    E, top = fit[0], float(np.min(L)) * (1 - 1e-4)
    return 'E at its bound 0' if E <= 0 else 'E at its bound, the lowest loss' if E >= top * (1 - 1e-12) else ''


def held_out_check(C, L, top, resamples, rng, losses=None, budget=None, fit_below=None):
    """the frontier fit refitted without its top budget (points whose nominal budget, default C, is below top /
    BUDGET_TOL; fit_below: below that budget instead), its prediction against the measured best loss at top, at the
    FLOPs that point logged; the interval is the 90% bootstrap of that prediction (frontier_draw of the lower points,
    refit). None with fewer than 3 lower budgets or no point at top."""
    C, L = np.asarray(C, float), np.asarray(L, float)
    losses = [[v] for v in L] if losses is None else losses
    B = C if budget is None else np.asarray(budget, float)
    low, at_top = B < (fit_below or top) / BUDGET_TOL, abs(np.log(B / top)) < np.log(BUDGET_TOL)
    Cl, Ll, Bl, Sl = C[low], L[low], B[low], [s for s, k in zip(losses, low) if k]
    env = budget_best(Bl, Ll)
    if len(np.unique(Cl[env])) < 3 or not at_top.any():
        return None
    fit = fit_frontier(Cl[env], Ll[env])
    at = C[at_top][np.argmin(L[at_top])]  # the FLOPs the best point at top spent (tsvd's: below its budget)
    pred, measured = float(frontier_loss(fit, at)), float(L[at_top].min())
    draws = (frontier_draw(Cl, Bl, Sl, rng) for _ in range(resamples))
    preds = [float(frontier_loss(fit_frontier(*d), at)) for d in draws if d]
    iv = interval(preds)
    within = iv[0] - 1e-9 <= measured <= iv[1] + 1e-9
    hits = within and abs(pred - measured) <= HELD_OUT_TOL
    degenerate = at_bound(fit, Ll[env])
    return dict(fit=fit, pred=pred, measured=measured, error=pred - measured, interval=iv, within=within, n=len(preds),
                degenerate=degenerate, hits=hits, law=hits and not degenerate)


# Approach 3 (Hoffmann et al. 2022): L(N, D) = E + A/N^α + B/D^β over every point of a mode, fitted as they did: a
# Huber loss (δ = 1e-3) on log L, E, A, B log-parametrised, from a grid of starts; here α, β = 3·sigmoid(u), so a
# fit is degenerate when an exponent sits on 0 or 3 or E on 0. Compute-optimal: N_opt ∝ C^(β/(α+β)),
# D_opt ∝ C^(α/(α+β)).
HUBER_DELTA = 1e-3
EXP_BOUND = 3.0
N_REF, D_REF = 1e6, 1e7  # A and B are fitted as the loss terms at these N and D (better conditioned), then rescaled
CHECK_RESAMPLES = 200  # bootstrap resamples of the held-out check and of Approach 3 (at most --resamples)


def _parametric_batch(N, D, L, weights, starts, iters=500):
    """every row of starts (e, a, b, u_α, u_β) fitted to the points with its row of weights (bootstrap counts) and of
    L if L has rows (seed draws), all at once: the rows are independent, so L-BFGS on their summed objective fits each;
    (params, objective per row)"""
    import torch
    x = torch.tensor(np.log(np.asarray(N, float) / N_REF))
    y = torch.tensor(np.log(np.asarray(D, float) / D_REF))
    t = torch.tensor(np.log(np.asarray(L, float)))
    w = torch.tensor(np.asarray(weights, float))
    theta = torch.tensor(np.asarray(starts, float), requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=iters, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=20, line_search_fn='strong_wolfe')

    def objective():
        e, a, b, ua, ub = theta.unbind(1)
        al, be = EXP_BOUND * torch.sigmoid(ua), EXP_BOUND * torch.sigmoid(ub)
        pred = torch.logsumexp(torch.stack([e[:, None].expand(-1, t.shape[-1]), a[:, None] - al[:, None] * x,
                                            b[:, None] - be[:, None] * y]), 0)
        return (w * torch.nn.functional.huber_loss(pred, t.expand_as(pred), reduction='none',
                                                   delta=HUBER_DELTA)).sum(1)

    def closure():
        opt.zero_grad()
        loss = objective().sum()
        loss.backward()
        return loss

    with torch.random.fork_rng():
        opt.step(closure)
    with torch.no_grad():
        return theta.detach().numpy().copy(), objective().numpy().copy()


def _unpack(th):
    e, a, b, ua, ub = (float(v) for v in th)
    al, be = EXP_BOUND / (1 + math.exp(-ua)), EXP_BOUND / (1 + math.exp(-ub))
    return dict(E=math.exp(e), A=math.exp(a) * N_REF ** al, B=math.exp(b) * D_REF ** be, alpha=al, beta=be,
                a=be / (al + be), b=al / (al + be))


def _starts(L):
    """the grid of starts: E at ½ or 0.9 of the lowest loss, α and β each 0.2, 0.5 or 1"""
    L, out = np.asarray(L, float), []
    for E in (0.5 * L.min(), 0.9 * L.min()):
        for al in (0.2, 0.5, 1.0):
            for be in (0.2, 0.5, 1.0):
                out.append([math.log(E), math.log(0.3 * (L.mean() - E)), math.log(0.5 * (L.mean() - E)),
                            math.log(al / (EXP_BOUND - al)), math.log(be / (EXP_BOUND - be))])
    return np.array(out)


def parametric_degenerate(p):
    """why an Approach 3 fit is degenerate, or '': a parameter on a bound of its search"""
    why = []
    if p['E'] < 0.01:
        why.append('E at its bound 0')
    for k in ('alpha', 'beta'):
        if not 0.01 < p[k] < EXP_BOUND - 0.01:
            why.append(f"{'α' if k == 'alpha' else 'β'} at its bound {0 if p[k] <= 0.01 else EXP_BOUND:g}")
    return ', '.join(why)


def fit_parametric(N, D, L, resamples=0, rng=None, losses=None):
    """Approach 3 on points (N params, D tokens, L loss): the best of the grid of starts, and (resamples > 0) the
    bootstrap over points (each one's loss drawn from its seeds' losses), each resample started from the central fit
    and two of the grid's starts, the best kept"""
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    starts = _starts(L)
    th, obj = _parametric_batch(N, D, L, np.ones((len(starts), len(L))), starts)
    best = th[int(np.argmin(obj))]
    out = dict(_unpack(best), boot=[])
    out['degenerate'] = parametric_degenerate(out)
    if resamples and len(L) >= 6:
        picks = [best, starts[4], starts[13]]  # the central fit; α = β = 0.5 at either E
        w = np.stack([np.bincount(rng.integers(len(L), size=len(L)), minlength=len(L)) for _ in range(resamples)])
        Ls = np.stack([seed_draw([[v] for v in L] if losses is None else losses, rng) for _ in range(resamples)])
        th, obj = _parametric_batch(N, D, np.repeat(Ls, len(picks), 0), np.repeat(w, len(picks), 0),
                                    np.tile(np.array(picks), (resamples, 1)))
        k = np.argmin(obj.reshape(resamples, len(picks)), 1)
        out['boot'] = [_unpack(th[r * len(picks) + k[r]]) for r in range(resamples)]
    return out


def slope(C, Y):
    """exponent of Y ∝ C^slope (least squares in log-log)"""
    return float(np.polyfit(np.log(C), np.log(Y), 1)[0])


def interval(xs):
    return (float(np.percentile(xs, 5)), float(np.percentile(xs, 95))) if len(xs) else (math.nan, math.nan)


def mode_fits(points, budgets, resamples, rng):
    """everything fitted for one mode: frontier (E, A, α) and its bootstrap, N_opt and D_opt per budget, exponents.
    The frontier is fitted to each budget's best point (budget_best); its bootstrap draws frontier_draw's."""
    C = np.array([p['train_flops'] for p in points], float)
    L = np.array([p['val_loss'] for p in points])
    N = np.array([p['params'] for p in points], float)
    S = [p['losses'] for p in points]
    sizes = sorted({(p['params'], p['flops_per_token']) for p in points})  # FLOPs/token of N: quadratic in log-log
    fpt_of = np.poly1d(np.polyfit(np.log([n for n, _ in sizes]), np.log([f for _, f in sizes]),
                                  min(2, len(sizes) - 1))) if len(sizes) > 1 else None
    out = dict(C=C, L=L, N=N, S=S, B=np.array([p['budget'] for p in points]), fit=None, boot=[], opt={}, boot_exp=[],
               degenerate='', held=set())
    env = budget_best(out['B'], L)
    if len(np.unique(C[env])) >= 3:
        out['fit'] = fit_frontier(C[env], L[env])
        out['degenerate'] = at_bound(out['fit'], L[env])
        draws = (frontier_draw(C, out['B'], S, rng) for _ in range(resamples))
        out['boot'] = [fit_frontier(*d) for d in draws if d]
    groups = {b: np.array([k for k, p in enumerate(points) if any(p is q for q in g)], int)
              for b, g in budgets.items()}
    groups = {b: g for b, g in groups.items() if len(np.unique(N[g])) >= 3}

    def optima(pick, L):
        found = {}
        for b, g in groups.items():
            idx = pick(g)
            fit = isoflop_fit(N[idx], L[idx]) if len(np.unique(N[idx])) >= 3 else None
            if fit:
                found[b] = fit
        return found

    out['opt'] = optima(lambda g: g, L)
    for b, (n_opt, _) in out['opt'].items():
        lo, hi = N[groups[b]].min(), N[groups[b]].max()
        out['opt'][b] = (n_opt, out['opt'][b][1], b / math.exp(fpt_of(math.log(n_opt))), lo <= n_opt <= hi)
        if not lo * 10 ** -0.5 * 1.001 < n_opt < hi * 10 ** 0.5 / 1.001:  # isoflop_fit's limit: no minimum near
            out['held'].add(b)
    if len(out['opt']) >= 3:
        bs = sorted(out['opt'])
        out['exp'] = (slope(bs, [out['opt'][b][0] for b in bs]), slope(bs, [out['opt'][b][2] for b in bs]))
        for _ in range(resamples):  # resample the points within each budget, refit every quadratic
            Lr = seed_draw(S, rng)
            found = optima(lambda g: rng.choice(g, size=len(g)), Lr)
            if len(found) >= 3:
                bs = sorted(found)
                ns = [found[b][0] for b in bs]
                out['boot_exp'].append((slope(bs, ns), slope(bs, [b / math.exp(fpt_of(math.log(n))) for b, n in
                                                                  zip(bs, ns)])))
    return out


def stream(seed, *modes):
    """the random numbers of one mode's (or one pair's) bootstrap: its own stream, so that adding a mode to the
    analysis never moves another's intervals"""
    return np.random.default_rng([seed, *(list(lowrank.MODES).index(m) for m in modes)])


def check_fits(points, budgets, fits, resamples, seed):
    """the checks of issue 29, into each mode's fits (their own random stream: the fits above are unchanged): the
    frontier fit held out at the top budget ('held_out'), the first decade's fit at each budget past it ('decade': the
    first ladder's extrapolation) and Approach 3 over every point ('parametric')"""
    past = sorted(b for b in budgets if b > FIRST_DECADE[1] * BUDGET_TOL)
    for mode, f in fits.items():
        mine, rng = [p for p in points if p['mode'] == mode], stream(seed, mode)
        f['held_out'] = held_out_check(f['C'], f['L'], max(budgets), resamples, rng, f['S'], f['B'])
        f['decade'] = {b: held_out_check(f['C'], f['L'], b, resamples, rng, f['S'], f['B'], past[0]) for b in past}
        f['parametric'] = fit_parametric([p['params'] for p in mine], [p['tokens'] for p in mine], f['L'], resamples,
                                         rng, f['S']) if len(mine) >= 6 else None


def not_a_law(f):
    """why a mode's frontier is not a law, or '': its fit degenerate, or its held-out prediction off"""
    why = [f"fit degenerate: {f['degenerate']}"] if f['degenerate'] else []
    h = f.get('held_out')
    if h and h['degenerate']:
        why.append(f"held-out fit degenerate: {h['degenerate']}")
    if h and not h['hits']:
        why.append(f"misses its held-out budget by {h['error']:+.3f}")
    return '; '.join(why)


def gap_curves(fits, grid, ref='dense'):
    """per mode but ref (and but dense, against muon: measured_gaps' pairs): (central gap to ref on grid, 5th and 95th
    percentiles, Δ|gap| from the lowest to the highest measured budget with its interval); the bootstrap pairs each
    mode's i-th resample with ref's i-th"""
    base, out = fits.get(ref), {}
    if not base or not base['fit']:
        return out
    for mode, f in fits.items():
        if mode in (ref, 'dense') or not f['fit']:
            continue
        lo, hi = max(f['C'].min(), base['C'].min()), min(f['C'].max(), base['C'].max())
        gaps = np.array([frontier_loss(a, grid) - frontier_loss(b, grid) for a, b in zip(f['boot'], base['boot'])])
        ends = np.array([abs(frontier_loss(a, [lo, hi]) - frontier_loss(b, [lo, hi])) for a, b in
                         zip(f['boot'], base['boot'])])
        change = ends[:, 1] - ends[:, 0] if len(ends) else np.array([])
        out[mode] = dict(gap=frontier_loss(f['fit'], grid) - frontier_loss(base['fit'], grid), measured=(lo, hi),
                         band=np.percentile(gaps, [5, 95], axis=0) if len(gaps) else None,
                         change=interval(change), flag=', '.join(  # a gap from a fit that is not a law says so
                             f"{m}'s fit not a law" for m, x in ((mode, f), (ref, base)) if not_a_law(x)))
    return out


def measured_gaps(budgets, modes, resamples, seed):
    """the gap between the best measured points, fit-free: per budget, each mode's lowest (seed-mean) loss minus
    dense's and minus dense + Muon's (pairs with a low-rank mode), its interval from each point's loss drawn from its
    seeds as seed_draw does (one seed each: no interval); [(label, {budget: (gap, interval)})]"""
    rows = []
    for ref in (m for m in ('dense', 'muon') if m in modes):
        for mode in (m for m in modes if m not in ('dense', ref)):
            cells, rng = {}, stream(seed, mode, ref)
            for b, g in sorted(budgets.items()):
                a, r = ([p for p in g if p['mode'] == m] for m in (mode, ref))
                if a and r:  # per resample, each side's best of its points' seed-mean draws
                    best = [np.min([rng.choice(p['losses'], (resamples, len(p['losses']))).mean(1) for p in ps], 0)
                            for ps in (a, r)]
                    gap = min(p['val_loss'] for p in a) - min(p['val_loss'] for p in r)
                    cells[b] = gap, interval(best[0] - best[1])
            rows.append((f"{mode} − {ref}", cells))
    return rows


def trend(change):
    lo, hi = change
    return 'grows' if lo > 0 else 'shrinks' if hi < 0 else 'holds (within the interval)' if lo == lo else '?'


# -----------------------------------------------------------------------------
# figures and tables

def pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def color(mode, k):
    return lowrank.MODES[mode].color if mode in lowrank.MODES and lowrank.MODES[mode].color else f'C{k}'


def fmt_fit(value, iv, spec='.3f'):
    return f"{value:{spec}} [{iv[0]:{spec}}, {iv[1]:{spec}}]"


def width_shades(points, colors):
    """{(mode, n_embd): (colour, marker size)}: the mode's colour, paler the narrower the width (the narrowest 70 %
    white), and a marker the bigger the wider"""
    from matplotlib.colors import to_rgb
    out = {}
    for mode, c in colors.items():
        widths = sorted({p['n_embd'] for p in points if p['mode'] == mode})
        for k, d in enumerate(widths):
            x = k / max(1, len(widths) - 1)
            out[mode, d] = tuple((1 - 0.7 * (1 - x)) * np.array(to_rgb(c)) + 0.7 * (1 - x)), 8 + 52 * x
    return out


def figure_frontier(points, fits, colors, out):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 6))
    shade = width_shades(points, colors)
    for mode, f in fits.items():
        mine = [p for p in points if p['mode'] == mode]
        ax.scatter(f['C'], f['L'], zorder=3, c=[shade[mode, p['n_embd']][0] for p in mine],
                   s=[shade[mode, p['n_embd']][1] for p in mine], edgecolors=colors[mode], linewidths=0.3)
        spread = [p for p in mine if len(p['losses']) > 1]  # the seeds' range
        if spread:
            ax.errorbar([p['train_flops'] for p in spread], [p['val_loss'] for p in spread], fmt='none', lw=0.7,
                        yerr=[[p['val_loss'] - p['losses'].min() for p in spread],
                              [p['losses'].max() - p['val_loss'] for p in spread]], ecolor=colors[mode], zorder=2)
        best = budget_best(f['B'], f['L'])  # the frontier's points, ringed
        ax.scatter(f['C'][best], f['L'][best], s=110, facecolors='none', edgecolors=colors[mode], linewidths=1.5,
                   zorder=4)
        if f['fit']:
            grid = np.geomspace(f['C'].min(), f['C'].max(), 100)
            E, A, alpha = f['fit']
            why = not_a_law(f)
            ax.plot(grid, frontier_loss(f['fit'], grid), '--' if why else '-', color=colors[mode], lw=2,
                    label=f"{mode}: E={E:.2f}, α={alpha:.2f}" + (
                        f"\n  degenerate: not a law ({f['degenerate']})" if f['degenerate'] else
                        f"\n  not a law: {why}" if why else ''))
            if f['boot']:
                band = np.percentile([frontier_loss(b, grid) for b in f['boot']], [5, 95], axis=0)
                ax.fill_between(grid, *band, color=colors[mode], alpha=0.15, lw=0)
        else:
            ax.plot([], [], 'o', color=colors[mode], label=f"{mode}: too few budgets to fit")
    for size, what in ((8, 'narrowest'), (60, 'widest')):
        ax.scatter([], [], s=size, c='0.6', edgecolors='0.3', linewidths=0.3, label=f"{what} width of a mode")
    ax.scatter([], [], s=110, facecolors='none', edgecolors='0.3', linewidths=1.5, label="a budget's best point")
    ax.set_xscale('log')
    ax.set_xlabel('training FLOPs (train_flops as logged)')
    ax.set_ylabel('final val loss (nats/char; the mean over seeds, bar: their range)')
    ax.set_title("Val loss against training compute: dots = points (bigger, darker = wider; ringed: each budget's best),"
                 "\nlines = frontier E + A·C^−α fitted to the ringed points (band: 90%; dashed: not a law)", fontsize=9)
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8, title='mode (fit)')
    fig.tight_layout()
    save_png(fig, os.path.join(out, 'loss_vs_flops.png'))
    plt.close(fig)


def figure_isoflop(points, budgets, fits, colors, out):
    plt = pyplot()
    modes = list(fits)
    cols = math.ceil(math.sqrt(len(modes) + 1))  # a panel per mode and one of the exponents, in a near-square grid
    rows = math.ceil((len(modes) + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 2.5, 4.4 * rows + 0.5), squeeze=False)
    axes = list(axes.ravel())
    for ax in axes[len(modes) + 1:]:
        ax.set_visible(False)
    axes = axes[:len(modes) + 1]
    shades = plt.cm.viridis(np.linspace(0, 0.85, len(budgets)))
    for ax, mode in zip(axes, modes):
        f = fits[mode]
        sizes = {}  # each width once, over its points' sizes (tsvd's differ by budget: its rank shrinks)
        for p in points:
            if p['mode'] == mode:
                sizes.setdefault(p['n_embd'], []).append(math.log(p['params']))
        for d, logn in sorted(sizes.items()):
            ax.text(math.exp(np.mean(logn)), 1.01, str(d), transform=ax.get_xaxis_transform(), ha='center',
                    va='bottom', fontsize=7)
        ax.text(0, 1.01, 'n_embd ', transform=ax.transAxes, ha='right', va='bottom', fontsize=7)
        for shade, b in zip(shades, sorted(budgets)):
            at = [p for p in budgets[b] if p['mode'] == mode]
            if not at:
                continue
            ax.plot([p['params'] for p in at], [p['val_loss'] for p in at], 'o', color=shade, ms=5,
                    label=f"C = {b:.2g}")
            n = np.array([p['params'] for p in at], float)
            if b in f['opt'] and len(np.unique(n)) >= 3:
                coef = np.polyfit(np.log10(n), [p['val_loss'] for p in at], 2)
                xs = np.linspace(np.log10(n.min()), np.log10(n.max()), 50)
                ax.plot(10 ** xs, np.polyval(coef, xs), '-', color=shade, lw=1.2)
                inside = f['opt'][b][3]  # a vertex outside the sizes run is extrapolated: a hollow star
                ax.plot(f['opt'][b][0], f['opt'][b][1], '*', color=shade, ms=13, mec='black' if inside else shade,
                        mew=0.6 if inside else 1.3, mfc=shade if inside else 'none')
                if b in f['held']:  # isoflop_fit's limit, not a minimum
                    ax.annotate('held at ½ decade', (f['opt'][b][0], f['opt'][b][1]), xytext=(-6, -14),
                                textcoords='offset points', fontsize=7, color=shade)
        ax.set_xscale('log')
        ax.set_xlabel('parameters N (embeddings included)')
        ax.set_ylabel('final val loss (nats/char)')
        ax.set_title(f"{mode}: isoFLOP curves (★ = N_opt)", fontsize=10, color=colors[mode], pad=14)
    handles = [plt.Line2D([], [], marker='o', color=s, label=f"budget C = {b:.2g} FLOPs")
               for s, b in zip(shades, sorted(budgets))]
    handles.append(plt.Line2D([], [], marker='*', ls='', ms=11, color='gray', mfc='none', mew=1.3,
                              label='hollow: N_opt outside the sizes run (extrapolated)'))
    fig.legend(handles=handles, loc='lower center', ncol=math.ceil(len(handles) / 2), fontsize=8, frameon=False)
    ax = axes[-1]
    for mode in modes:
        f = fits[mode]
        if not f['opt']:
            continue
        bs = sorted(f['opt'])
        exps = f.get('exp')
        for k, (ls, what) in enumerate((('-', 'N_opt'), ('--', 'D_opt'))):
            ys = [f['opt'][b][0 if k == 0 else 2] for b in bs]
            label = f"{mode} {what}" + (f" ∝ C^{exps[k]:.2f}" if exps else '')
            ax.plot(bs, ys, ls, marker='os'[k], color=colors[mode], label=label, markevery=[
                i for i, b in enumerate(bs) if f['opt'][b][3]])
            ax.plot([b for b in bs if not f['opt'][b][3]], [y for b, y in zip(bs, ys) if not f['opt'][b][3]],
                    'os'[k], color=colors[mode], mfc='white')  # extrapolated vertices: hollow
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('training FLOPs C')
    ax.set_ylabel('N_opt (params) — solid;  D_opt (tokens) — dashed')
    ax.set_title(f"N_opt(C), D_opt(C); paper: C^{PAPER[0]}, C^{PAPER[1]}\n(hollow: extrapolated vertex)",
                 fontsize=10, pad=14)
    if ax.get_legend_handles_labels()[0]:  # beside the panel, off the lines
        ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1))
    fig.tight_layout(rect=(0, 0.1 / rows, 1, 1))
    save_png(fig, os.path.join(out, 'isoflop.png'))
    plt.close(fig)


def figure_gap(gaps, measured, colors, grid, out):
    """a panel per reference (dense, dense + Muon): each mode's gap to it at equal FLOPs, from the fitted frontiers
    (lines) and fit-free from the best measured points (dots, bars: their seed interval), which hold whatever a fit"""
    plt = pyplot()
    refs = [r for r in gaps if gaps[r]] or ['dense']
    fig, axes = plt.subplots(len(refs), 1, figsize=(10, 4.2 * len(refs)), squeeze=False)
    for ax, ref in zip(axes[:, 0], refs):
        curves = gaps.get(ref, {})
        ax.axhline(0, color='black', lw=0.8)
        ax.axvspan(max(g['measured'][1] for g in curves.values()) if curves else grid[-1], grid[-1], color='0.92',
                   lw=0)
        if curves:
            ax.text(grid[-1], 0.98, 'extrapolated ', transform=ax.get_xaxis_transform(), ha='right', va='top',
                    fontsize=9, color='0.35')
        for mode, g in curves.items():
            lo, hi = g['measured']
            inside = (grid >= lo * 0.999) & (grid <= hi * 1.001)
            law = not g['flag']  # a fit that is not a law is drawn dotted over the budgets run, never extended
            ax.plot(grid[inside], g['gap'][inside], '-' if law else ':', color=colors[mode], lw=2,
                    label=f"{mode} − {ref}" + (f"\n  ({g['flag']}: dotted, not extended)" if g['flag'] else ''))
            for part in (grid <= lo * 1.001, grid >= hi * 0.999) if law else ():
                if part.sum() > 1:
                    ax.plot(grid[part], g['gap'][part], '--', color=colors[mode], lw=1.5)
            if g['band'] is not None:
                shown = np.ones_like(inside) if law else inside
                ax.fill_between(grid[shown], *(edge[shown] for edge in g['band']), color=colors[mode], alpha=0.15,
                                lw=0)
        for label, cells in measured:
            mode, r = label.split(' − ')
            if r == ref and cells:
                b = np.array(sorted(cells))
                gap = np.array([cells[x][0] for x in b])
                iv = np.array([cells[x][1] for x in b])
                err = np.abs(np.where(np.isnan(iv), gap[:, None], iv) - gap[:, None]).T
                ax.errorbar(b, gap, yerr=err, fmt='o', color=colors[mode], mec='black', ms=6, capsize=3, zorder=3)
        ax.plot([], [], 'ko', mec='black', label='best measured minus best measured\n  (bar: 90% over seeds)')
        ax.plot([], [], 'k--', lw=1.5, label='extrapolated (beyond the measured budgets)')
        ax.set_xscale('log')
        ax.set_xlabel('training FLOPs C')
        ax.set_ylabel(f'val loss − {ref} val loss (nats/char)')
        name = 'dense + Muon' if ref == 'muon' else 'dense + AdamW'
        ax.set_title(f'Gap to {name} at equal FLOPs (> 0: worse)\n'
                     'lines: fitted frontiers (band: 90%); dots: best measured points', fontsize=10)
        ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    save_png(fig, os.path.join(out, 'gap.png'))
    plt.close(fig)


def read_bench(path):
    """{(mode, width, rank): sampling tokens/s} from a bench.py --csv file"""
    with open(path) as f:
        speeds = {(r['mode'], int(r['width']), int(r['rank'])): float(r['gen_tok_s'])
                  for r in csv.DictReader(f) if r.get('gen_tok_s')}
    if not speeds:  # a table without them would only show '-'
        die(f"no sampling speeds (gen_tok_s) in {path}: not a bench.py --csv file of a run with --sample_tokens > 0")
    return speeds


def checks_table(fits, budgets):
    """ladder.md's lines for issue 29's checks: the held-out budget, Approach 3 beside Approach 2"""
    top = max(budgets)
    lines = [f"Held-out check: each mode's frontier refitted without its top budget (C = {top:.2g}), its prediction "
             "there against the measured best loss; interval: 90% bootstrap of the prediction (the lower points "
             f"resampled, {max((f['held_out']['n'] for f in fits.values() if f.get('held_out')), default=0)} "
             "times). A fit that is degenerate, or whose measured loss falls outside that interval or further than "
             f"{HELD_OUT_TOL} from the prediction, is not a law.\n",
             '| mode | predicted | measured | error (pred − meas) | prediction interval | measured within it '
             '| verdict |',
             '|---' * 7 + '|']
    for mode, f in fits.items():
        h = f.get('held_out')
        if not h:
            lines.append(f"| {mode} | - | - | - | - | - | too few budgets |")
            continue
        why = not_a_law(f)
        lines.append(f"| {mode} | {h['pred']:.4f} | {h['measured']:.4f} | {h['error']:+.4f} | "
                     f"[{h['interval'][0]:.4f}, {h['interval'][1]:.4f}] | {'yes' if h['within'] else 'NO'} | "
                     f"{'not a law (' + why + ')' if why else 'holds'} |")
    lines += ['', f"The first ladder's decade ({FIRST_DECADE[0]:.0e}–{FIRST_DECADE[1]:.0e}), whose fits its verdict "
              "extrapolated: each mode's frontier fitted on those budgets alone, its prediction at each budget past "
              "them against the measured best loss (as above).\n",
              '| mode | budget | predicted | measured | error (pred − meas) | prediction interval | verdict |',
              '|---' * 7 + '|']
    for mode, f in fits.items():
        for b, h in f.get('decade', {}).items():
            if h:
                why = '; '.join(filter(None, (f"fit degenerate ({h['degenerate']})" if h['degenerate'] else '',
                                              '' if h['hits'] else 'misses')))
                lines.append(f"| {mode} | {b:.2g} | {h['pred']:.4f} | {h['measured']:.4f} | {h['error']:+.4f} | "
                             f"[{h['interval'][0]:.4f}, {h['interval'][1]:.4f}] | {why or 'holds'} |")
    lines += ['', 'Approach 3 beside Approach 2: L(N, D) = E + A/N^α + B/D^β fitted over every point of a mode (N '
              'params, D tokens = C / FLOPs per token; Huber loss δ = 1e-3 on log L, L-BFGS from 18 starts, as '
              'Hoffmann et al.); compute-optimal N_opt ∝ C^a with a = β/(α+β), D_opt ∝ C^b with b = α/(α+β). '
              'Approach 2: the isoFLOP exponents above. 90% bootstrap intervals over the points.\n',
              '| mode | E | α | β | Approach 3: a | Approach 3: b | Approach 2: a | Approach 2: b | verdict |',
              '|---' * 9 + '|']
    for mode, f in fits.items():
        p = f.get('parametric')
        if not p:
            continue
        boot = {k: interval([q[k] for q in p['boot']]) if p['boot'] else (math.nan, math.nan)
                for k in ('E', 'alpha', 'beta', 'a', 'b')}
        exps = np.array(f['boot_exp']) if f['boot_exp'] else np.empty((0, 2))
        ab = [fmt_fit(f['exp'][k], interval(exps[:, k])) for k in range(2)] if f.get('exp') else ['-'] * 2
        lines.append(f"| {mode} | " + ' | '.join(fmt_fit(p[k], boot[k]) for k in ('E', 'alpha', 'beta', 'a', 'b'))
                     + ' | ' + ' | '.join(ab) + ' | '
                     + (f"not a law (degenerate: {p['degenerate']})" if p['degenerate'] else 'fit') + ' |')
    lines.append(f"| paper | | | | {PAPER[0]} | {PAPER[1]} | | | |\n")
    return lines


def cpu_time(runs, budgets):
    """ladder.md's line on CPU time, from the runs' summaries: a branch's seconds count from its parent's start, so
    its own share is (steps − branch step) / steps of them (about: at the same seconds per step), and they are what a
    straight WSD run to its budget takes, which is how a fresh clone reproduces one budget (at one seed: a point's
    runs at several seeds count as their mean) without the long runs"""
    timed = [r for r in runs if r['seconds']]
    own = sum(r['seconds'] * (r['iter'] - r['start']) / r['iter'] for r in timed)
    straight = {b: sum(np.mean([r['seconds'] for r in p['members'] if r['seconds']] or [0]) for p in g)
                for b, g in budgets.items()}
    return (f"CPU time, as logged (1-thread runs, two at a time on 2 cores): the {len(timed)} runs with a summary took "
            f"{own / 3600:.1f} core-hours (each branch from its branch point; the step-size grid not included). One "
            f"budget alone at one seed from a fresh clone, each of its points a straight WSD run: " + ', '.join(
                f"C = {b:.2g} {t / 3600:.1f}" for b, t in sorted(straight.items())) + " core-hours (half that in hours "
            "on 2 cores)" + (f"; {len(runs) - len(timed)} runs have no summary" if len(timed) < len(runs) else '') + '.')


def tables(runs, points, budgets, fits, gaps, measured, gen, out):
    seeds = {m: np.unique([len(p['losses']) for p in points if p['mode'] == m], return_counts=True) for m in fits}
    past = {m: [p['tokens'] / TRAIN_TOKENS for p in points if p['mode'] == m and p['tokens'] > FRESH_EPOCHS *
                TRAIN_TOKENS * 1.001] for m in fits}
    short = [p['train_flops'] / p['budget'] for p in points if p['train_flops'] < p['budget'] * 0.999]
    lines = [f"Points: {len(runs)} runs at {len(points)} points (mode, width, budget); seeds per point: "
             + '; '.join(f"{m} " + ', '.join(f"{c} with {n}" for n, c in zip(*seeds[m])) for m in fits)
             + ". A point's loss is the mean over its seeds; every interval is a 90% bootstrap that resamples the "
             "points and draws each point's loss from its seeds. Params: all, embeddings included; C: training FLOPs "
             f"as logged. Points past {FRESH_EPOCHS} epochs (data-constrained; none past {MAX_EPOCHS}): "
             + ', '.join(f"{m} {len(e)}" + (f" (up to {max(e):.1f})" if e else '') for m, e in past.items()) + '.'
             + (f" Budgets group points by nominal FLOPs (steps × their start shape's FLOPs/token): {len(short)} "
                f"points spent less as logged (a shrinking rank), {min(short):.0%}–{max(short):.0%} of theirs."
                if short else '') + '\n',
             f"| mode | E | A (loss above E at C = {C_REF:.0e}) | α | N_opt ∝ C^a: a | D_opt ∝ C^b: b |",
             '|---|---|---|---|---|---|']
    for mode, f in fits.items():
        boot = np.array(f['boot']) if f['boot'] else np.empty((0, 3))
        fit = [fmt_fit(f['fit'][k], interval(boot[:, k])) for k in range(3)] if f['fit'] else ['-'] * 3
        exps = np.array(f['boot_exp']) if f['boot_exp'] else np.empty((0, 2))
        ab = [fmt_fit(f['exp'][k], interval(exps[:, k])) for k in range(2)] if f.get('exp') else ['-'] * 2
        flag = f" (degenerate fit: {f['degenerate']})" if f['degenerate'] else ''
        lines.append(f"| {mode}{flag} | " + ' | '.join(fit + ab) + ' |')
    lines.append(f"| paper | | | | {PAPER[0]} | {PAPER[1]} |\n| Chinchilla | | | | ≈ 0.5 | ≈ 0.5 |\n")
    if any(f['degenerate'] for f in fits.values()):
        lines.append('A degenerate fit has E on a bound of its search, [0, the lowest loss): the points fix no loss '
                     'floor, so E, A and α trade off along a ridge and none of them alone means much (its curve still '
                     'follows the points; the isoFLOP exponents a and b do not use it).\n')
    lines += checks_table(fits, budgets)
    lines += ['D_opt = C / (training FLOPs per token of an N_opt model: model.flops_per_token of the sizes run, '
              'quadratic in log-log), the repo\'s own count, not C / 6N.\n',
              '| mode | budget C | N_opt | D_opt (tokens) | loss at N_opt | inside the sizes run |', '|---' * 6 + '|']
    for mode, f in fits.items():
        for b in sorted(f['opt']):
            n, loss, d, inside = f['opt'][b]
            edge = 'NO (edge; held half a decade past the sizes run)' if b in f['held'] else 'NO (edge)'
            lines.append(f"| {mode} | {b:.3g} | {n / 1e6:.3f}M | {d / 1e6:.2f}M | {loss:.4f} | "
                         f"{'yes' if inside else edge} |")
    if any(gaps.values()):
        lines += ['', '| gap at equal FLOPs | ' + ' | '.join(f"C = {b:.2g}" for b in sorted(budgets))
                  + ' | lowest → highest budget |', '|---|' + '---|' * (len(budgets) + 1)]
    for ref, curves in gaps.items():
        for mode, g in curves.items():
            f, d = fits[mode], fits[ref]
            cells = []
            for b in sorted(budgets):
                boot = [frontier_loss(x, b) - frontier_loss(y, b) for x, y in zip(f['boot'], d['boot'])]
                cells.append(fmt_fit(frontier_loss(f['fit'], b) - frontier_loss(d['fit'], b), interval(boot), '+.3f'))
            flag = '; '.join(f"{m}'s fit not a law: {not_a_law(x)}" for m, x in ((mode, f), (ref, d)) if not_a_law(x))
            flag = f" ({flag})" if flag else ''
            lines.append(f"| {mode} − {ref}{flag} | " + ' | '.join(cells) + f" | {trend(g['change'])} (Δ|gap| "
                         f"[{g['change'][0]:+.3f}, {g['change'][1]:+.3f}]) |")
    if measured:
        lines += ['', "Measured gap, fit-free: at each (nominal) budget a mode's best point (its seeds' mean) minus the "
                  "reference's best; interval: 90% over each point's loss drawn from its seeds (none with one seed).\n",
                  '| best minus best | ' + ' | '.join(f"C = {b:.2g}" for b in sorted(budgets)) + ' |',
                  '|---|' + '---|' * len(budgets)]
        for label, cells in measured:
            lines.append(f"| {label} | " + ' | '.join(
                '-' if b not in cells else f"{cells[b][0]:+.3f}" if cells[b][1][1] - cells[b][1][0] < 1e-12 else
                fmt_fit(*cells[b], '+.3f') for b in sorted(budgets)) + ' |')
    top = max(budgets)
    lines += ['', f"Inference at equal quality: the loss of each mode's best run at the top budget (C = {top:.2g}); "
                  "per mode, the smallest model (any budget) that reaches it.\n",
              '| target | mode | smallest reaching it | params | MFLOPs/token | sampling tokens/s |', '|---' * 6 + '|']
    for target_mode in fits:
        at_top = [p for p in budgets[top] if p['mode'] == target_mode]
        if not at_top:
            continue
        target = min(p['val_loss'] for p in at_top)
        for mode in fits:
            reach = [p for p in points if p['mode'] == mode and p['val_loss'] <= target]
            if not reach:
                lines.append(f"| {target_mode} {target:.4f} | {mode} | none | | | |")
                continue
            p = min(reach, key=lambda p: p['params'])
            tok_s = gen.get((p['mode'], p['n_embd'], p['rank']))
            lines.append(f"| {target_mode} {target:.4f} | {mode} | {p['run']} (d={p['n_embd']}) | "
                         f"{p['params'] / 1e6:.3f}M | {p['flops_per_token'] / 1e6:.2f} | "
                         f"{f'{tok_s:,.0f}' if tok_s else '-'} |")
    lines += ['', cpu_time(runs, budgets)]
    text = '\n'.join(lines) + '\n'
    with open(os.path.join(out, 'ladder.md'), 'w') as fh:
        fh.write(text)
    keys = ['run', 'mode', 'seed', 'n_embd', 'n_layer', 'rank', 'iter', 'params', 'flops_per_token', 'train_flops',
            'tokens', 'val_loss']
    with open(os.path.join(out, 'points.csv'), 'w', newline='') as fh:  # every run, the budget of its point
        writer = csv.DictWriter(fh, fieldnames=keys + ['budget'])
        writer.writeheader()
        writer.writerows(dict({k: r[k] for k in keys}, budget=f"{b:.4g}") for b, g in budgets.items() for p in g
                         for r in p['members'])
    return text


def analyze(paths, opts):
    if not paths:
        die("usage: ladder.py analyze RUN_DIR|LOG.jsonl ... --out=DIR [--bench=CSV] [--resamples=N]")
    if not opts['out']:
        die("analyze needs --out=DIR")
    resamples = opts['resamples']
    if resamples < 1:
        die(f"--resamples must be a positive integer, got {resamples!r}")
    runs = on_the_ladder([read(read_point, p) for p in paths])
    points = merge_seeds(runs)
    gen = read(read_bench, opts['bench'], what='bench.py CSV') if opts['bench'] else {}
    if unwritable(opts['out'], folder=True):
        die(f"--out: {unwritable(opts['out'], folder=True)}")
    budgets = group_budgets(points)
    modes = [m for m in lowrank.MODES if any(p['mode'] == m for p in points)]
    colors = {m: color(m, k) for k, m in enumerate(lowrank.MODES) if m in modes}
    fits = {m: mode_fits([p for p in points if p['mode'] == m], budgets, int(resamples), stream(0, m))
            for m in modes}
    check_fits(points, budgets, fits, min(int(resamples), CHECK_RESAMPLES), 1)
    grid = np.geomspace(min(budgets), max(budgets) * 10, 120)
    gaps = {ref: gap_curves(fits, grid, ref) for ref in ('dense', 'muon')}
    measured = measured_gaps(budgets, modes, int(resamples), 2)
    figure_frontier(points, fits, colors, opts['out'])
    figure_isoflop(points, budgets, fits, colors, opts['out'])
    figure_gap(gaps, measured, colors, grid, opts['out'])
    print(tables(runs, points, budgets, fits, gaps, measured, gen, opts['out']), end='')
    files = ('loss_vs_flops.png', 'isoflop.png', 'gap.png', 'ladder.md', 'points.csv')
    print(f"wrote {', '.join(os.path.join(opts['out'], f) for f in files)}")


def main(argv):
    args = [a for a in argv if not a.startswith('-')]
    opts = parse_args(KEYS, [a for a in argv if a.startswith('-')], notes=USAGE, source=__file__)
    if not args or args[0] not in COMMANDS:
        die(USAGE)
    unknown = set(opts) - COMMANDS[args[0]]
    if unknown:
        die(f"unknown option(s) for {args[0]}: {', '.join(sorted(unknown))}")
    if args[0] not in ('analyze', 'third') and args[1:]:
        die(f"{args[0]} takes no runs, got {args[1]!r}")
    opts = {**KEYS, **opts}
    modes = opts['modes'].split(',')
    if not set(modes) <= set(WIDTHS):
        die(f"--modes must be from {', '.join(WIDTHS)}")
    if args[0] == 'runs':
        if opts['stage'] not in ('long', 'branch', 'grid'):
            die("runs needs --stage=long|branch|grid")
        seeds = opts['seeds'].split(',')
        if not all(s.isdigit() for s in seeds) or len(set(seeds)) < len(seeds):
            die(f"--seeds must be distinct non-negative integers, comma-separated, got {opts['seeds']!r}")
        print('\n'.join(run_lines(opts['stage'], modes, tuple(map(int, seeds)))))
    elif args[0] == 'grid':
        print(grid_table(modes))
    elif args[0] == 'third':
        if not args[1:]:
            die("usage: ladder.py third RUN_DIR|LOG.jsonl ... [--modes=a,b]")
        print('\n'.join(third_seed_lines(merge_seeds(on_the_ladder([read(read_point, p) for p in args[1:]])),
                                          modes)))
    elif args[0] == 'speeds':
        why = unwritable(opts['out']) if opts['out'] else 'speeds needs --out=CSV'
        if why:
            die(f"--out: {why}")
        speeds(opts)
    else:
        plan(opts) if args[0] == 'plan' else analyze(args[1:], opts)


if __name__ == '__main__':
    main(sys.argv[1:])
