"""
Train a GPT whose linear layers are dense, or low-rank from step 0 (lowrank.py: the modes). --help lists every key.

    OMP_NUM_THREADS=1 python train.py --mode=spectron --rank=64  # the default run: about 4 minutes on one CPU core
    python train.py config/shakespeare_char_gpu.py --mode=dense  # a config file, then --key=value overrides
    python train.py --init_from=resume --out_dir=out  # continue out/ckpt.pt: the same run, to a max_iters you may raise
    python train.py --init_from=svd --svd_from=out-dense --mode=spectron  # factorize a dense run's weights (SVD)
    python train.py --lr_schedule=wsd --max_iters=8000 --save_at=1600,3200 --out_dir=long  # then cooldown branches:
    python train.py --init_from=branch --branch_from=long/ckpt_1600.pt --max_iters=2000 --out_dir=wsd2000
    torchrun --standalone --nproc_per_node=4 train.py  # DDP over 4 GPUs (or CPU processes, with gloo)

One thread per run (OMP_NUM_THREADS=1) is fastest on a CPU unless its cores are idle. Writes out_dir/ckpt.pt (every
eval), log.jsonl and spectra.npz, each whole or not at all. Exit status: 0 done, or stopped by Ctrl-C/SIGTERM after a
checkpoint; 2 bad input (one line, before any work); 1 a file that cannot be written (a full disk: the last good
checkpoint stays) or, with skip_nonfinite=False, a non-finite gradient.
"""
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

import configurator
import lowrank
from configurator import die, inherit, need, parse_args
from model import (GPT, GPTConfig, RunDir, Spectra, load_checkpoint, load_optimizer_states, peak_flops, rng_states,
                   set_rng_states, setup_device, wrap)
from prepare_data import atomic_write, ensure_prepared, load_splits

# -----------------------------------------------------------------------------
# default config: a spectron GPT at rank 64 (d/4) on TinyShakespeare characters, a few minutes on 1 CPU core
# I/O
out_dir = 'out'  # where ckpt.pt, log.jsonl and spectra.npz go
eval_interval = 250  # evaluate, log and checkpoint every this many steps
log_interval = 10  # print a training line (and measure max ‖ΔW‖₂) every this many steps
eval_iters = 20  # batches per split in an evaluation (always the same batches, so evals compare)
spectra_interval = 50  # record every weight matrix's singular values every this many steps (0: never)
spectra_early = 0  # also record them every 10 steps before this step (0: off): the early dynamics, finely
init_from = 'scratch'  # 'scratch', 'resume' (out_dir/ckpt.pt), 'svd' (factorize svd_from/ckpt.pt) or 'branch'
svd_from = ''  # init_from=svd: the out_dir of a dense (or muon) run, whose model shape and corpus this run takes
branch_from = ''  # init_from=branch: a wsd run's stable-phase checkpoint (ckpt_<step>.pt), continued to max_iters
save_at = ''  # wsd: also keep the checkpoints at these steps ('1600,3200'), as ckpt_<step>.pt: branch points
overwrite = False  # a fresh run (scratch or svd) may replace the checkpoints already in out_dir
# data
input_file = 'data/tinyshakespeare.txt'  # UTF-8 text, or a folder (data/shakespeare_complete); see prepare_data.py
tokenizer = 'char'  # 'char' or 'gpt2'
train_tokens = 0  # train on the first this many tokens of the training split only (0: all of it); val is unchanged
gradient_accumulation_steps = 1  # micro-steps per optimizer step (divided among DDP processes)
batch_size = 16  # sequences per micro-step
block_size = 64  # context length
# model
mode = 'spectron'  # a key of lowrank.MODES (--help lists them)
rank = 64  # rank of every factorized layer: an int, or a fraction of the layer's smaller side (0.25)
n_layer = 4  # transformer blocks
n_head = 4  # attention heads per block
n_embd = 256  # width d of the residual stream
dropout = 0.0  # dropout probability (0: none)
bias = False  # biases in the linear layers and norms
# AdamW (all parameters in dense/nfw/tsvd; embeddings, head, norms and biases in spectron and muon)
learning_rate = 1e-3  # AdamW's peak LR; unless given, the mode's own (below the config)
max_iters = 2000  # optimizer steps of the whole run (the cosine's end unless lr_decay_iters)
weight_decay = 0.1  # AdamW's decoupled weight decay (on matrices, not on norms or biases)
beta1 = 0.9  # AdamW's β₁
beta2 = 0.99  # AdamW's β₂
grad_clip = 1.0  # clip the global gradient norm to this (0: don't clip)
# LR schedule: linear warmup, then cosine down to min_lr, or (wsd) constant, then a decay to min_lr over the end
decay_lr = True  # False: the peak step size throughout, no warmup
lr_schedule = 'cosine'  # cosine | wsd (warmup-stable-decay: a long run's stable phase serves every shorter budget)
warmup_iters = 100  # steps of linear warmup up to the peak
lr_decay_iters = 0  # cosine: it reaches min_lr here (0: at max_iters)
min_lr = 1e-4  # the schedule's floor; unless given, learning_rate / 10 (below the config)
decay_frac = 0.2  # wsd: the decay takes the last round(decay_frac · max_iters) steps
decay_shape = 'linear'  # wsd: linear | sqrt (1 − √progress, Hägele et al. 2024)
# Spectron (factor pairs)
spectron_lr = 0.02  # η: bound on ‖ΔW‖₂ per step (LR peak), tuned at n_embd 256; unless given, ×√(256/n_embd)
spectron_beta = 0.95  # momentum
ns_steps = 5  # Newton–Schulz steps (Muon's too)
spectron_power_iters = 1  # power-iteration steps per optimizer step (warm-started)
spectron_wd = 0.0  # decoupled weight decay on the factors
spectron_ortho = True  # orthogonalise the momentum by Newton–Schulz (False, for the ablation: step along M/‖M‖₂)
spectron_renorm = True  # scale steps by ρ = η / (σ_U + σ_V + 1) (False, for the ablation: ρ = η)
# Muon (dense block weights in muon mode)
muon_lr = 0.01  # peak LR: ‖ΔW‖₂ ≈ muon_lr · max(1, rows/cols)^½ per step
muon_beta = 0.95  # momentum (Nesterov)
# TSVD
energy = 0.99  # τ: each layer keeps the smallest rank holding this fraction of Σ s²
rank_warmup = 500  # no truncation before this step
rank_interval = 250  # re-choose ranks every this many steps
min_rank = 4  # never truncate below this
# system
device = 'auto'  # auto (cuda if there is a GPU) | cpu | cuda | cuda:N | mps
dtype = 'auto'  # auto (bfloat16 on CUDA, float32 elsewhere) | float32 | bfloat16
compile = False  # torch.compile the model
seed = 1337  # init, batches and dropout
skip_nonfinite = True  # skip (and count) a step whose gradients are not finite; False: stop the run
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool, str))]
configurator.catch_setup_errors()  # from here to the loop, an error is bad input: one line, exit 2
given = parse_args({k: globals()[k] for k in config_keys}, sys.argv[1:], ('rank',), lowrank.modes_help(), __file__)
globals().update(given)
flags = {arg[2:].partition('=')[0] for arg in sys.argv[1:] if arg.startswith('--')}  # not a config file's keys

need(init_from in ('scratch', 'resume', 'svd', 'branch'), f"unknown init_from {init_from!r}: scratch|resume|svd|branch")
for key, needs in (('branch_from', 'branch'), ('svd_from', 'svd')):
    need((key in given) == (init_from == needs), f"--{key} and --init_from={needs} go together")
continuing = init_from in ('resume', 'branch')  # (svd starts afresh from a dense run's weights, shape and corpus)
ckpt_path = os.path.join(out_dir, 'ckpt.pt')
source = dict(resume=ckpt_path, branch=branch_from, svd=os.path.join(svd_from, 'ckpt.pt')).get(init_from)
checkpoint = load_checkpoint(source) if source else None
if checkpoint:  # its run's keys: a continuation may change only where it ends and what it reports (MAY_CHANGE)
    saved = checkpoint['config']
    globals().update(inherit(saved, given, config_keys, init_from, source))
    need(continuing or lowrank.get_mode(saved['mode']).layer is lowrank.DenseLinear,
         f"{source} is from a mode={saved['mode']} run; init_from=svd factorizes a dense (or muon) one")
the_mode = lowrank.get_mode(mode)
need(init_from != 'svd' or hasattr(the_mode.layer, 'load_svd_'), f"mode={mode}'s layers take no SVD (init_from=svd)")
ignored = sorted(k for k in flags if any(k in m.keys for m in lowrank.MODES.values()) and k not in the_mode.keys)
need(not ignored, f"mode={mode} does not use {', '.join('--' + k for k in ignored)}: drop it")

# what a fresh run derives from the config (a continuation has its checkpoint's): the values it trains with
if not continuing:  # the mode's own tuned values (lowrank.MODES; --help lists them)
    globals().update({k: given.get(k, v) for k, v in the_mode.defaults.items()})
    if 'spectron_lr' not in given:  # η was tuned at n_embd 256: ×√(256/n_embd), as its best moved (RESULTS.md)
        spectron_lr = lowrank.spectron_lr_at_width(spectron_lr, n_embd)
    if 'min_lr' not in given:
        min_lr = learning_rate / 10  # nanoGPT's floor
decay_end = lr_decay_iters or max_iters  # cosine: where the LR reaches min_lr
decay_start, save_steps = configurator.check({k: globals()[k] for k in config_keys}, continuing and checkpoint, source)

# DDP, device and data
world_size = int(os.environ.get('WORLD_SIZE', 1))  # processes under torchrun
need(gradient_accumulation_steps % world_size == 0,
     f"gradient_accumulation_steps={gradient_accumulation_steps} is not divisible by {world_size} DDP processes")
micro_steps = gradient_accumulation_steps // world_size  # this process' share of the global batch
ddp, ddp_rank, device, dtype, autocast = setup_device(device, dtype, compile)
master, device_type = ddp_rank == 0, torch.device(device).type
local_master = int(os.environ.get('LOCAL_RANK', 0)) == 0  # one process per machine tokenises; the others wait
if ddp and not local_master:
    dist.barrier()  # ... here, until the files are whole
data_dir = ensure_prepared(input_file, tokenizer, min_tokens=block_size + 2)
if ddp and local_master:
    dist.barrier()
meta, data = load_splits(data_dir, train_tokens, block_size)  # memory-mapped token files
need(checkpoint is None or checkpoint['meta'].get('input_sha256', meta['input_sha256']) == meta['input_sha256'],
     f"{input_file} has changed since {source} was trained on it")
def get_batch(split, gen, n):
    """n random windows of block_size + 1 tokens; gen decides which, so that runs and resumes repeat exactly."""
    d = data[split]
    ix = torch.randint(len(d) - block_size - 1, (n,), generator=gen).tolist()
    x, y = (torch.from_numpy(np.stack([d[i + k:i + k + block_size] for i in ix]).astype(np.int64)) for k in (0, 1))
    pin = device_type == 'cuda'  # pinned memory: an asynchronous copy to the GPU
    return tuple((t.pin_memory() if pin else t).to(device, non_blocking=pin) for t in (x, y))

# model and optimizers; a continuation's state: optimizers, counters and every random stream
config = {k: globals()[k] for k in config_keys}  # as resolved: what the checkpoint and the log keep
torch.manual_seed(seed)  # the same init on every process
raw_model = GPT(GPTConfig.from_run_config(config, meta['vocab_size']))  # a rank that fits no layer stops here
if ddp_rank:  # the RNG now feeds only dropout, which must differ across processes (0 goes on as a single process)
    torch.manual_seed(seed + ddp_rank)
if init_from == 'svd':
    kept = raw_model.load_dense(checkpoint['model'])
    if master:
        print(f"init from the SVD of {source} ({saved['mode']}, step {checkpoint['iter_num']}): rank {rank} keeps "
              f"{kept:.2%} of the spectral energy")
elif continuing:
    lowrank.match_shapes(raw_model, checkpoint['model'])  # TSVD layers may have been truncated
    raw_model.load_state_dict(checkpoint['model'])
raw_model.to(device)
optimizers = the_mode.optimizers(raw_model, config)  # a step size out of its range stops here
for group in (g for opt in optimizers for g in opt.param_groups):
    group['base_lr'] = group['lr']  # the schedule sets lr = base_lr × factor for every group
train_gen = torch.Generator().manual_seed(seed)  # shared by all processes: each takes its slice
iter_num, best_val_loss, skipped, seconds, spectra_seconds, train_flops = 0, float('inf'), 0, 0.0, 0.0, 0
COUNTERS = ('iter_num', 'best_val_loss', 'skipped', 'train_flops', 'seconds', 'spectra_seconds')  # ckpt keys
if continuing:
    load_optimizer_states(optimizers, checkpoint['optimizers'])
    iter_num, best_val_loss, skipped, train_flops, seconds, spectra_seconds = (checkpoint[k] for k in COUNTERS)
    train_gen.set_state(checkpoint['train_gen'])
    set_rng_states(checkpoint['rng'], ddp_rank, device_type == 'cuda')
start_iter = iter_num

model = wrap(raw_model, compile, ddp)  # what the training step calls; raw_model: evals, logs, checkpoints

def lr_factor(it):
    """Linear warmup, then cosine from 1 down to min_lr / learning_rate at decay_end; or (wsd) 1 until decay_start,
    then down to the same floor at max_iters: max_iters moves only the decay, so a long run's stable phase is a
    shorter one's. The floor, not Hägele et al.'s 0, so that wsd and cosine runs differ in shape only."""
    if not decay_lr:
        return 1.0
    if it < warmup_iters:
        return (it + 1) / (warmup_iters + 1)
    floor = min_lr / learning_rate
    if lr_schedule == 'wsd':  # linear or 1 − √: Hägele et al.'s shapes
        progress = max(0, it - decay_start) / (max_iters - decay_start)
        shape = progress if decay_shape == 'linear' else math.sqrt(progress)
        return 1.0 if progress == 0 else floor + (1 - floor) * (1 - shape)
    if it > decay_end:
        return floor
    progress = (it - warmup_iters) / max(1, decay_end - warmup_iters)
    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (1 - floor)

@torch.no_grad()
def estimate_loss(split):
    """Mean loss over the same eval_iters batches of a split every time (a fixed generator)."""
    gen = torch.Generator().manual_seed(seed + 1)
    with autocast:
        return sum(raw_model(*get_batch(split, gen, batch_size))[1].item() for _ in range(eval_iters)) / eval_iters

def save_checkpoint(rng, path=ckpt_path):
    counters = {k: globals()[k] for k in COUNTERS} | dict(seconds=time.time() - run_start)  # the run's time so far
    ckpt = dict(model=raw_model.state_dict(), optimizers=[opt.state_dict() for opt in optimizers], config=config,
                meta=meta, train_gen=train_gen.get_state(), rng=rng, **counters)
    atomic_write(path, lambda f: torch.save(ckpt, f))

def summary():
    """The last record of a finished run (experiments/lib.sh counts a run with one as done)."""
    total = time.time() - run_start
    print(f"done at step {iter_num}: {total:.0f} s" + f" ({total - seconds:.0f} s from step {start_iter})" * (
        start_iter > 0) + f", of which spectra logging {spectra_seconds:.1f} s ({spectra_seconds / total:.1%})")
    run_dir.log('summary', iter=iter_num, seconds=total, spectra_seconds=spectra_seconds, skipped=skipped)

tokens_per_iter = gradient_accumulation_steps * batch_size * block_size
peak = peak_flops(device, dtype)  # one GPU's, for MFU on known GPUs
params, dense_params = raw_model.num_params(), raw_model.num_params(dense_equivalent=True)
run_start = time.time() - seconds  # a continued run's time counts from its start (a branch: from its parent's)
stop_signals = []  # Ctrl-C or SIGTERM from here on (out_dir is written): finish the step, checkpoint, then exit
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda signum, frame: stop_signals.append(signum))
run_dir = RunDir(out_dir, fresh=not continuing) if master else None  # process 0 writes out_dir
if continuing and iter_num >= max_iters:  # nothing to train: say how to go on
    if master:
        if not any(r['kind'] == 'summary' for r in run_dir.read_log(out_dir)):
            summary()  # a kill came between the last checkpoint and the summary
        print(f"{source} is at step {iter_num}, max_iters={max_iters}: nothing to train. To go on, resume with a "
              f"larger one (--max_iters={2 * iter_num}): the cosine then stretches to the new end, so the LR goes up")
    sys.exit(0)
if master:  # a continuation keeps what was logged before its step (a branch: its parent's); the rest is redone
    parent = os.path.dirname(branch_from) if init_from == 'branch' else out_dir
    run_dir.start_log(parent, iter_num, eval_interval)
    run_dir.log('config', **config, iter=iter_num)
    spectra = Spectra(os.path.join(out_dir, 'spectra.npz'), os.path.join(parent, 'spectra.npz'), iter_num)
    print(f"continuing {source} from step {iter_num}\n" * (iter_num > 0) + f"mode {mode}" + f", rank {rank}" * (
        'rank' in the_mode.keys) + f": {params / 1e6:.3f}M parameters ({dense_params / 1e6:.3f}M dense-equivalent), "
          f"{raw_model.flops_per_token() / 1e6:.2f} MFLOPs/token, {tokens_per_iter:,} tokens/iter, device {device} "
          f"({dtype}){f', {world_size} processes' if ddp else ''}")
    for bad, text in ((params > dense_params, f"rank {rank} at n_embd {n_embd} has more parameters than dense"),
                      (decay_lr and 0 < max_iters <= warmup_iters, f"max_iters={max_iters} ends inside the warmup"),
                      (the_mode.after_step and max_iters < max(rank_warmup, rank_interval),
                       f"max_iters={max_iters} ends before TSVD's first rank choice")):
        if bad:
            print(f"warning: {text}")
checkpoint = None  # free its memory
configurator.setting_up = False

# training loop
good = True  # the last eval's val loss was finite: a diverged model never replaces the last good checkpoint
while True:
    factor = lr_factor(iter_num)
    for group in (g for opt in optimizers for g in opt.param_groups):
        group['lr'] = group['base_lr'] * factor

    final = iter_num == max_iters  # spectra, eval and checkpoint at the last step, whatever the intervals
    if master and (spectra_interval and (iter_num % spectra_interval == 0 or final)
                   or iter_num < spectra_early and iter_num % 10 == 0):
        t_spectra = time.time()
        spectra.record(raw_model, iter_num)
        spectra_seconds += time.time() - t_spectra
    evaluating = iter_num % eval_interval == 0 or final
    rng = rng_states(ddp, world_size, device_type == 'cuda') if evaluating and iter_num or iter_num in save_steps \
        else None  # all processes' RNG states, for process 0's checkpoint
    if master and iter_num in save_steps:  # a branch point
        save_checkpoint(rng, os.path.join(out_dir, f'ckpt_{iter_num}.pt'))
    if master and evaluating:
        raw_model.eval()  # no dropout
        losses = {split: estimate_loss(split) for split in ('train', 'val')}
        raw_model.train()
        ranks = {name: m.rank for name, m in raw_model.linear_layers()}
        r = list(ranks.values())
        shown = f", ranks {min(r)}-{max(r)} (mean {np.mean(r):.1f})" if the_mode.after_step or len(set(r)) > 1 else ''
        bits = f" ({losses['val'] / math.log(2):.3f} bits/char)" if tokenizer == 'char' else ''
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}{bits}{shown}")
        run_dir.log('eval', iter=iter_num, train_loss=losses['train'], val_loss=losses['val'], ranks=ranks,
                    params=raw_model.num_params(), flops_per_token=raw_model.flops_per_token(), train_flops=train_flops)
        best_val_loss, good = min(best_val_loss, losses['val']), math.isfinite(losses['val'])
        if iter_num > 0 and good:
            save_checkpoint(rng)
        elif iter_num > 0:
            print(f"step {iter_num}: val loss not finite, ckpt.pt stays the last good checkpoint")
    if final:
        if master:
            summary()
        break

    # forward, backward: this process' micro-batches of one global batch drawn from the shared generator
    t0 = time.time()  # ms/iter times the training step alone, not evals, spectra or checkpoints
    flops_per_iter = raw_model.flops_per_token() * tokens_per_iter  # now: after_step may shrink TSVD's layers
    train_flops += flops_per_iter  # training FLOPs spent so far (Σ over steps: a shrinking rank is credited)
    x_all, y_all = get_batch('train', train_gen, gradient_accumulation_steps * batch_size)
    train_loss = torch.zeros((), device=device)
    for micro in range(micro_steps):
        first = (ddp_rank * micro_steps + micro) * batch_size
        if ddp:  # all-reduce gradients only on the last micro-step
            model.require_backward_grad_sync = micro == micro_steps - 1
        with autocast:
            loss = model(x_all[first:first + batch_size], y_all[first:first + batch_size])[1] / micro_steps
        loss.backward()
        train_loss += loss.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), grad_clip or float('inf'))

    logging = iter_num % log_interval == 0
    if not torch.isfinite(grad_norm):  # never write a non-finite update into the weights
        bad = next((f"first in {n}" for n, p in raw_model.named_parameters() if p.grad is not None and
                    not p.grad.isfinite().all()), "each one finite, their norm overflows")  # huge weights do that
        if not skip_nonfinite:
            die(f"stopping at step {iter_num}: non-finite gradient ({bad}); the last good checkpoint is "
                f"{ckpt_path if os.path.exists(ckpt_path) else 'none yet'}", 1)
        skipped += 1
        print(f"step {iter_num}: non-finite gradient ({bad}), step skipped ({skipped} so far)")
    else:
        before = raw_model.snapshot_factors() if logging and master else None
        for opt in optimizers:
            opt.step()
        if the_mode.after_step and the_mode.after_step(raw_model, optimizers, iter_num + 1, config):
            model = wrap(raw_model, compile, ddp)  # new parameter tensors: DDP and compile must see them
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)

    if logging and device_type == 'cuda':
        torch.cuda.synchronize()  # kernels run asynchronously: time their work, not their launch
    dt = time.time() - t0
    if logging and ddp:  # every process must join the all-reduce
        dist.all_reduce(train_loss, op=dist.ReduceOp.AVG)
    if logging and master:
        lossf = train_loss.item()
        max_dw = raw_model.max_update_norm(before) if before else float('nan')
        mfu = f" (MFU {flops_per_iter / dt / (world_size * peak):.1%})" if peak else ""
        print(f"iter {iter_num}: loss {lossf:.4f}, {the_mode.step_size} {factor * config[the_mode.step_size]:.2e}, "
              f"{dt * 1000:.1f} ms/iter, {tokens_per_iter / dt:,.0f} tok/s, {flops_per_iter / dt / 1e9:.1f} GFLOP/s"
              f"{mfu}, max|dW| {max_dw:.2e}")
        run_dir.log('train', iter=iter_num, loss=lossf, lr_factor=factor, ms=dt * 1000, max_dW=max_dw,
                    skipped=skipped, grad_norm=grad_norm.item(), lr=[g['lr'] for opt in optimizers for g in
                                                                     opt.param_groups])
    iter_num += 1
    stop = bool(stop_signals)
    if ddp:  # torchrun signals its processes one by one: stop together, or one waits forever in an all-reduce
        stop_flag = torch.tensor(float(stop), device=device)
        dist.all_reduce(stop_flag, op=dist.ReduceOp.MAX)
        stop = stop_flag.item() > 0
    if stop:
        rng = rng_states(ddp, world_size, device_type == 'cuda')
        if master and good:
            save_checkpoint(rng)
            print(f"stopped by a signal after step {iter_num}; checkpoint saved. Resume with: "
                  f"python train.py --out_dir={out_dir} --init_from=resume")
        break

if ddp:
    dist.barrier()  # process 0 may still be evaluating and checkpointing: leave together
    dist.destroy_process_group()
