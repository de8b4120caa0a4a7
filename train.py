"""
Train a GPT whose linear layers are dense, or low-rank from step 0 (see lowrank.py for the modes).

    python train.py --mode=spectron --rank=64          # the default run: about 4 minutes on 2 CPU cores
    python train.py config/shakespeare_char_gpu.py     # a config file, then --key=value overrides
    python train.py --init_from=resume --out_dir=out   # continue from out/ckpt.pt
    python train.py --init_from=svd --svd_from=out-dense --mode=spectron  # factorize a dense run's weights (SVD)
    python train.py --lr_schedule=wsd --max_iters=8000 --save_at=1600,3200 --out_dir=long  # then cooldown branches:
    python train.py --init_from=branch --branch_from=long/ckpt_1600.pt --max_iters=2000 --out_dir=wsd2000
    torchrun --standalone --nproc_per_node=4 train.py  # DDP over 4 GPUs (or CPU processes, with gloo)

Writes out_dir/ckpt.pt (atomically, at every eval), out_dir/log.jsonl (every log and eval record) and
out_dir/spectra.npz (singular values of every weight matrix every spectra_interval steps, and at the last one), and
locks out_dir while it runs (outdir.py: no second run into it, no fresh run over a checkpoint without
--overwrite=True). --help lists every key with its meaning, and the modes with their step sizes.

Exit status: 0 done (also when stopped by Ctrl-C/SIGTERM after a checkpoint, or resumed at max_iters already: raise
it to go on); 2 bad input, one line before any work; 1 a failure while running, one line: a file that cannot be
written (a full disk: the last good checkpoint stays, no temporary file is left) or, with skip_nonfinite=False, a
non-finite gradient.
"""
import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext
from datetime import timedelta

import numpy as np
import torch
from torch.distributed import destroy_process_group, init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP

import lowrank
import outdir
from configurator import decay_start, die, modes_help, parse_args, short_run_warnings, steps_to_save, train_config
from model import GPT, GPTConfig, peak_flops, svdvals_of_product, update_norm
from prepare_data import DataError, ensure_prepared, load_meta

# -----------------------------------------------------------------------------
# default config: a spectron GPT at rank 64 (d/4) on TinyShakespeare characters, a few minutes on 2 CPU cores
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
overwrite = False  # a fresh run (scratch or svd) may replace a checkpoint already in out_dir (otherwise it refuses)
keep_last = 0  # also keep this many previous checkpoints, as ckpt.1.pt (newest) ... ckpt.N.pt
# data
input_file = 'data/tinyshakespeare.txt'  # UTF-8 text, or a folder (data/shakespeare_complete); see prepare_data.py
tokenizer = 'char'  # 'char' or 'gpt2'
train_tokens = 0  # train on the first this many tokens of the training split only (0: all of it); val is unchanged
gradient_accumulation_steps = 1  # micro-steps per optimizer step (divided among DDP processes)
batch_size = 16  # sequences per micro-step
block_size = 64  # context length
# model
mode = 'spectron'  # dense | muon | nfw | spectron | tsvd (lowrank.MODES)
rank = 64  # rank of every factorized layer: an int, or a fraction of the layer's smaller side (0.25)
n_layer = 4  # transformer blocks
n_head = 4  # attention heads per block
n_embd = 256  # width d of the residual stream
dropout = 0.0  # dropout probability (0: none)
bias = False  # biases in the linear layers and norms
# AdamW (all parameters in dense/nfw/tsvd; embeddings, head, norms and biases in spectron and muon)
learning_rate = 1e-3  # AdamW's peak LR; unless set, the mode's own tuned one (lowrank.MODES, listed below)
max_iters = 2000  # optimizer steps of the whole run (the cosine's end unless lr_decay_iters)
weight_decay = 0.1  # AdamW's decoupled weight decay (on matrices, not on norms or biases)
beta1 = 0.9  # AdamW's β₁
beta2 = 0.99  # AdamW's β₂
grad_clip = 1.0  # clip the global gradient norm to this (0: don't clip)
# LR schedule: linear warmup, then cosine down to min_lr, or (wsd) constant, then a decay to min_lr over the end
decay_lr = True  # False: the peak step size throughout, no warmup
lr_schedule = 'cosine'  # cosine | wsd (warmup-stable-decay: a long run's stable phase serves every shorter budget)
warmup_iters = 100  # steps of linear warmup up to the peak
lr_decay_iters = 0  # the cosine reaches min_lr here (0: at max_iters)
min_lr = 1e-4  # the schedule's floor; unless set: learning_rate / 10 (nanoGPT's rule)
decay_frac = 0.2  # wsd: the decay takes the last round(decay_frac · max_iters) steps
decay_shape = 'linear'  # wsd: linear | sqrt (1 − √progress, Hägele et al. 2024)
# Spectron (factor pairs)
spectron_lr = 0.02  # η: bound on ‖ΔW‖₂ per step (LR peak), tuned at n_embd 256; unless set, ×√(256/n_embd)
spectron_beta = 0.95  # momentum
ns_steps = 5  # Newton–Schulz steps
spectron_power_iters = 1  # power-iteration steps per optimizer step (warm-started)
spectron_wd = 0.0  # decoupled weight decay on the factors
spectron_ortho = True  # orthogonalise the momentum by Newton–Schulz (False, for the ablation: step along M/‖M‖₂)
spectron_renorm = True  # scale steps by ρ = η / (σ_U + σ_V + 1) (False, for the ablation: ρ = η)
# Muon (dense block weights in muon mode; ns_steps above)
muon_lr = 0.01  # peak LR: ‖ΔW‖₂ ≈ muon_lr · max(1, rows/cols)^½ per step (tuned: experiments/tune.sh)
muon_beta = 0.95  # momentum (Nesterov)
# TSVD
energy = 0.99  # τ: each layer keeps the smallest rank holding this fraction of Σ s²
rank_warmup = 500  # no truncation before this step
rank_interval = 250  # re-choose ranks every this many steps
min_rank = 4  # never truncate below this
# system
device = 'auto'  # auto | cpu | cuda | cuda:N | mps
dtype = 'auto'  # auto (bfloat16 on CUDA, float32 elsewhere) | float32 | bfloat16
compile = False  # torch.compile the model
seed = 1337  # init, batches and dropout
skip_nonfinite = True  # skip (and count) a step whose gradients are not finite; False: stop the run
# -----------------------------------------------------------------------------
DEFAULTS = {k: v for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool, str))}

# -----------------------------------------------------------------------------
# config (every check in configurator.py), DDP and data

overrides = parse_args(DEFAULTS, sys.argv[1:], int_or_float=('rank',), notes=modes_help(DEFAULTS), source=__file__)
cfg, checkpoint, dense = train_config(DEFAULTS, overrides)  # what resume/branch continues; what svd factorizes
ckpt_path = os.path.join(cfg['out_dir'], 'ckpt.pt')
save_steps = steps_to_save(cfg)  # wsd branch points

ddp = int(os.environ.get('RANK', -1)) != -1
ddp_rank, world_size = (int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])) if ddp else (0, 1)
if cfg['gradient_accumulation_steps'] % world_size:
    die(f"gradient_accumulation_steps={cfg['gradient_accumulation_steps']} is not divisible by "
        f"the {world_size} DDP processes")
master = ddp_rank == 0
out_dir_lock = outdir.claim(cfg['out_dir'], cfg['init_from'] != 'resume', cfg['overwrite']) if master else None
if checkpoint is not None and checkpoint['iter_num'] >= cfg['max_iters']:  # nothing to train: say how to go on
    if master:
        outdir.add_summary(cfg['out_dir'], checkpoint)  # if a kill came between the last checkpoint and the summary
        n = checkpoint['iter_num']
        print(f"{ckpt_path} is at step {n}, {'already at' if n == cfg['max_iters'] else 'past'} max_iters="
              f"{cfg['max_iters']}: nothing to train. To go on, resume with a larger one (--max_iters={2 * n}): the "
              f"cosine then stretches to the new end, so the LR at step {n} goes back up from its floor")
    sys.exit(0)
if ddp:  # process 0 may evaluate and checkpoint while the others wait: more than NCCL's default 10 minutes
    init_process_group(backend='nccl' if cfg['device'].startswith('cuda') else 'gloo', timeout=timedelta(hours=1))
    if cfg['device'].startswith('cuda'):
        cfg['device'] = f"cuda:{os.environ['LOCAL_RANK']}"
if cfg['device'].startswith('cuda:'):  # the current device is the one RNG state, synchronize and SDPA default to
    torch.cuda.set_device(cfg['device'])
micro_steps = cfg['gradient_accumulation_steps'] // world_size  # this process' share of the global batch
device_type = cfg['device'].split(':')[0]
cfg['device_type'] = device_type
autocast = nullcontext() if cfg['dtype'] == 'float32' else torch.amp.autocast(device_type, dtype=torch.bfloat16)

local_master = int(os.environ.get('LOCAL_RANK', 0)) == 0  # one process per machine tokenises; the others wait
if ddp and not local_master:
    torch.distributed.barrier()  # ... here, until the files are whole
try:
    data_dir = ensure_prepared(cfg['input_file'], cfg['tokenizer'], min_tokens=cfg['block_size'] + 2)
except DataError as e:
    die(str(e))
if ddp and local_master:
    torch.distributed.barrier()
meta = load_meta(data_dir)
data = {s: np.memmap(os.path.join(data_dir, f'{s}.bin'), dtype=np.uint16, mode='r') for s in ('train', 'val')}
if cfg['train_tokens'] > len(data['train']):
    die(f"train_tokens={cfg['train_tokens']:,} is larger than the training split of {cfg['input_file']} "
        f"({len(data['train']):,} tokens)")
if cfg['train_tokens']:  # get_batch never reads a split's last token: with N + 1, any window in the first N may come
    data['train'] = data['train'][:cfg['train_tokens'] + 1]


def get_batch(split, gen, n):
    """n random windows of block_size + 1 tokens; gen decides which, so that runs and resumes repeat exactly."""
    d, T = data[split], cfg['block_size']
    ix = torch.randint(len(d) - T - 1, (n,), generator=gen).tolist()
    x, y = (torch.from_numpy(np.stack([d[i + k:i + k + T] for i in ix]).astype(np.int64)) for k in (0, 1))
    pin = device_type == 'cuda'  # pinned memory: an asynchronous copy to the GPU
    return tuple((t.pin_memory() if pin else t).to(cfg['device'], non_blocking=pin) for t in (x, y))


# -----------------------------------------------------------------------------
# model and optimizers

torch.manual_seed(cfg['seed'])  # the same init on every process
try:
    raw_model = GPT(GPTConfig.from_run_config(cfg, meta['vocab_size']))
except ValueError as e:  # a rank that does not fit a layer
    die(str(e))
if ddp_rank:  # the RNG now feeds only dropout, which must differ across processes (0 goes on as a single process)
    torch.manual_seed(cfg['seed'] + ddp_rank)
if checkpoint is not None:
    lowrank.match_shapes(raw_model, checkpoint['model'])  # TSVD layers may have been truncated
    raw_model.load_state_dict(checkpoint['model'])
if dense is not None:
    kept = raw_model.load_dense(dense['model'])
    if master:
        print(f"init from the SVD of {cfg['svd_from']}/ckpt.pt ({dense['config']['mode']}, iter {dense['iter_num']}): "
              f"rank {cfg['rank']} keeps {kept:.2%} of the spectral energy")
    dense = None  # free its memory
raw_model.to(cfg['device'])
mode = lowrank.MODES[cfg['mode']]
optimizers = mode.optimizers(raw_model, cfg)
for opt in optimizers:
    for group in opt.param_groups:
        group['base_lr'] = group['lr']  # the schedule sets lr = base_lr × factor for every group
if checkpoint is not None:
    for opt, state in zip(optimizers, checkpoint['optimizers']):
        for saved, group in zip(state['param_groups'], opt.param_groups):  # this device's kernels, not the saver's
            saved.update({k: group[k] for k in ('fused', 'foreach', 'capturable') if k in group})
        opt.load_state_dict(state)


def wrap(raw):
    """The module the training step calls: compiled and/or DDP-wrapped. Rebuilt when parameter shapes change."""
    if cfg['compile']:  # a fresh cache: each new shape would otherwise recompile until dynamo's limit (8), then eager
        torch._dynamo.reset()
    m = torch.compile(raw) if cfg['compile'] else raw
    return DDP(m, device_ids=[int(cfg['device'].split(':')[1])] if device_type == 'cuda' else None) if ddp else m


model = wrap(raw_model)
train_gen = torch.Generator().manual_seed(cfg['seed'])  # shared by all processes: each takes its slice
iter_num, best_val_loss, skipped, seconds, spectra_seconds, train_flops = 0, float('inf'), 0, 0.0, 0.0, 0
if checkpoint is not None:
    iter_num, best_val_loss, skipped = checkpoint['iter_num'], checkpoint['best_val_loss'], checkpoint['skipped']
    train_flops = checkpoint.get('train_flops', 0)
    seconds, spectra_seconds = checkpoint.get('seconds', 0.0), checkpoint.get('spectra_seconds', 0.0)
    train_gen.set_state(checkpoint['train_gen'])
    rng = checkpoint.get('rng') or [dict(cpu=checkpoint['torch_rng'])]  # older checkpoints: process 0's CPU RNG
    if ddp_rank < len(rng):  # a process the saving run did not have keeps its fresh seed
        torch.set_rng_state(rng[ddp_rank]['cpu'])
        if device_type == 'cuda' and rng[ddp_rank].get('cuda') is not None:
            torch.cuda.set_rng_state(rng[ddp_rank]['cuda'])
    checkpoint = None  # free its memory


def lr_factor(it):
    """Linear warmup, then cosine from 1 down to min_lr / learning_rate at lr_decay_iters; or (wsd) 1 until
    decay_start, then down to the same floor at max_iters: max_iters moves only the decay, so a long run's stable
    phase is a shorter one's. The floor, not Hägele et al.'s 0, so that wsd and cosine runs differ in shape only."""
    if not cfg['decay_lr']:
        return 1.0
    if it < cfg['warmup_iters']:
        return (it + 1) / (cfg['warmup_iters'] + 1)
    floor = cfg['min_lr'] / cfg['learning_rate']
    if cfg['lr_schedule'] == 'wsd':  # linear or 1 − √: Hägele et al.'s shapes
        progress = max(0, it - decay_start(cfg)) / (cfg['max_iters'] - decay_start(cfg))
        shape = progress if cfg['decay_shape'] == 'linear' else math.sqrt(progress)
        return 1.0 if progress == 0 else floor + (1 - floor) * (1 - shape)
    if it > cfg['lr_decay_iters']:
        return floor
    progress = (it - cfg['warmup_iters']) / max(1, cfg['lr_decay_iters'] - cfg['warmup_iters'])
    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (1 - floor)


@torch.no_grad()
def estimate_loss():
    """Mean loss over the same eval_iters batches of each split every time (a fixed generator)."""
    raw_model.eval()
    out = {}
    for split in ('train', 'val'):
        gen = torch.Generator().manual_seed(cfg['seed'] + 1)
        losses = []
        for _ in range(cfg['eval_iters']):
            x, y = get_batch(split, gen, cfg['batch_size'])
            with autocast:
                losses.append(raw_model(x, y)[1].item())
        out[split] = sum(losses) / len(losses)
    raw_model.train()
    return out


# -----------------------------------------------------------------------------
# logging, spectra and checkpoints (process 0 only)

log_path = os.path.join(cfg['out_dir'], 'log.jsonl')
spectra_path = os.path.join(cfg['out_dir'], 'spectra.npz')


def log_record(kind, **fields):
    outdir.append_line(log_path, json.dumps({'kind': kind, **fields}))


def start_logs():
    """Fresh logs for a new run; on resume, what was logged before the checkpoint (a branch: its parent's)."""
    source = os.path.dirname(cfg['branch_from']) if cfg['init_from'] == 'branch' else cfg['out_dir']
    keep, spectra = outdir.logs_before(source, iter_num) if cfg['init_from'] in ('resume', 'branch') else ([], {})
    outdir.atomic_save(''.join(keep).encode(), log_path, lambda text, f: f.write(text))
    log_record('config', **cfg, iter=iter_num)
    return spectra


@torch.no_grad()
def record_spectra(spectra):
    """Append every matrix's singular values at this step to spectra, and save them all to spectra.npz."""
    spectra.setdefault('steps', []).append(iter_num)
    for name, layer in raw_model.linear_layers():
        spectra.setdefault(name, []).append(svdvals_of_product(*layer.factors()).cpu().numpy())
    outdir.save_spectra(spectra, spectra_path)


def rng_states():
    """Every process' RNG states (dropout's masks), so that a resume continues each process' stream. Collective."""
    mine = dict(cpu=torch.get_rng_state(), cuda=torch.cuda.get_rng_state() if device_type == 'cuda' else None)
    states = [mine] * world_size
    if ddp:
        torch.distributed.all_gather_object(states, mine)
    return states


def save_checkpoint(rng, path=ckpt_path):
    if path == ckpt_path:
        outdir.rotate(cfg['out_dir'], cfg['keep_last'])
    ckpt = dict(model=raw_model.state_dict(), optimizers=[opt.state_dict() for opt in optimizers], config=cfg,
                meta=meta, iter_num=iter_num, best_val_loss=best_val_loss, skipped=skipped,
                train_gen=train_gen.get_state(), rng=rng, seconds=time.time() - run_start,
                spectra_seconds=spectra_seconds, train_flops=train_flops)
    outdir.atomic_save(ckpt, path, torch.save)


stop_signals = []  # Ctrl-C or SIGTERM: finish the step in flight, checkpoint, then exit
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda signum, frame: stop_signals.append(signum))

# -----------------------------------------------------------------------------
# training loop

tokens_per_iter = cfg['gradient_accumulation_steps'] * cfg['batch_size'] * cfg['block_size']
peak = peak_flops(cfg['device'], cfg['dtype'])  # one GPU's, for MFU on known GPUs
if master:
    spectra = start_logs()
    print(f"mode {cfg['mode']}, rank {cfg['rank']}: {raw_model.num_params() / 1e6:.3f}M parameters "
          f"({raw_model.num_params(dense_equivalent=True) / 1e6:.3f}M dense-equivalent), "
          f"{raw_model.flops_per_token() / 1e6:.2f} MFLOPs/token, {tokens_per_iter:,} tokens/iter, "
          f"device {cfg['device']} ({cfg['dtype']}){f', {world_size} processes' if ddp else ''}")
    for warning in short_run_warnings(cfg):  # stdout: stderr is for errors, one line each
        print(warning)
params = list(raw_model.parameters())
run_start, stop = time.time() - seconds, False  # a resumed run's time counts from its start
while True:
    factor = lr_factor(iter_num)
    for opt in optimizers:
        for group in opt.param_groups:
            group['lr'] = group['base_lr'] * factor

    final = iter_num == cfg['max_iters']  # spectra, eval and checkpoint at the last step, whatever the intervals
    if master and (cfg['spectra_interval'] and (iter_num % cfg['spectra_interval'] == 0 or final)
                   or iter_num < cfg['spectra_early'] and iter_num % 10 == 0):
        t_spectra = time.time()
        record_spectra(spectra)
        spectra_seconds += time.time() - t_spectra
    evaluating = iter_num % cfg['eval_interval'] == 0 or final
    rng = rng_states() if evaluating and iter_num > 0 or iter_num in save_steps else None  # all, for process 0's
    if master and iter_num in save_steps:  # a branch point (configurator: in the stable phase)
        save_checkpoint(rng, os.path.join(cfg['out_dir'], f'ckpt_{iter_num}.pt'))
    if master and evaluating:
        losses = estimate_loss()
        ranks = {name: m.rank for name, m in raw_model.linear_layers()}
        r = list(ranks.values())
        shown = f", ranks {min(r)}-{max(r)} (mean {np.mean(r):.1f})" if mode.after_step or len(set(r)) > 1 else ''
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}{shown}")
        log_record('eval', iter=iter_num, train_loss=losses['train'], val_loss=losses['val'], ranks=ranks,
                   params=raw_model.num_params(), flops_per_token=raw_model.flops_per_token(), train_flops=train_flops)
        best_val_loss = min(best_val_loss, losses['val'])
        if iter_num > 0:
            save_checkpoint(rng)
    if iter_num >= cfg['max_iters']:
        break

    # forward, backward: this process' micro-batches of one global batch drawn from the shared generator
    t0 = time.time()  # ms/iter times the training step alone, not evals, spectra or checkpoints
    flops_per_iter = raw_model.flops_per_token() * tokens_per_iter  # now: after_step may shrink TSVD's layers
    train_flops += flops_per_iter  # training FLOPs spent so far (Σ over steps: a shrinking rank is credited)
    x_all, y_all = get_batch('train', train_gen, cfg['gradient_accumulation_steps'] * cfg['batch_size'])
    train_loss = torch.zeros((), device=cfg['device'])
    for micro in range(micro_steps):
        first = (ddp_rank * micro_steps + micro) * cfg['batch_size']
        rows = slice(first, first + cfg['batch_size'])
        if ddp:  # all-reduce gradients only on the last micro-step
            model.require_backward_grad_sync = micro == micro_steps - 1
        with autocast:
            loss = model(x_all[rows], y_all[rows])[1] / micro_steps
        loss.backward()
        train_loss += loss.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg['grad_clip'] or float('inf'))

    logging = iter_num % cfg['log_interval'] == 0
    if not torch.isfinite(grad_norm):  # never write a non-finite update into the weights
        bad = next(n for n, p in raw_model.named_parameters() if p.grad is not None and not p.grad.isfinite().all())
        if not cfg['skip_nonfinite']:
            print(f"stopping at step {iter_num}: non-finite gradient, first in {bad}; " +
                  (f"the last good checkpoint is {ckpt_path}" if os.path.exists(ckpt_path) else "no checkpoint yet"),
                  file=sys.stderr)
            sys.exit(1)
        skipped += 1
        print(f"step {iter_num}: non-finite gradient (first in {bad}), step skipped ({skipped} so far)")
    else:
        before = raw_model.snapshot_factors() if logging and master else None
        for opt in optimizers:
            opt.step()
        if mode.after_step and mode.after_step(raw_model, optimizers, iter_num + 1, cfg):
            model = wrap(raw_model)  # new parameter tensors: DDP and compile must see them
            params = list(raw_model.parameters())
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)

    if logging and device_type == 'cuda':
        torch.cuda.synchronize()  # kernels run asynchronously: time their work, not their launch
    dt = time.time() - t0
    if logging and ddp:  # every process must join the all-reduce
        torch.distributed.all_reduce(train_loss, op=torch.distributed.ReduceOp.AVG)
    if logging and master:
        lossf = train_loss.item()
        max_dw = max(update_norm(b, m.factors()) for b, (_, m) in zip(before, raw_model.linear_layers())) \
            if before else float('nan')
        norm_v, norm_u = raw_model.max_factor_norms()
        flops, tok_per_s = flops_per_iter / dt, tokens_per_iter / dt  # every process' tokens
        mfu = f" (MFU {flops / (world_size * peak):.1%})" if peak else ""
        print(f"iter {iter_num}: loss {lossf:.4f}, {mode.step_size} {factor * cfg[mode.step_size]:.2e}, "
              f"{dt * 1000:.1f} ms/iter, {tok_per_s:,.0f} tok/s, {flops / 1e9:.1f} GFLOP/s{mfu}, max|dW| {max_dw:.2e}")
        log_record('train', iter=iter_num, loss=lossf, lr_factor=factor, ms=dt * 1000, tok_per_s=tok_per_s,
                   flops_per_s=flops, max_dW=max_dw, max_norm_V=norm_v, max_norm_U=norm_u, grad_norm=grad_norm.item(),
                   skipped=skipped, lr=[g['lr'] for opt in optimizers for g in opt.param_groups])  # every group's
    iter_num += 1
    stop = bool(stop_signals)
    if ddp:  # torchrun signals its processes one by one: stop together, or one waits forever in an all-reduce
        stop_flag = torch.tensor(float(stop), device=cfg['device'])
        torch.distributed.all_reduce(stop_flag, op=torch.distributed.ReduceOp.MAX)
        stop = stop_flag.item() > 0
    if stop:
        rng = rng_states()
        if master:
            save_checkpoint(rng)
            print(f"stopped by a signal ({stop_signals[0] if stop_signals else 'to another process'}) after step "
                  f"{iter_num}; checkpoint saved. Resume with: "
                  f"python train.py {' '.join(sys.argv[1:])} --init_from=resume")
        break

if master and not stop:  # what a finished run cost, spectra logging included (measured, not assumed)
    total = time.time() - run_start
    print(f"done at step {iter_num}: {total:.0f} s, of which spectra logging {spectra_seconds:.1f} s "
          f"({100 * spectra_seconds / total:.1f}%)")
    log_record('summary', iter=iter_num, seconds=total, spectra_seconds=spectra_seconds, skipped=skipped)
if ddp:
    torch.distributed.barrier()  # process 0 may still be evaluating and checkpointing: leave together
    destroy_process_group()
