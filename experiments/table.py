"""
A markdown table of finished runs, from their log.jsonl files (run dirs, or the gzipped *.log.jsonl.gz copies under
assets/; plot_spectra.read_log reads both):

    python experiments/table.py assets/compare/bc785171e5e1/*.log.jsonl.gz        # one row per run
    python experiments/table.py runs/lr_sweep/* --seeds --columns=mode,lr,val,max_dw,spikes   # mean over seeds
    python experiments/table.py runs/rank_sweep/* --csv=assets/rank_sweep/runs.csv          # also every column as CSV
    python experiments/table.py runs/data_limited/p32_* --best --columns=tokens,mode,rank,val,gap,iter_best,iters

--seeds merges runs whose configs differ only in seed and out_dir: numbers become "mean ±half-range (n)".
--best takes val, train and gap from the eval with the lowest val loss (early stopping; iter_best is its step,
which equals iters when the run ended before passing its minimum) instead of the last eval.
Keys in configurator's --key=value style (--help lists them; --seeds and --best alone mean =True).
"""
import csv as csvlib
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import lowrank  # noqa: E402
from configurator import die, parse_args  # noqa: E402
from plot_spectra import (count_spikes, has_layer, log_file, mode_of, read_log, run_lr, run_name,  # noqa: E402
                          unwritable)  # the spike rule and the log reader live with the figures

COLUMNS = {  # key: markdown header
    'run': 'run', 'mode': 'mode', 'corpus': 'corpus', 'tokens': 'train tokens', 'n_embd': 'n_embd', 'rank': 'rank',
    'lr': 'LR / η', 'schedule': 'LR schedule', 'seed': 'seed', 'iters': 'iters', 'iter_best': 'best at iter',
    'val': 'val loss', 'bpc': 'val bits/char', 'train': 'train loss', 'gap': 'val − train',
    'params': 'params', 'mflops': 'MFLOPs/token', 'mean_rank': 'final mean rank', 'ms': 'median ms/iter',
    'minutes': 'minutes', 'spectra': 'spectra cost', 'max_dw': 'max ‖ΔW‖₂', 'max_dw_over_eta': 'max ‖ΔW‖₂/η',
    'spikes': 'spikes / logged', 'tflops': 'training TFLOPs'}
DEFAULT = 'run,mode,rank,val,train,params,mflops,mean_rank,ms,minutes,spectra,max_dw_over_eta'
NUMERIC = {'val': 4, 'bpc': 3, 'train': 4, 'gap': 4, 'iter_best': 0, 'max_dw': 3, 'max_dw_over_eta': 2, 'spikes': 1,
           'minutes': 1}  # decimals
USAGE = "(here: python experiments/table.py RUN_DIR|LOG.jsonl ... [--key=value ...])"
# the command line's keys
columns = DEFAULT  # the table's columns, comma-separated, of: run, mode, corpus, tokens, n_embd, rank, lr, ... (COLUMNS)
csv = ''  # also write every column of every run (before --seeds merges them) to this CSV file
seeds = False  # merge runs whose configs differ only in seed and out_dir: numbers as "mean ±half-range (n)"
best = False  # val, train and gap at the eval with the lowest val loss (early stopping), not at the last eval
KEYS = dict(columns=columns, csv=csv, seeds=seeds, best=best)


def read(fn, path, *args, what='train.py log'):
    """fn(path, *args), which reads a file: one that cannot be read or is not a `what` (not JSON, a record without
    the keys fn reads) is one line naming it and exit status 2, not a traceback"""
    try:
        return fn(path, *args)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, StopIteration) as e:
        die(f"{path} is unreadable or not a {what} ({type(e).__name__}: {e})")


def train_flops(config, first, last):
    """Σ FLOPs/token × tokens so far; logs of older code lack it, and their count is exact only at a constant rank"""
    if 'train_flops' in last or first['flops_per_token'] != last['flops_per_token']:
        return last.get('train_flops', float('nan'))
    return last['flops_per_token'] * last['iter'] * math.prod(
        config.get(k, float('nan')) for k in ('batch_size', 'block_size', 'gradient_accumulation_steps'))


def summarize(path, best=False):
    """one row of numbers from a run's log; best: val, train and gap from the eval with the lowest val loss"""
    log = log_file(path)
    rows = read_log(log)
    config = next((r for r in rows if r['kind'] == 'config'), None)
    if config is not None:  # logs of older code ran the cosine: say so, so that --seeds keeps them from wsd runs
        config = {'lr_schedule': 'cosine', **config}
    train = [r for r in rows if r['kind'] == 'train']
    evals = [r for r in rows if r['kind'] == 'eval']
    if config is None or not evals:
        die(f"{log} has no config or no eval record yet")
    summary = next((r for r in rows if r['kind'] == 'summary'), {})
    first, last = evals[0], evals[-1]
    low = min(evals, key=lambda e: e['val_loss'])  # the first of equal lows: early stopping would stop there
    at = low if best else last
    ranks = list(last['ranks'].values())
    dws = [(r['max_dW'], r['lr_factor']) for r in train if r.get('max_dW') is not None and r['max_dW'] == r['max_dW']]
    eta = run_lr(config) if mode_of(config['mode']).bounded else None  # the bound its optimizer promises
    flops = [first['flops_per_token'] / 1e6, last['flops_per_token'] / 1e6]
    return dict(
        run=run_name(path), mode=config['mode'],
        corpus=os.path.basename(config['input_file']), tokens=config.get('train_tokens') or 'all',
        n_embd=config['n_embd'],
        rank='-' if has_layer(config['mode'], lowrank.DenseLinear) else config['rank'], lr=run_lr(config),
        seed=config['seed'], schedule='cosine' if config['lr_schedule'] == 'cosine' else
        f"wsd {config['decay_frac']:g} {config['decay_shape']}",
        iters=last['iter'], iter_best=low['iter'], val=at['val_loss'], train=at['train_loss'],
        bpc=at['val_loss'] / math.log(2) if config.get('tokenizer', 'char') == 'char' else '-',  # nats → bits
        gap=at['val_loss'] - at['train_loss'],
        params=f"{last['params'] / 1e6:.2f}M",
        mflops=f"{flops[0]:.2f} → {flops[1]:.2f}" if flops[0] != flops[1] else f"{flops[1]:.2f}",
        mean_rank=f"{statistics.mean(ranks):.1f}", tflops=f"{train_flops(config, first, last) / 1e12:.1f}",
        ms=f"{statistics.median(r['ms'] for r in (train[1:] or train)):.0f}" if train else '-',  # max_iters=0: none
        minutes=summary['seconds'] / 60 if summary else '?',
        spectra=f"{100 * summary['spectra_seconds'] / summary['seconds']:.1f}%" if summary else '?',
        max_dw=max((dw for dw, _ in dws), default='-'),
        # the bound is η times the schedule's LR factor at that step
        max_dw_over_eta=max((dw / (eta * f) for dw, f in dws), default='-') if eta else '-',
        spikes=count_spikes([r.get('loss') for r in train]), logged=len(train),
        config=config)  # what --seeds compares (see setup)


OPTIMIZER_KEYS = {  # a mode's step-size key (lowrank.MODES step_size): the config keys of the optimizer it names
    'spectron_lr': {'spectron_lr', 'spectron_beta', 'spectron_power_iters', 'spectron_wd', 'ns_steps', 'spectron_ortho',
                    'spectron_renorm'},
    'muon_lr': {'muon_lr', 'muon_beta', 'ns_steps'}}
LAYER_KEYS = {lowrank.TSVDLinear: {'energy', 'rank_warmup', 'rank_interval', 'min_rank'}}  # a layer class: its keys


def mode_keys(mode):
    """the config keys that only some modes read, that this mode reads (by its optimizer's step size and its layer)"""
    keys = set(OPTIMIZER_KEYS.get(mode_of(mode).step_size, ()))
    return keys.union(*(ks for cls, ks in LAYER_KEYS.items() if has_layer(mode, cls)))


def setup(config, common):
    """the settings that make two runs the same experiment: the keys every compared log has (logs of older code lack
    newer keys), without bookkeeping and without the knobs of other modes (nfw's spectron_lr does nothing)"""
    other = set().union(*OPTIMIZER_KEYS.values(), *LAYER_KEYS.values()) - mode_keys(config['mode'])
    return json.dumps({k: config[k] for k in sorted(common - other - {'kind', 'seed', 'out_dir', 'init_from', 'iter'})})


def merge_seeds(rows):
    """one row per config that differs only in seed: numbers as mean ±half-range (n)"""
    common = {}  # per mode: a muon run's muon_lr counts even though logs of older code (and other modes) lack it
    for r in rows:
        common[r['mode']] = common.get(r['mode'], set(r['config'])) & set(r['config'])
    groups = {}
    for r in rows:
        groups.setdefault(setup(r['config'], common[r['mode']]), []).append(r)
    merged = []
    for group in groups.values():
        row = dict(group[0], run=group[0]['run'].rsplit('_seed', 1)[0], seed=','.join(str(r['seed']) for r in group))
        for k in NUMERIC:
            xs = [r[k] for r in group if isinstance(r[k], (int, float))]
            if len(xs) > 1:
                row[k] = f"{statistics.mean(xs):.{NUMERIC[k]}f} ±{(max(xs) - min(xs)) / 2:.{NUMERIC[k]}f} ({len(xs)})"
        merged.append(row)
    return merged


def fmt(row, key):
    value = row[key]
    if key == 'spikes' and isinstance(value, int):
        return f"{value} / {row['logged']}"
    return f"{value:.{NUMERIC[key]}f}" if key in NUMERIC and isinstance(value, float) else str(value)


def main(argv):
    paths = [a for a in argv if not a.startswith('-')]
    opts = {**KEYS, **parse_args(KEYS, [a + '=True' if a in ('--seeds', '--best') else a for a in argv
                                        if a.startswith('-')], notes=USAGE, source=__file__)}
    columns = opts['columns'].split(',')
    unknown = [c for c in columns if c not in COLUMNS]
    logs = [log_file(p) for p in paths]
    missing = [log for log in logs if not os.path.isfile(log)]
    why = opts['csv'] and unwritable(opts['csv'])
    if unknown or missing or not paths or why:
        die(f"unknown column {unknown}; columns: {', '.join(COLUMNS)}" if unknown else f"no log at {missing[0]}"
            if missing else f"--csv: {why}" if why else f"no run given {USAGE}")
    rows = sorted((read(summarize, p, opts['best']) for p in paths), key=lambda r: (
        r['corpus'], float('inf') if r['tokens'] == 'all' else r['tokens'], r['mode'], r['n_embd'],
        -1 if r['rank'] == '-' else r['rank'], r['lr'], r['seed']))
    if opts['csv']:
        with open(opts['csv'], 'w', newline='') as f:
            writer = csvlib.DictWriter(f, fieldnames=list(rows[0])[:-1], extrasaction='ignore')  # not 'config'
            writer.writeheader()
            writer.writerows(rows)
    if opts['seeds']:
        rows = merge_seeds(rows)
    at_best = {'val': 'best val loss', 'train': 'train loss at best val', 'gap': 'val − train at best val'}
    print('| ' + ' | '.join(at_best.get(c, COLUMNS[c]) if opts['best'] else COLUMNS[c] for c in columns) + ' |')
    print('|' + '---|' * len(columns))
    for r in rows:
        print('| ' + ' | '.join(fmt(r, c) for c in columns) + ' |')


if __name__ == '__main__':
    main(sys.argv[1:])
