"""
From a new mode to a fair verdict in one command: each mode of --modes tuned by the repo's protocol on one axis, then
a report against a reference mode.

    python experiments/compare.py --modes=cola,spectron,muon --axis=flops     # the default config: ~6 h of 2 cores
    python experiments/compare.py --modes=cola,spectron,muon --axis=flops --extend=6 --n_layer=1 --n_embd=32 \\
        --n_head=2 --block_size=16 --rank=8 --max_iters=60 --warmup_iters=5 --eval_interval=20 --eval_iters=5 \\
        --input_file=tiny.txt     # a tiny config (tiny.txt: TinyShakespeare's first 40k characters): 29 runs, 2 min

The protocol (RESULTS.md, "How modes are compared"; METHODS.md §7): each mode trains at its own step size (its
registry step_size key: learning_rate, spectron_lr, muon_lr, ...), on a log grid of --grid values over a decade
centred on the value train.py derives for a fresh run (lowrank.MODES' defaults, η × √(256/n_embd)) or on the value
given (--learning_rate=3e-3 centres the modes whose step size it is, and is AdamW's for the rest of the others),
seed 1337, at full length. While the best value sits at an end, the grid is extended past that end (at most --extend
values); then the best and its two neighbours run again at seeds 1, 2, ... up to --seeds seeds, and the mode's pick
is the best seed mean (plot_spectra.chosen_step). Every other --key=value is train.py's, passed to each mode that
reads it (a mode's own keys, such as --rank, only to the modes that have them).

The axis: what every mode gets the same of.
    steps   --budget optimizer steps (default: --max_iters, train.py's 2000 unless given)
    flops   --budget training FLOPs (default: the reference's at --max_iters steps); each mode's steps are the budget
            over model.GPT(...).flops_per_token() × tokens per step. TSVD's rank (and FLOPs/token) shrink as it
            trains: its steps come from its start rank's FLOPs, so it spends less than the budget (the report shows
            every run's logged train_flops).
    params  --budget parameters (default: the reference's), by choosing the --rank (a count) of each mode that has
            one; a mode without (dense, muon) keeps its own count, which the plan and the report say. Equal steps.

Runs go to --out/KEY/MODE_lrVALUE_seedSEED_STEPSit (_rankR on the params axis), KEY a hash of the train.py flags and
the corpus' sha256, so runs of another config are never mistaken for these (each run's logged settings are checked
too); KEY/config.json says what it holds. A run is named by its own settings, so comparisons on other axes, budgets,
references, more seeds, a wider grid or another mode reuse every run already there (dense at 2000 steps is the same run
for --axis=steps and for --axis=flops when dense sets the budget). --jobs runs at a time, one thread each; a finished
run is never rerun and one with a checkpoint resumes, so the same command after a crash or Ctrl-C finishes only what
is missing. Each finished run's log is kept, gzipped, in --keep/KEY/ (committed under assets/: a fresh clone restores
them as finished runs, so a later session goes on where this one stopped). The plan (runs, estimated CPU time) is
printed first (--plan_only=True: only that), then "N of M done, ETA" as runs finish. Then, in --keep/KEY/ (or --out/KEY/
with --keep=''), TAG.md (the table, each grid, how to read them), TAG_step_sizes.png (val loss against step size per
mode) and TAG_val_vs_flops.png (the chosen runs' val loss against training FLOPs), TAG = AXIS[BUDGET]_vs_REFERENCE.

Bad input is one line and exit status 2 (before any run); a run that fails is one line and exit 1; --help lists keys.
"""
import ast
import concurrent.futures
import gzip
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import namedtuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import configurator  # noqa: E402
import lowrank  # noqa: E402
from configurator import die, parse_args  # noqa: E402
from prepare_data import atomic_write  # noqa: E402
from plot_spectra import chosen_step, mode_color, read_log, save_png, unwritable  # noqa: E402

TRAIN_PY = os.path.join(REPO, 'train.py')
SEEDS = (1337, 1, 2, 3, 4, 5, 6, 7, 8, 9)  # the first runs the grid (the earlier tuning's order: its runs are ours)
NOT_PASSED = dict(mode='use --modes', seed='use --seeds', out_dir='use --out', **dict.fromkeys(
    ('init_from', 'svd_from', 'branch_from', 'save_at', 'overwrite'), 'each run starts fresh or resumes its own'))
# CPU-time model of one run (1 thread), for the plan only; the ETA rescales it by the runs that have finished
START_S, STEP_S, FLOP_S = 4.0, 0.002, 50e9  # interpreter and torch import; per-step overhead; matmul FLOP/s
# the command line's own keys (every other --key=value is train.py's)
modes = 'cola,spectron,muon'  # the modes to compare (lowrank.MODES), comma-separated
axis = 'steps'  # steps | flops | params: what every mode gets the same of
budget = 0.0  # the axis' amount: steps, training FLOPs or parameters (0: the reference's at max_iters steps)
reference = 'muon'  # the mode each other one is measured against (run too, if --modes lacks it)
seeds = 2  # seeds at the best step size and its two neighbours (the first, 1337, also runs the whole grid)
grid = 5  # step sizes on the first grid, log-spaced over a decade around each mode's default
extend = 3  # at most this many values added past an end of a grid while its best value sits there
jobs = 2  # runs at a time, one thread each
out = 'runs/compare'  # runs (and their checkpoints) go to OUT/KEY/, KEY the hash of the train.py flags and corpus
keep = 'assets/compare'  # finished runs' logs (gzipped), reports and figures go to KEEP/KEY/, for git ('': not kept)
plan_only = False  # print the plan and stop
KEYS = dict(modes=modes, axis=axis, budget=budget, reference=reference, seeds=seeds, grid=grid, extend=extend,
            jobs=jobs, out=out, keep=keep, plan_only=plan_only)
USAGE = "(here: python experiments/compare.py --modes=a,b,c --axis=steps|flops|params [--key=value ...])"

Run = namedtuple('Run', 'mode value seed')
AXES = dict(steps='equal steps', flops='equal training FLOPs', params='equal parameters')


def train_defaults():
    """train.py's config block, {key: default}, read from its source (importing train.py would start a run)"""
    tree = ast.parse(open(TRAIN_PY, encoding='utf-8').read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == 'config_keys':
                break
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return {k: v for k, v in found.items() if isinstance(v, (int, float, bool, str))}


TRAIN = train_defaults()
MODE_KEYS = {k for m in lowrank.MODES.values() for k in m.keys}  # keys only some modes read


def sha(data):
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def parse(argv):
    """(options, train flags) from the command line; bad input raises ValueError (one line, exit 2)"""
    notes = f"{USAGE}\nevery other --key=value is train.py's (python train.py --help)\n{lowrank.modes_help()}"
    given = parse_args({**KEYS, **TRAIN}, argv, ('rank',), notes, __file__)
    opts = {**KEYS, **{k: v for k, v in given.items() if k in KEYS}}
    flags = {k: v for k, v in given.items() if k not in KEYS}
    opts['modes'] = list(dict.fromkeys(m.strip() for m in opts['modes'].split(',') if m.strip()))
    for m in opts['modes'] + [opts['reference']]:
        lowrank.get_mode(m)  # an unknown one: a ValueError naming the known modes
    if opts['reference'] not in opts['modes']:
        opts['modes'].append(opts['reference'])
    ours = [k for k in flags if k in NOT_PASSED or k == 'rank' and opts['axis'] == 'params']
    cli = {arg[2:].partition('=')[0] for arg in argv if arg.startswith('--')}  # a config file's keys are not refused
    bad = [k for k in ours if k in cli]
    unread = [k for k in cli & set(flags) if k in MODE_KEYS and not any(k in lowrank.MODES[m].keys
                                                                         for m in opts['modes'])]
    flags = {k: v for k, v in flags.items() if k not in ours}  # a config file's out_dir: compare.py's folders instead
    for ok, msg in (
            (opts['axis'] in AXES, f"axis must be steps, flops or params, got {opts['axis']!r}"),
            (not bad, f"--{bad[0] if bad else ''}: compare.py sets it "
                      f"({NOT_PASSED.get(bad[0] if bad else '', '--axis=params chooses each rank')}): drop it"),
            (not unread, f"no mode of {','.join(opts['modes'])} reads --{unread[0] if unread else ''}: drop it"),
            (opts['budget'] >= 0 and (opts['axis'] != 'steps' or opts['budget'] == int(opts['budget'])),
             f"budget must be >= 0 (a whole number of steps on the steps axis), got {opts['budget']:g}"),
            (not (opts['axis'] != 'params' and opts['budget'] and 'max_iters' in flags),
             f"--budget and --max_iters both set the {opts['axis']} budget: give one"),
            (opts['seeds'] >= 1 and opts['seeds'] <= len(SEEDS), f"seeds must be in 1..{len(SEEDS)}"),
            (opts['grid'] >= 3 and opts['extend'] >= 0 and opts['jobs'] >= 1,
             "grid must be >= 3 (a best value needs neighbours), extend >= 0 and jobs >= 1")):
        if not ok:
            raise ValueError(msg)
    for key in ('out', 'keep'):
        why = opts[key] and unwritable(opts[key], folder=True)
        if why:
            raise ValueError(f"--{key}: {why}")
    return opts, flags


def mode_flags(mode, flags):
    """the train.py flags a mode gets: all but the keys of other modes (train.py refuses a key its mode ignores)"""
    return {k: v for k, v in flags.items() if k not in MODE_KEYS or k in lowrank.MODES[mode].keys}


def centre(mode, flags):
    """the grid's centre: the mode's step size as given, else as train.py derives it for a fresh run (the mode's
    default from lowrank.MODES, else train.py's; spectron_lr × √(256/n_embd), as train.py scales it)"""
    m, key = lowrank.MODES[mode], lowrank.MODES[mode].step_size
    if key in flags:
        return flags[key]
    value = m.defaults.get(key, TRAIN[key])
    if key == 'spectron_lr':  # as train.py scales it
        value = lowrank.spectron_lr_at_width(value, flags.get('n_embd', TRAIN['n_embd']))
    return value


def rounded(x, ratio):
    """a grid value as people write step sizes: one significant figure (0.0006, 0.002), two or three where the grid
    is finer than that could tell apart; the repo's earlier tuning grids were such values, so their runs are ours"""
    return float(f'{x:.{1 + (ratio < 1.5) + (ratio < 1.1)}g}')


def build(mode, flags, vocab_size, rank=None):
    """the model a run of mode builds (its shape, for parameters and FLOPs/token)"""
    from model import GPT, GPTConfig
    cfg = {**TRAIN, **lowrank.MODES[mode].defaults, **mode_flags(mode, flags), 'mode': mode}
    if rank is not None:
        cfg['rank'] = rank
    return GPT(GPTConfig.from_run_config(cfg, vocab_size))


def matching_rank(mode, flags, vocab_size, target):
    """the rank (a count, 1..n_embd) whose parameters come closest to target: params grow with rank, so bisect"""
    params = lambda r: build(mode, flags, vocab_size, r).num_params()
    lo, hi = 1, flags.get('n_embd', TRAIN['n_embd'])
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if params(mid) < target else (lo, mid)
    return min({lo, max(1, lo - 1)}, key=lambda r: abs(params(r) - target))


def make_plan(opts, flags):
    """per mode: its step-size key, grid, steps, rank and cost; and what the axis' budget resolved to"""
    from prepare_data import ensure_prepared, load_meta
    setting = {**TRAIN, **flags}
    meta = load_meta(ensure_prepared(setting['input_file'], setting['tokenizer'], setting['block_size'] + 2))
    tokens = setting['gradient_accumulation_steps'] * setting['batch_size'] * setting['block_size']
    length = int(opts['budget']) if opts['axis'] == 'steps' and opts['budget'] else setting['max_iters']
    ref = opts['reference']
    ranks = {}
    if opts['axis'] == 'params':
        target = opts['budget'] or build(ref, flags, meta['vocab_size']).num_params()
        ranks = {m: matching_rank(m, flags, meta['vocab_size'], target) for m in opts['modes']
                 if 'rank' in lowrank.MODES[m].keys and not (m == ref and not opts['budget'])}
    models = {m: build(m, flags, meta['vocab_size'], ranks.get(m)) for m in opts['modes']}
    fpt = {m: model.flops_per_token() for m, model in models.items()}
    flops_budget = opts['budget'] or fpt[ref] * tokens * length
    plan = {}
    for m in opts['modes']:
        steps = max(1, round(flops_budget / (fpt[m] * tokens))) if opts['axis'] == 'flops' else length
        evals = steps // setting['eval_interval'] + 2  # every eval_interval, and at the end
        eval_flops = evals * 2 * setting['eval_iters'] * setting['batch_size'] * setting['block_size'] * fpt[m] / 3
        c = centre(m, flags)
        ratio = 10 ** (1 / (opts['grid'] - 1))
        plan[m] = dict(key=lowrank.MODES[m].step_size, centre=c, ratio=ratio, steps=steps, rank=ranks.get(m),
                       grid=[rounded(c * ratio ** (i - (opts['grid'] - 1) / 2), ratio) for i in range(opts['grid'])],
                       params=models[m].num_params(), fpt=fpt[m], tokens=steps * tokens,
                       est_s=START_S + steps * (STEP_S + fpt[m] * tokens / FLOP_S) + eval_flops / FLOP_S)
    budget_text = dict(steps=f"{length:,} steps", flops=f"{flops_budget:.3g} training FLOPs",
                       params=f"{models[ref].num_params() if not opts['budget'] else opts['budget']:,.0f} parameters")
    return plan, dict(meta=meta, tokens_per_step=tokens, length=length, flops_budget=flops_budget,
                      budget=budget_text[opts['axis']])


def config_key(flags, meta):
    """the hash that names the folder: what every run in it shares (the train.py flags and the corpus; each run's
    mode, step size, seed, steps and rank are in its name); config.json, the same as text. Not the code: a later
    session's edit must not orphan hours of finished runs (each run's logged config is checked against its name)."""
    config = dict(train_flags=dict(sorted(flags.items())), corpus_sha256=meta['input_sha256'])
    return sha(json.dumps(config, sort_keys=True))[:12], config


# -----------------------------------------------------------------------------
# the protocol: which runs a mode needs next, from the results it has


def needed(p, results, n_seeds, max_extend):
    """The runs (value, seed) a mode needs now, given results {value: {seed: final val loss}}; [] when its protocol
    is complete. The first grid at the first seed; while its best sits at an end, one value past that end (up to
    max_extend); then the best and its neighbours at the other seeds."""
    first = SEEDS[0]
    todo = [(v, first) for v in p['grid'] if first not in results.get(v, {})]
    if todo:
        return todo
    xs = sorted(v for v in results if first in results[v])
    loss = lambda v: results[v][first] if results[v][first] == results[v][first] else math.inf  # NaN: diverged
    best = min(range(len(xs)), key=lambda i: (loss(xs[i]), i))
    if len(xs) - len(p['grid']) < max_extend and best in (0, len(xs) - 1):
        return [(rounded(xs[0] / p['ratio'], p['ratio']), first) if best == 0 else
                (rounded(xs[-1] * p['ratio'], p['ratio']), first)]
    return [(v, s) for v in xs[max(0, best - 1):best + 2] for s in SEEDS[1:n_seeds] if s not in results[v]]


def expected_runs(p, results, n_seeds, max_extend):
    """how many runs the mode's protocol takes, as far as its results tell: the first seed's values so far (and any
    extension it needs now), then its seed runs (3 values × the other seeds, until the best is known)"""
    first = set(p['grid']) | {v for v in results if SEEDS[0] in results[v]}
    todo = needed(p, results, n_seeds, max_extend)
    if todo and todo[0][1] == SEEDS[0]:
        return len(first | {v for v, _ in todo}) + 3 * (n_seeds - 1)
    return len(first) + sum(s != SEEDS[0] for v in results for s in results[v]) + len(todo)


def run_name(run, p):
    """a run's settings beyond the folder's: its mode, step size, seed, length and (params axis) rank"""
    rank = f"_rank{p['rank']}" if p['rank'] is not None else ''
    return f"{run.mode}_lr{run.value:g}_seed{run.seed}_{p['steps']}it{rank}"


def run_dir(folder, run, p):
    return os.path.join(folder, run_name(run, p))


def restore(keep, folder):
    """each kept log (keep/NAME.log.jsonl.gz) becomes the finished run folder/NAME, unless that one has finished"""
    for name in sorted(n for n in os.listdir(keep) if n.endswith('.log.jsonl.gz')):
        log = os.path.join(folder, name.removesuffix('.log.jsonl.gz'), 'log.jsonl')
        if not (os.path.exists(log) and any(r['kind'] == 'summary' for r in read_log(log))):
            os.makedirs(os.path.dirname(log), exist_ok=True)
            with gzip.open(os.path.join(keep, name), 'rb') as f:
                data = f.read()
            atomic_write(log, lambda f: f.write(data))


def save(path, keep):
    """a finished run's log into keep/, gzipped, with its train records thinned to every 100th step (the report
    reads only its evals and summary): a few kB a run"""
    rows = [r for r in read_log(path) if r['kind'] != 'train' or r['iter'] % 100 == 0]
    data = ''.join(json.dumps(r) + '\n' for r in rows).encode()
    os.makedirs(keep, exist_ok=True)
    atomic_write(os.path.join(keep, os.path.basename(path) + '.log.jsonl.gz'),
                 lambda f: f.write(gzip.compress(data, 9, mtime=0)))


def run_args(run, p, flags):
    """the run's train.py flags"""
    args = {**mode_flags(run.mode, flags), 'mode': run.mode, p['key']: run.value, 'seed': run.seed,
            'max_iters': p['steps']}
    if p['rank'] is not None:
        args['rank'] = p['rank']
    return [f'--{k}={v}' for k, v in args.items()]


def logged(path, run, p):
    """(whether path's log is of this run's settings, or there is none yet; its last val loss if it has finished)"""
    rows = read_log(path) if os.path.exists(os.path.join(path, 'log.jsonl')) else []
    config = next((r for r in rows if r['kind'] == 'config'), None)
    same = config is None or (config['mode'], config.get(p['key']), config['seed'], config['max_iters']) == (
        run.mode, run.value, run.seed, p['steps']) and p['rank'] in (None, config.get('rank'))
    evals = [r for r in rows if r['kind'] == 'eval']
    done = same and evals and any(r['kind'] == 'summary' for r in rows)
    return same, evals[-1]['val_loss'] if done else None


def final_val(path, run, p):
    """a finished run's last val loss, or None (not finished, or the log of other settings: never counted)"""
    return logged(path, run, p)[1]


LIVE = set()  # the train.py processes running now, stopped (SIGTERM: they checkpoint) if compare.py must stop


def train_run(path, args):
    """train.py in a subprocess, one thread, resuming a checkpoint (unless --overwrite=True: the folder holds a run of
    other settings, which this one replaces); its output to path/stdout.txt: exit status"""
    os.makedirs(path, exist_ok=True)
    resume = os.path.exists(os.path.join(path, 'ckpt.pt')) and '--overwrite=True' not in args
    resume = ['--init_from=resume'] if resume else []
    with open(os.path.join(path, 'stdout.txt'), 'w') as f:
        proc = subprocess.Popen([sys.executable, TRAIN_PY, f'--out_dir={path}', *args, *resume], stdout=f,
                                stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS='1'))
        LIVE.add(proc)
        try:
            return proc.wait()
        finally:
            LIVE.discard(proc)


def stop_all(msg, status):
    """stop the runs in flight (each checkpoints on SIGTERM, so the same command resumes it), then one line"""
    for proc in list(LIVE):
        proc.terminate()
    die(msg, status)


def last_line(path):
    try:
        lines = open(os.path.join(path, 'stdout.txt')).read().strip().splitlines()
    except OSError:
        return '(no output)'
    return lines[-1].removeprefix('error: ') if lines else '(no output)'


def run_protocol(plan, folder, keep, flags, opts, say=print):
    """run every mode's protocol, --jobs runs at a time: {mode: {value: {seed: val loss}}}"""
    found = [0]  # runs found finished on disk
    results = {m: {} for m in plan}
    estimate = {m: p['est_s'] for m, p in plan.items()}
    spent, estimated = [0.0], [0.0]  # this session's run seconds, and what the model estimated for those runs

    def record(run, val):
        results[run.mode].setdefault(run.value, {})[run.seed] = val

    running, n_done, more = {}, 0, (opts['seeds'], opts['extend'])
    with concurrent.futures.ThreadPoolExecutor(opts['jobs']) as pool:
        try:  # inside the pool: leaving it waits for the runs, which a Ctrl-C (or kill -INT) must stop first
            while True:
                todo = [Run(m, v, s) for m in plan for v, s in needed(plan[m], results[m], *more)]
                todo = [r for r in todo if r not in running.values()]
                paths = {r: run_dir(folder, r, plan[r.mode]) for r in todo}
                finished = [(r, val) for r in todo if (val := final_val(paths[r], r, plan[r.mode])) is not None]
                for r, val in finished:  # already on disk: counted, never rerun
                    record(r, val)
                    n_done += 1
                    found[0] += 1
                if finished:
                    continue
                for r in todo[:opts['jobs'] - len(running)]:
                    other = not logged(paths[r], r, plan[r.mode])[0]  # another's log there: replaced
                    args = run_args(r, plan[r.mode], flags) + ['--overwrite=True'] * other
                    running[pool.submit(timed, train_run, paths[r], args)] = r
                if not running:
                    say(f"{n_done} of {n_done} done: {n_done - found[0]} run now, {found[0]} found finished in "
                        f"{folder}")
                    return results
                for future in concurrent.futures.wait(running, return_when='FIRST_COMPLETED')[0]:
                    r = running.pop(future)
                    code, seconds = future.result()
                    path = run_dir(folder, r, plan[r.mode])
                    val = final_val(path, r, plan[r.mode])
                    if code == 2:
                        stop_all(f"train.py refused {path}: {last_line(path)}", 2)
                    if code != 0 or val is None:  # 0 without a summary: stopped by a signal, after a checkpoint
                        stopped = code in (0, -2, -15, 130)
                        stop_all(f"{path} was stopped at a checkpoint; the same command continues" if stopped else
                                 f"{path} failed (exit {code}): {last_line(path)}; the same command continues",
                                 130 if stopped else 1)
                    record(r, val)
                    if keep:
                        save(path, keep)
                    n_done += 1
                    spent[0] += seconds
                    estimated[0] += estimate[r.mode]
                    total = sum(expected_runs(plan[m], results[m], *more) for m in plan)
                    left = sum(estimate[m] * (expected_runs(plan[m], results[m], *more) -
                                              sum(len(s) for s in results[m].values())) for m in plan)
                    eta = left * spent[0] / estimated[0] / opts['jobs']  # the estimates, rescaled by the runs so far
                    say(f"{n_done} of {total} done, ETA {fmt_time(eta)}: {r.mode} {plan[r.mode]['key']}={r.value:g} "
                        f"seed {r.seed}: val loss {val:.4f} ({seconds:.0f} s)")

        except KeyboardInterrupt:  # each run checkpoints and stops
            stop_all("stopped; the same command continues", 130)

def timed(fn, *args):
    t = time.time()
    return fn(*args), time.time() - t


def fmt_seconds(s):
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 600 else fmt_time(s)


def fmt_time(s):
    return f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


# -----------------------------------------------------------------------------
# the report


def chosen(results):
    """the protocol's pick, {value: [val per seed]} -> value (NaN, a diverged run, counts as infinitely bad)"""
    vals = {v: [x if x == x else math.inf for x in s.values()] for v, s in results.items()}
    return chosen_step(vals)


def summary_of(path):
    """a finished run's evals and time. Logs of train.py before it logged train_flops get it from FLOPs/token ×
    tokens/step × steps: exact for the modes of fixed shape, the only ones such logs hold (TSVD's are all newer)."""
    rows = read_log(path)
    c = next(r for r in rows if r['kind'] == 'config')
    tokens = c['gradient_accumulation_steps'] * c['batch_size'] * c['block_size']
    evals = [{'train_flops': r['flops_per_token'] * tokens * r['iter'], **r} for r in rows if r['kind'] == 'eval']
    return dict(evals=evals, seconds=next(r['seconds'] for r in rows if r['kind'] == 'summary'))


def spread(xs):
    return (max(xs) - min(xs)) / 2


def report(plan, results, folder, where, opts, info):
    """where/TAG.md and its two figures; returns the markdown"""
    ref = opts['reference']
    picks = {m: chosen(results[m]) for m in plan}
    runs = {m: [summary_of(run_dir(folder, Run(m, picks[m], s), plan[m])) for s in sorted(results[m][picks[m]],
                                                                                key=SEEDS.index)] for m in plan}
    finals = {m: [r['evals'][-1]['val_loss'] for r in rs] for m, rs in runs.items()}
    axis_text = AXES[opts['axis']]
    n_runs = sum(len(seeds) for m in plan for seeds in results[m].values())
    cpu = sum(summary_of(run_dir(folder, Run(m, v, s), plan[m]))['seconds'] for m in plan for v in results[m]
              for s in results[m][v])
    spent = {m: statistics.mean(r['evals'][-1]['train_flops'] for r in rs) / info['flops_budget']
             for m, rs in runs.items()} if opts['axis'] == 'flops' else {}
    spent = {m: share for m, share in spent.items() if lowrank.MODES[m].after_step}  # TSVD: its rank shrinks
    lines = [f"# {', '.join(plan)} at {axis_text}", "",
             f"Budget: {info['budget']}; reference {ref}; {info['tokens_per_step']:,} tokens per step; protocol: "
             f"a {opts['grid']}-value grid, up to {opts['extend']} extensions, "
             f"{opts['seeds']} seed{'s' * (opts['seeds'] > 1)}; "
             f"train.py flags: {' '.join(f'--{k}={v}' for k, v in sorted(info['flags'].items())) or 'none'}. "
             f"Config key {info['key']} (config.json). {n_runs} runs, {fmt_time(cpu)} of train.py time in all "
             f"(one thread each; what the comparison costs from scratch).", "",
             f"| mode | step size | val loss | − {ref} [range] | params | MFLOPs/token | tokens | training FLOPs | "
             f"time/run |", "|---|---|---|---|---|---|---|---|---|"]
    for m in plan:
        xs, rs, p = finals[m], runs[m], plan[m]
        val = f"{statistics.mean(xs):.4f} ±{spread(xs):.4f} ({len(xs)})" if len(xs) > 1 else f"{xs[0]:.4f} (1 seed)"
        if m == ref:
            diff = "reference"
        elif not all(map(math.isfinite, xs + finals[ref])):
            diff = "a run diverged (NaN)"
        else:
            r = finals[ref]
            lo, hi = min(xs) - max(r), max(xs) - min(r)
            word = "lower" if hi < 0 else "higher" if lo > 0 else "within the seed spread"
            diff = (f"{statistics.mean(xs) - statistics.mean(r):+.4f} [{lo:+.4f}, {hi:+.4f}] {word}"
                    if len(xs) > 1 or len(r) > 1 else f"{xs[0] - r[0]:+.4f} (1 seed each: no interval)")
        last, first = rs[0]['evals'][-1], rs[0]['evals'][0]
        mflops = f"{first['flops_per_token'] / 1e6:.3g}" + (
            f" → {last['flops_per_token'] / 1e6:.3g}" if last['flops_per_token'] != first['flops_per_token'] else '')
        rank = f", rank {p['rank']}" if p['rank'] is not None else ''
        lines.append(f"| {m} | {p['key']} = {picks[m]:g} | {val} | {diff} | {first['params']:,}{rank} | "
                     f"{mflops} | {last['iter'] * info['tokens_per_step']:,} | "
                     f"{statistics.mean(r['evals'][-1]['train_flops'] for r in rs):.3g} | "
                     f"{fmt_seconds(statistics.mean(r['seconds'] for r in rs))} |")
    lines += ["", f"val loss: the last eval's (nats/token), mean ±half-range (seeds), at the step size the protocol "
                  f"chose. − {ref}: the difference of the means (below 0: better than {ref}), [lowest, highest] over "
                  f"every pair of seeds; \"lower\" or \"higher\" only when that range excludes 0. params and "
                  f"MFLOPs/token at the start (a TSVD rank shrinks: → its last). time/run: train.py's wall-clock "
                  f"(its summary; without the interpreter's start), one thread, {opts['jobs']} at a time.",
              *[f"\n{m} spent {share:.0%} of the FLOPs budget: its steps come from its start FLOPs/token, which "
                f"fall as it trains (an approximation in its disfavour)." for m, share in spent.items()],
              "", "## The grids", "", "Final val loss at each step size, seed 1337 (then the mean over seeds); "
              "* the pick, ← → a value added past an end of the first grid, ! the best still at an end after "
              f"{opts['extend']} extensions (widen it: --extend).", ""]
    for m in plan:
        p, res = plan[m], results[m]
        xs = sorted(res)
        cells = []
        for v in xs:
            seeds_v = [x for x in res[v].values()]
            mean = f" (mean {statistics.mean(seeds_v):.4f}, {len(seeds_v)})" if len(seeds_v) > 1 else ''
            added = '←' if v < min(p['grid']) else '→' if v > max(p['grid']) else ''
            mark = ('*' if v == picks[m] else '') + added
            cells.append(f"{v:g}{mark}: {res[v][SEEDS[0]]:.4f}{mean}")
        best = min(xs, key=lambda v: res[v][SEEDS[0]] if math.isfinite(res[v][SEEDS[0]]) else math.inf)
        warn = ' !' if best in (xs[0], xs[-1]) else ''
        lines.append(f"- {m} ({p['key']}, {p['steps']:,} steps){warn}: " + '; '.join(cells))
    tag = info['tag']
    lines += ["", f"![val loss against step size]({tag}_step_sizes.png)", "",
              f"![val loss against training FLOPs]({tag}_val_vs_flops.png)", ""]
    text = '\n'.join(lines)
    os.makedirs(where, exist_ok=True)
    atomic_write(os.path.join(where, f'{tag}.md'), lambda f: f.write(text.encode()))
    plot_step_sizes(plan, results, picks, os.path.join(where, f'{tag}_step_sizes.png'))
    plot_val_vs_flops(plan, runs, picks, opts, info, os.path.join(where, f'{tag}_val_vs_flops.png'))
    return text


def plot_step_sizes(plan, results, picks, path):
    """one panel per mode (its own y range): final val loss against its step size"""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, NullLocator
    cols = min(4, len(plan))  # rows of four panels, so that many modes stay readable
    rows = -(-len(plan) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols + 0.4, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(plan):]:
        ax.set_visible(False)
    finite = lambda ys: [y for y in ys if math.isfinite(y)]
    for ax, m in zip(axes.flat, plan):
        res, color = results[m], mode_color(m)
        xs = sorted(res)
        ax.axvspan(min(plan[m]['grid']), max(plan[m]['grid']), color='0.92', zorder=0)
        ax.plot(xs, [res[v][SEEDS[0]] for v in xs], '-o', color=color, lw=2)  # NaN (diverged): a gap
        for v in xs:
            ys = finite(res[v].values())
            if len(ys) > 1:
                ax.plot([v] * (len(ys) - 1), [y for s, y in res[v].items() if s != SEEDS[0]], '_', color=color,
                        markersize=14, mew=2)
                ax.plot([v], [statistics.mean(ys)], 'D', mfc='white', mec='black', markersize=7, zorder=4)
        if finite(res[picks[m]].values()):
            best = statistics.mean(finite(res[picks[m]].values()))
            ax.plot([picks[m]], [best], '*', color='gold', markersize=20, markeredgecolor='black', zorder=5)
            ax.set_title(f"{m}: pick {plan[m]['key']} = {picks[m]:g}\n(val loss {best:.4f})", color=color, fontsize=11)
        ax.set_xscale('log')
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs, [f'{v:g}' for v in xs], rotation=45, fontsize=8)
        ax.set_xlabel(plan[m]['key'])
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel('final val loss (nats)')
    fig.suptitle('val loss against step size: line seed 1337, dashes the other seeds, ◇ their mean, ★ the pick '
                 '(the best mean), grey the first grid', fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def plot_val_vs_flops(plan, runs, picks, opts, info, path):
    """left: the chosen runs' val loss as they spend FLOPs; right: where each mode ends (the verdict), its labels the
    legend of both"""
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw=dict(width_ratios=[1.5, 1]))
    for m in plan:
        for k, r in enumerate(runs[m]):
            pts = [(e['train_flops'] / 1e12, e['val_loss']) for e in r['evals'] if e['train_flops'] > 0]
            style = dict(alpha=1, lw=1.8) if k == 0 else dict(alpha=0.45, lw=1)  # the first seed bold
            ax.plot(*zip(*pts), '-o', ms=3, color=mode_color(m), **style)
    if opts['axis'] == 'flops':
        ax.axvline(info['flops_budget'] / 1e12, color='0.4', ls=':')
        ax.text(info['flops_budget'] / 1e12, ax.get_ylim()[1], 'budget ', ha='right', va='top', color='0.4')
    ax.set_xscale('log')
    ax.xaxis.set_major_locator(plt.LogLocator(subs=(1, 2, 5)))  # 1, 2, 5, 10, ...: labels a reader can read
    ax.xaxis.set_major_formatter('{x:g}')
    ax.xaxis.set_minor_formatter('')
    ax.set(xlabel='training FLOPs (TFLOPs, log scale)', ylabel='val loss (nats)')
    ax.set_title('the chosen runs as they train (bold: seed 1337, faint: further seeds)', fontsize=10)
    ax.grid(alpha=0.3, which='both')
    finals = {m: [r['evals'][-1]['val_loss'] for r in runs[m]] for m in plan}
    order = sorted(plan, key=lambda m: statistics.mean(finals[m]))
    for i, m in enumerate(order):
        mean = statistics.mean(finals[m])
        bx.errorbar(mean, i, xerr=[[mean - min(finals[m])], [max(finals[m]) - mean]], fmt='o', capsize=3,
                    color=mode_color(m))
    bx.axvline(statistics.mean(finals[opts['reference']]), color='0.4', ls=':')
    bx.set_yticks(range(len(order)), [f"{m} ({plan[m]['key']} {picks[m]:g})" for m in order], fontsize=9)
    for label, m in zip(bx.get_yticklabels(), order):
        label.set_color(mode_color(m))
    bx.invert_yaxis()  # the best on top
    bx.set_xlabel('final val loss (nats): mean and range over seeds')
    bx.set_title(f"where each mode ends (dotted: {opts['reference']})", fontsize=10)
    bx.grid(alpha=0.3, axis='x')
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


# -----------------------------------------------------------------------------


def main(argv):
    opts, flags = parse(argv)
    plan, info = make_plan(opts, flags)
    key, config = config_key(flags, info['meta'])
    folder, keep = os.path.join(opts['out'], key), opts['keep'] and os.path.join(opts['keep'], key)
    budget = f"{opts['budget']:g}" if opts['budget'] else ''
    info.update(key=key, flags=flags, tag=f"{opts['axis']}{budget}_vs_{opts['reference']}")
    n_grid = sum(len(p['grid']) for p in plan.values())
    n_seed = 3 * (opts['seeds'] - 1) * len(plan)
    cpu = sum(p['est_s'] * (len(p['grid']) + 3 * (opts['seeds'] - 1)) for p in plan.values())
    print(f"compare: {', '.join(plan)} at {AXES[opts['axis']]} ({info['budget']}), reference {opts['reference']}\n"
          f"runs in {folder} (its key: the train.py flags and the corpus), logs kept in {keep or 'none'}")
    for m, p in plan.items():
        rank = f", rank {p['rank']}" if p['rank'] is not None else ''
        if opts['axis'] == 'params' and p['rank'] is None and m != opts['reference']:
            rank = ' (no rank: its parameters are not matched)'
        print(f"  {m:<10} {p['key']} {', '.join(f'{v:g}' for v in p['grid'])} (centre {p['centre']:.3g}); "
              f"{p['steps']:,} steps{rank}: {p['params']:,} params, {p['fpt'] / 1e6:.3g} MFLOPs/token, "
              f"~{p['est_s']:.0f} s a run")
    more = f" + {n_seed} at seed {', '.join(map(str, SEEDS[1:opts['seeds']]))} (the best and its neighbours)"
    print(f"plan: {n_grid} grid runs at seed 1337{more if n_seed else ''}, and one per extension of a grid whose best "
          f"sits at an end (up to {opts['extend']} a mode): about {fmt_time(cpu)} of CPU, "
          f"{fmt_time(cpu / opts['jobs'])} at {opts['jobs']} at a time")
    for m in plan:
        if opts['axis'] == 'flops' and lowrank.MODES[m].after_step:
            print(f"  note: {m} changes shape as it trains: its steps are from its start FLOPs/token, so it spends "
                  f"less than the budget (the report says how much)")
    if opts['plan_only']:
        return
    configurator.setting_up = False  # from here on an error is a failure of a run, not bad input
    for where in filter(None, (folder, keep)):
        os.makedirs(where, exist_ok=True)
        atomic_write(os.path.join(where, 'config.json'), lambda f: f.write(json.dumps(config, indent=1).encode()))
    if keep:
        restore(keep, folder)
    results = run_protocol(plan, folder, keep, flags, opts)
    where, tag = keep or folder, info['tag']
    print(report(plan, results, folder, where, opts, info))
    print(f"wrote {where}/{tag}.md, {where}/{tag}_step_sizes.png, {where}/{tag}_val_vs_flops.png")


if __name__ == '__main__':
    configurator.catch_setup_errors()  # until the runs start, an error is bad input: one line, exit 2
    main(sys.argv[1:])
