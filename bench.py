"""
Time a training step of every low-rank mode against dense, per width and rank, on random tokens.

    python bench.py                                  # n_embd 256, ranks d/16..d/2, CPU
    python bench.py --quick=True                     # 1 warm-up and 3 timed steps
    python bench.py --device=cuda --widths=256,768   # bf16 autocast on CUDA by default
    python bench.py --profile=True --ranks=0.25      # also torch.profiler's top ops of each run

A step is train.py's: forward (under autocast), backward, clip_grad_norm_ and its isfinite check, every
optimizer's step(), the mode's after_step hook, zero_grad (data loading and the LR schedule left out).
ms/step: median over the timed steps; opt%: optimizer steps + after_step as a share of it; speedup: dense
ms / this ms; ideal: dense FLOPs / this FLOPs; eff: speedup / ideal; gen: model.generate, batch 1.
"""
import csv as csvlib
import ctypes
import gc
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn as nn

import lowrank
from configurator import die, parse_args
from model import GPT, GPTConfig, peak_flops

# -----------------------------------------------------------------------------
modes = ','.join(m for m in lowrank.MODES if m != 'dense')  # modes (lowrank.MODES) to time; dense always runs, as the
# baseline; a mode of full W (muon) at full width only
widths = '256'  # comma-separated n_embd values, e.g. 256,768
ranks = '0.0625,0.125,0.25,0.5'  # comma-separated rank fractions of n_embd, each in (0, 1]
n_layer = 4  # model and batch: train.py's defaults
n_head = 4
block_size = 64
batch_size = 16
vocab_size = 65  # TinyShakespeare characters
warmup = 3  # untimed steps first
steps = 10  # timed steps (ms/step is their median)
plain = True  # also time the dense GPT with every DenseLinear swapped for a bare nn.Linear
sample_tokens = 200  # new tokens for the sampling speed (0: skip)
device = 'cpu'  # cpu | cuda
threads = 0  # torch CPU threads (0: torch's default); 1 avoids OpenMP thrashing on a machine busy with other work
dtype = 'auto'  # auto (bfloat16 autocast on CUDA, float32 on CPU) | float32 | bfloat16
compile = False  # torch.compile the model for the training step (sampling stays eager)
profile = False  # print torch.profiler's top ops of one extra step per run
csv = ''  # write the table to this path
quick = False  # 1 warm-up and 3 timed steps, at most 20 sampled tokens
seed = 1337
# optimizer config: train.py's defaults, copied (importing train.py would start a training run)
OPT_CFG = dict(learning_rate=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99, spectron_lr=0.02, spectron_beta=0.95,
               muon_lr=0.01, muon_beta=0.95, spectron_ortho=True, spectron_renorm=True,
               ns_steps=5, spectron_power_iters=1, spectron_wd=0.0, energy=0.99, rank_warmup=500,
               rank_interval=250, min_rank=4)
GRAD_CLIP = 1.0  # train.py's grad_clip
# -----------------------------------------------------------------------------
DEFAULTS = {k: v for k, v in globals().items()
            if k.islower() and not k.startswith('_') and isinstance(v, (int, float, bool, str))}  # not __name__ etc.


def validate(c):
    """c, checked and completed before any work: bad input is one line and exit status 2"""
    def split(key, kind):
        try:
            return [kind(s) for s in c[key].split(',') if s.strip()]
        except ValueError:
            die(f"{key}: cannot read {c[key]!r} as comma-separated {kind.__name__}s")
    c['modes'], c['widths'], c['ranks'] = split('modes', str.strip), split('widths', int), split('ranks', float)
    checks = [(c[k] >= 1, f"{k} must be >= 1, got {c[k]}")  # first: n_head divides the widths below
              for k in ('n_layer', 'n_head', 'block_size', 'batch_size', 'vocab_size', 'steps')]
    checks += [(m in lowrank.MODES, f"unknown mode {m!r} in --modes; known: {', '.join(lowrank.MODES)}")
               for m in c['modes']]
    checks += [(0 < f <= 1, f"rank fraction {f} is outside (0, 1]") for f in c['ranks']]
    checks += [(d >= 1 and c['n_head'] >= 1 and d % c['n_head'] == 0,
                f"width {d} is not a positive multiple of n_head={c['n_head']}") for d in c['widths']]
    checks += [(c[k] >= 0, f"{k} must be >= 0, got {c[k]}") for k in ('warmup', 'sample_tokens', 'threads')]
    checks += [(c['device'] in ('cpu', 'cuda'), f"device must be cpu or cuda, got {c['device']!r}"),
               (c['device'] != 'cuda' or torch.cuda.is_available(), "device=cuda but no CUDA GPU is available"),
               (c['dtype'] in ('auto', 'float32', 'bfloat16'), f"dtype {c['dtype']!r}: not auto, float32, bfloat16"),
               (c['widths'], "widths is empty"),
               (c['ranks'] or all(lowrank.MODES[m].layer is lowrank.DenseLinear for m in c['modes']),
                "ranks is empty: the factorized modes in --modes would not run")]
    for ok, msg in checks:
        if not ok:
            die(msg)
    c['modes'] = [m for m in lowrank.MODES if m in c['modes'] and m != 'dense']  # registry order: nfw before spectron
    if c['dtype'] == 'auto':
        c['dtype'] = 'bfloat16' if c['device'] == 'cuda' else 'float32'
    if c['quick']:
        c.update(warmup=1, steps=3, sample_tokens=min(c['sample_tokens'], 20))
    c['opt_cfg'] = dict(OPT_CFG,
                        rank_warmup=max(OPT_CFG['rank_warmup'], c['warmup'] + c['steps'] + 2))  # never truncate here
    try:  # every row's model and optimizers, built on the meta device (no memory, no time): what a mode refuses
        for d in c['widths']:  # (TSVD: a rank below its min_rank) stops here, not after the rows before it
            for mode_name, rank in plan(c, d):
                config = gpt_config(c, d, mode_name, rank)
                with torch.device('meta'):
                    lowrank.MODES[config.mode].optimizers(GPT(config), c['opt_cfg'])
    except ValueError as e:
        die(f"d={d} {mode_name} rank {rank}: {e}")
    try:  # opened now (to append: a run that fails keeps the old file): a path that cannot be written is refused
        c['csv_file'] = open(c['csv'], 'a', newline='') if c['csv'] else None  # before the benchmark, not after
    except OSError as e:
        die(f"cannot write csv={c['csv']}: {e.strerror}")
    return c


def plan(c, d):
    """(mode, rank) of each row at width d: dense (the baseline) first, plain, the modes of full W, then every rank"""
    full_w = [m for m in c['modes'] if lowrank.MODES[m].layer is lowrank.DenseLinear]  # muon: no rank to vary
    rows = [('dense', d)] + [('plain', d)] * c['plain'] + [(m, d) for m in full_w]
    return rows + [(m, max(1, round(f * d))) for f in c['ranks'] for m in c['modes'] if m not in full_w]


def gpt_config(c, d, mode_name, rank):
    return GPTConfig(block_size=c['block_size'], vocab_size=c['vocab_size'], n_layer=c['n_layer'],
                     n_head=c['n_head'], n_embd=d, mode='dense' if mode_name == 'plain' else mode_name, rank=rank)


def device_name(c):
    if c['device'] == 'cuda':
        return torch.cuda.get_device_name()
    with open('/proc/cpuinfo') as f:
        cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), 'unknown CPU')
    return f"{cpu}, {torch.get_num_threads()} threads"


def sync(c):
    if c['device'] == 'cuda':
        torch.cuda.synchronize()


def proc_status(key):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ':'))


def memory_meter(c):
    """Reset the memory peak; returns peak() -> MB grown since: CUDA's allocator peak, or on CPU the resident set's
    high-water mark (reset through /proc/self/clear_refs after handing freed heap back to the OS), else None."""
    gc.collect()
    if c['device'] == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        return lambda: (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        base = proc_status('VmRSS')
        return lambda: (proc_status('VmHWM') - base) / 2**20
    except (OSError, AttributeError, StopIteration):
        return lambda: None


def plain_linears(model):
    """Swap every DenseLinear for a bare nn.Linear holding the same parameters."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, lowrank.DenseLinear):
                new = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                new.weight, new.bias = child.weight, child.bias
                setattr(module, name, new)
    return model


def train_step(c, model, raw, mode, optimizers, x, y, it, ctx):
    """train.py's step; returns (seconds for the step, seconds for the optimizer steps + after_step)."""
    t0 = time.perf_counter()
    with torch.profiler.record_function('forward'), ctx:
        loss = model(x, y)[1]
    with torch.profiler.record_function('backward'):
        loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(list(raw.parameters()), GRAD_CLIP)
    if not torch.isfinite(grad_norm):  # train.py checks this before stepping (a device sync)
        raise RuntimeError(f"non-finite gradient at benchmark step {it}")
    t1 = time.perf_counter()
    with torch.profiler.record_function('optimizer'):
        for opt in optimizers:
            opt.step()
    with torch.profiler.record_function('after_step'):
        if mode.after_step:  # rank_warmup > the steps run here: TSVD retracts but never truncates
            mode.after_step(raw, optimizers, it, c['opt_cfg'])
    sync(c)
    t2 = time.perf_counter()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    sync(c)
    return time.perf_counter() - t0, t2 - t1


@torch.no_grad()
def sample_speed(c, raw, ctx):
    """Tokens/s of model.generate, batch 1, from a one-token prompt (after an untimed short run)."""
    raw.eval()
    idx = torch.zeros((1, 1), dtype=torch.long, device=c['device'])
    with ctx:
        raw.generate(idx, 5)
        sync(c)
        t0 = time.perf_counter()
        raw.generate(idx, c['sample_tokens'])
        sync(c)
    raw.train()
    return c['sample_tokens'] / (time.perf_counter() - t0)


def run(c, d, mode_name, rank):
    """Build one GPT, time its steps and sampling; returns the measurements."""
    peak_mb = memory_meter(c)
    torch.manual_seed(c['seed'])
    config = gpt_config(c, d, mode_name, rank)
    raw = GPT(config)
    flops, params = raw.flops_per_token(), raw.num_params()  # before the swap: bare nn.Linears have no factors()
    raw = plain_linears(raw) if mode_name == 'plain' else raw
    raw.to(c['device'])
    mode = lowrank.MODES[config.mode]
    optimizers = mode.optimizers(raw, c['opt_cfg'])
    if c['compile']:  # a fresh cache per row: every row's model recompiles GPT.forward, and past dynamo's limit (8)
        torch._dynamo.reset()  # a row would silently run eager
    graphs = torch._dynamo.utils.counters['stats']['unique_graphs']
    model = torch.compile(raw) if c['compile'] else raw
    ctx = torch.amp.autocast(c['device'], dtype=torch.bfloat16) if c['dtype'] == 'bfloat16' else nullcontext()
    gen = torch.Generator().manual_seed(c['seed'])
    x, y = (torch.randint(c['vocab_size'], (c['batch_size'], c['block_size']), generator=gen).to(c['device'])
            for _ in range(2))
    times = [train_step(c, model, raw, mode, optimizers, x, y, i + 1, ctx) for i in range(c['warmup'] + c['steps'])]
    peak = peak_mb()
    compiled = c['compile'] and torch._dynamo.utils.counters['stats']['unique_graphs'] > graphs
    if c['profile']:  # one more step, not timed: the profiler slows it down
        with torch.profiler.profile() as prof:  # CPU, and CUDA where there is one
            train_step(c, model, raw, mode, optimizers, x, y, len(times) + 1, ctx)
        print(f"\n--- profile of one step: d={d} {mode_name} rank={rank}")
        key = 'self_device_time_total' if c['device'] == 'cuda' else 'self_cpu_time_total'
        print(prof.key_averages().table(sort_by=key, row_limit=15), flush=True)
    ms, ms_opt = (statistics.median(t[j] for t in times[c['warmup']:]) * 1e3 for j in (0, 1))
    return dict(ms=ms, ms_opt=ms_opt, flops=flops, params=params, peak_mb=peak, compiled=compiled,
                gen=sample_speed(c, raw, ctx) if c['sample_tokens'] else None)


def bench(c):
    """Every (width, mode, rank) in turn; prints each row as it is measured and returns them all."""
    peak = peak_flops(c['device'], c['dtype'])
    tokens, rows = c['batch_size'] * c['block_size'], []
    d = c['widths'][0]  # an untimed run first loads kernels and thread pools, so that the first row is not charged
    run(dict(c, warmup=1, steps=1, sample_tokens=min(c['sample_tokens'], 5), profile=False, compile=False),
        d, 'dense', d)
    for d in c['widths']:
        dense, nfw = None, {}  # nfw: rank -> ms of factorized layers under plain AdamW
        for mode_name, rank in plan(c, d):
            r = run(c, d, mode_name, rank)
            layer, optimizers = lowrank.MODES['dense' if mode_name == 'plain' else mode_name][:2]
            plain_adamw = optimizers is lowrank.adamw_only  # 'vs nfw': another optimizer of NFW's factors, against it
            dense = dense or r
            flop_s = r['flops'] * tokens / r['ms'] * 1e3
            row = dict(width=d, mode=mode_name, rank=rank, params=r['params'], mflops_tok=r['flops'] / 1e6,
                       ms=r['ms'], opt_pct=100 * r['ms_opt'] / r['ms'], tok_s=tokens / r['ms'] * 1e3,
                       gflop_s=flop_s / 1e9, mfu_pct=100 * flop_s / peak if peak else None,
                       peak_mb=r['peak_mb'], speedup=dense['ms'] / r['ms'], ideal=dense['flops'] / r['flops'],
                       eff=dense['ms'] / r['ms'] * r['flops'] / dense['flops'],
                       vs_nfw_pct=100 * (r['ms'] / nfw[rank] - 1)
                       if layer is lowrank.FactorizedLinear and not plain_adamw and rank in nfw else None,
                       gen_tok_s=r['gen'], gen_x=r['gen'] / dense['gen'] if r['gen'] else None, compiled=r['compiled'])
            nfw.update({rank: r['ms']} if layer is lowrank.FactorizedLinear and plain_adamw else {})
            rows.append(row)
            print(format_row(row), flush=True)
            if c['compile'] and not row['compiled']:
                print(f"warning: d={d} {mode_name} rank {rank} ran eager: torch.compile compiled no graph", flush=True)
    return rows


COLUMNS = [  # (key, header, width, format spec)
    ('width', 'd', 4, 'd'), ('mode', 'mode', 8, 's'), ('rank', 'rank', 4, 'd'), ('params', 'params', 9, ',d'),
    ('mflops_tok', 'MFLOP/tok', 9, '.2f'), ('ms', 'ms/step', 8, '.2f'), ('opt_pct', 'opt%', 5, '.1f'),
    ('tok_s', 'tok/s', 7, ',.0f'), ('gflop_s', 'GFLOP/s', 7, '.1f'), ('mfu_pct', 'MFU%', 5, '.1f'),
    ('peak_mb', 'peakMB', 6, '.1f'), ('speedup', 'speedup', 7, '.2f'), ('ideal', 'ideal', 5, '.2f'),
    ('eff', 'eff', 4, '.2f'), ('vs_nfw_pct', 'vs nfw%', 7, '+.0f'), ('gen_tok_s', 'gen tok/s', 9, ',.0f'),
    ('gen_x', 'gen x', 5, '.2f'),
]


def format_row(row):
    blank = lambda k: 'n/a' if k == 'peak_mb' else ''  # MFU is blank off CUDA; memory is n/a where unmeasurable
    return ' '.join((blank(k) if row[k] is None else format(row[k], spec)).rjust(w) for k, _, w, spec in COLUMNS)


def main():
    c = validate({**DEFAULTS, **parse_args(DEFAULTS, sys.argv[1:], source=__file__)})
    if c['threads']:
        torch.set_num_threads(c['threads'])
    c['device_name'] = device_name(c)
    print(f"device: {c['device_name']} | torch {torch.__version__} | {c['dtype']}{', compiled' if c['compile'] else ''}"
          f" | n_layer {c['n_layer']}, n_head {c['n_head']}, block {c['block_size']}, batch {c['batch_size']}"
          f" | {c['warmup']} warm-up + {c['steps']} timed steps")
    print(' '.join(h.rjust(w) for _, h, w, _ in COLUMNS))
    rows = bench(c)
    if c['csv_file']:
        with c['csv_file'] as f:
            f.truncate(0)
            out = csvlib.writer(f)
            out.writerow(['device', 'dtype', 'compile'] + [k for k, *_ in COLUMNS])
            for row in rows:  # compile: whether the row really ran compiled
                values = (row[k] for k, *_ in COLUMNS)
                out.writerow([c['device_name'], c['dtype'], row['compiled']] +
                             ['' if v is None else round(v, 4) if isinstance(v, float) else v for v in values])
        print(f"wrote {c['csv']}")


if __name__ == '__main__':
    main()
