"""
A GPT in the nanoGPT mould: pre-LayerNorm blocks, causal attention through scaled_dot_product_attention,
a GELU MLP, token embedding tied to the LM head.

The one thing it knows of low-rank training is lowrank.make_linear: every non-embedding linear layer (Q, K,
V and O projections, kept separate so each has its own spectrum, and the MLP's up and down) is built by it.
Embeddings, head and norms stay dense. The logs measure each such layer through its factors() (W = A Bᵀ), without
forming W: svdvals_of_product (Spectra: spectra.npz) and update_norm (max|dW|). init_from=svd (GPT.load_dense) sets each
layer that has a load_svd_ hook from the SVD of a dense model's weight.
Also a run's machinery, for train.py: its device and processes (setup_device, wrap), its checkpoints
(load_checkpoint) and its out_dir (RunDir: log.jsonl, spectra.npz).
"""
import fcntl
import glob
import json
import math
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, fields
from datetime import timedelta

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import lowrank
from prepare_data import atomic_write

# dense peak FLOP/s of one GPU by NVIDIA's datasheets: (name contains, bf16 tensor cores, fp32 without TF32, which
# train.py leaves off); the first match wins, so the PCIe and NVL parts come before the SXM ones of the same name
PEAK_FLOPS = [('H100 PCIe', 756e12, 51e12), ('H100 NVL', 835e12, 60e12), ('H800 PCIe', 756e12, 51e12),
              ('H100', 989e12, 67e12), ('H800', 989e12, 67e12), ('H200', 989e12, 67e12), ('A100', 312e12, 19.5e12)]

def peak_flops(device, dtype='bfloat16'):
    """The peak FLOP/s of one known CUDA GPU in the dtype a run computes in, for MFU; None on CPU or an unknown GPU."""
    if not str(device).startswith('cuda'):
        return None
    name = torch.cuda.get_device_name(device).lower()
    return next((bf16 if dtype == 'bfloat16' else fp32 for k, bf16, fp32 in PEAK_FLOPS if k.lower() in name), None)

def svdvals_of_product(A, B=None):
    """Singular values of W = A Bᵀ without forming W (METHODS.md §4).
    With A = Qa Ra and B = Qb Rb (thin QR), W = Qa (Ra Rbᵀ) Qbᵀ and Qa, Qb have orthonormal columns, so W and
    the small core Ra Rbᵀ have the same singular values: cost O((m+n) r²) instead of O(m n min(m, n))."""
    if B is None:  # a dense W; LAPACK is much faster on tall matrices than on wide ones here
        core = A.float() if A.shape[0] >= A.shape[1] else A.float().T
    else:
        core = torch.linalg.qr(A.float(), mode='r').R @ torch.linalg.qr(B.float(), mode='r').R.T
    if not torch.isfinite(core).all():  # a diverged run: report NaN rather than make LAPACK fail
        return torch.full((min(core.shape),), float('nan'), device=core.device)
    return torch.linalg.svdvals(core)

@torch.no_grad()
def update_norm(before, after):
    """‖W_after − W_before‖₂ from the factors of both: A₁B₁ᵀ − A₀B₀ᵀ = [A₁, −A₀] [B₁, B₀]ᵀ has rank ≤ 2r."""
    (A0, B0), (A1, B1) = before, after
    if B0 is None:
        return svdvals_of_product(A1 - A0)[0].item()
    if A1.shape != A0.shape:  # a TSVD layer was truncated in between: no "step" to measure
        return float('nan')
    return svdvals_of_product(torch.cat([A1, -A0], 1), torch.cat([B1, B0], 1))[0].item()

class Spectra:
    """A run's spectra.npz: `steps`, and per linear layer the singular values of W at each of them, a row a step
    NaN-padded to the widest (TSVD layers shrink). Rewritten whole at each record, so a kill leaves the last one."""

    def __init__(self, path, parent='', before=0):
        """Into path; a continuation from step `before` keeps the earlier records of its parent's spectra.npz."""
        self.path, self.rows = path, {}
        if before and os.path.exists(parent):
            with np.load(parent) as z:
                self.rows = {k: list(z[k][z['steps'] < before]) for k in z.files}

    @torch.no_grad()
    def record(self, model, step):
        rows = self.rows
        rows.setdefault('steps', []).append(step)
        for name, layer in model.linear_layers():
            rows.setdefault(name, []).append(svdvals_of_product(*layer.factors()).cpu().numpy())
        width = max(len(s) for k, v in rows.items() if k != 'steps' for s in v)
        arrays = {k: np.array(v) if k == 'steps' else
                  np.stack([np.pad(s, (0, width - len(s)), constant_values=np.nan) for s in v]).astype(np.float32)
                  for k, v in rows.items()}
        atomic_write(self.path, lambda f: np.savez(f, **arrays))

@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = False   # biases in linears and LayerNorms; False is a little faster and as good
    mode: str = 'dense'  # a key of lowrank.MODES
    rank: object = 64    # int, or a float fraction of each layer's smaller side

    @classmethod
    def from_run_config(cls, cfg, vocab_size):
        """The model part of a train.py config (as saved in every checkpoint)."""
        return cls(vocab_size=vocab_size, **{f.name: cfg[f.name] for f in fields(cls) if f.name != 'vocab_size'})

def load_checkpoint(path):
    """A train.py checkpoint (model, optimizers, config, meta, iter_num, ...), or a ValueError saying in one line why
    path is none: callers turn it into their one-line error."""
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path}")
    try:  # a foreign or damaged file fails anywhere from the unpickling to the config
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
        lowrank.MODES[ckpt['config']['mode']], ckpt['meta']['vocab_size'], ckpt['iter_num']
    except Exception as e:
        raise ValueError(f"{path} is not a readable nanoLowRank checkpoint (truncated or foreign?): "
                         f"{type(e).__name__}") from None
    return ckpt

class RunDir:
    """A train.py run's out_dir, locked for one process: flock on the folder goes with it however it ends, kill -9
    too. Holds log.jsonl (a JSON record a line), spectra.npz and the checkpoints, each written whole or not at all."""

    def __init__(self, path, fresh):
        """Lock path; remove a killed run's half-written files and, for a fresh run, the checkpoints it replaces."""
        os.makedirs(path, exist_ok=True)
        self.path, self.lock = path, os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"out_dir {path} is in use by another train.py run") from None
        for stale in glob.glob(f'{path}/*.tmp') + glob.glob(f'{path}/ckpt*.pt') * fresh:
            os.remove(stale)

    @staticmethod
    def read_log(folder):
        """The whole records of folder's log.jsonl (a line cut short by a kill has no newline yet)."""
        path = os.path.join(folder, 'log.jsonl')
        return [json.loads(line) for line in open(path) if line.endswith('\n')] if os.path.exists(path) else []

    def start_log(self, parent, iter_num, eval_interval):
        """A continuation from iter_num keeps what parent (its own out_dir, or a branch's parent) logged before that
        step, and an eval at it that will not be redone; a fresh run starts an empty log."""
        kept = [r for r in self.read_log(parent) if r['iter'] < iter_num or r['kind'] == 'eval' and r['iter'] ==
                iter_num and iter_num % eval_interval] if iter_num else []
        atomic_write(os.path.join(self.path, 'log.jsonl'), lambda f: f.write(''.join(
            json.dumps(r) + '\n' for r in kept).encode()))

    def log(self, kind, **fields):
        with open(os.path.join(self.path, 'log.jsonl'), 'a') as f:
            f.write(json.dumps({'kind': kind, **fields}) + '\n')

def setup_device(device, dtype, compile):
    """(ddp, rank, device, dtype, autocast) of this process: under torchrun (RANK set), its process group joined and
    its own GPU; device 'auto' is cuda if there is one, dtype 'auto' bfloat16 where the GPU computes it natively."""
    ddp, rank = 'RANK' in os.environ, int(os.environ.get('RANK', 0))
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if device == 'auto' else device
    if ddp:  # process 0 may evaluate and checkpoint while the others wait: more than NCCL's default 10 minutes
        torch.distributed.init_process_group(backend='nccl' if device.startswith('cuda') else 'gloo',
                                             timeout=timedelta(hours=1))
        device = f"cuda:{os.environ['LOCAL_RANK']}" if device.startswith('cuda') else device
    torch.zeros(1, device=device)  # a device this machine lacks: torch's own one-line error, now
    device_type = torch.device(device).type
    if device.startswith('cuda:'):  # the current device is the one RNG state, synchronize and SDPA default to
        torch.cuda.set_device(device)
    if dtype == 'auto':  # V100 and T4 emulate bf16 slowly: float32 there
        dtype = 'bfloat16' if device_type == 'cuda' and torch.cuda.is_bf16_supported(False) else 'float32'
    if dtype not in ('float32', 'bfloat16'):
        raise ValueError(f"dtype must be auto, float32 or bfloat16, got {dtype!r}")
    if compile and device_type == 'cpu' and not (shutil.which('g++') or shutil.which('clang++')):
        raise ValueError("compile=True on a CPU needs a C++ compiler (g++ or clang++) on PATH")
    autocast = nullcontext() if dtype == 'float32' else torch.amp.autocast(device_type, dtype=torch.bfloat16)
    return ddp, rank, device, dtype, autocast

def wrap(model, compile, ddp):
    """The module a training step calls: compiled and/or DDP-wrapped. Rebuilt when parameter shapes change."""
    if compile:  # a fresh cache: each new shape would otherwise recompile until dynamo's limit (8), then eager
        torch._dynamo.reset()
    m = torch.compile(model) if compile else model
    cuda = next(model.parameters()).is_cuda
    return torch.nn.parallel.DistributedDataParallel(m, device_ids=[torch.cuda.current_device()] if cuda else None) \
        if ddp else m

def rng_states(ddp, world_size, cuda):
    """Every process' RNG states (dropout's masks), so that a resume continues each process' stream. Collective."""
    mine = dict(cpu=torch.get_rng_state(), cuda=torch.cuda.get_rng_state() if cuda else None)
    states = [mine] * world_size
    if ddp:
        torch.distributed.all_gather_object(states, mine)
    return states

def set_rng_states(states, rank, cuda):
    """A checkpoint's RNG states for process rank; a process the saving run did not have keeps its fresh seed."""
    if rank < len(states):
        torch.set_rng_state(states[rank]['cpu'])
        if cuda and states[rank]['cuda'] is not None:
            torch.cuda.set_rng_state(states[rank]['cuda'])

def load_optimizer_states(optimizers, states):
    """A checkpoint's optimizer states, each with this device's kernels (fused, foreach, capturable), not the saver's:
    a GPU run's checkpoint continues on a CPU as a CPU run would."""
    for opt, state in zip(optimizers, states):
        for saved, group in zip(state['param_groups'], opt.param_groups):
            saved.update({k: group[k] for k in ('fused', 'foreach', 'capturable') if k in group})
        opt.load_state_dict(state)

class CausalSelfAttention(nn.Module):
    def __init__(self, config, linear):
        super().__init__()
        d = config.n_embd
        if d % config.n_head:
            raise ValueError(f"n_embd={d} is not divisible by n_head={config.n_head}")
        self.q, self.k, self.v = linear(d, d, 'attn'), linear(d, d, 'attn'), linear(d, d, 'attn')
        self.o = linear(d, d, 'attn', residual=True)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = (proj(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.o(y.transpose(1, 2).contiguous().view(B, T, C)))

class MLP(nn.Module):
    def __init__(self, config, linear):
        super().__init__()
        self.up = linear(config.n_embd, 4 * config.n_embd, 'mlp')
        self.down = linear(4 * config.n_embd, config.n_embd, 'mlp', residual=True)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.down(F.gelu(self.up(x))))

class Block(nn.Module):
    def __init__(self, config, linear):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, linear)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, linear)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config

        def linear(n_in, n_out, part, residual=False):
            # nanoGPT's init: std 0.02, and 0.02/sqrt(2·n_layer) on projections into the residual stream
            std = 0.02 / math.sqrt(2 * config.n_layer) if residual else 0.02
            return lowrank.make_linear(config.mode, n_in, n_out, config.rank, config.bias, std, part)

        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, linear) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        for emb in (self.wte, self.wpe):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, idx, targets=None):
        T = idx.size(1)
        assert T <= self.config.block_size, f"sequence of {T} tokens > block_size {self.config.block_size}"
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if targets is None:  # sampling: only the last position's logits are needed
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    @classmethod
    def from_checkpoint(cls, ckpt, **changes):
        """The model a checkpoint holds, its TSVD layers shrunk to their saved ranks; changes: e.g. dropout=0.0."""
        model = cls(GPTConfig.from_run_config({**ckpt['config'], **changes}, ckpt['meta']['vocab_size']))
        lowrank.match_shapes(model, ckpt['model'])
        model.load_state_dict(ckpt['model'])
        return model

    def linear_layers(self):
        """(name, layer) for every low-rank-able matrix: 'blocks.{i}.attn.{q,k,v,o}', 'blocks.{i}.mlp.{up,down}'."""
        return [(name, m) for name, m in self.named_modules() if hasattr(m, 'factors')]

    def snapshot_factors(self):
        """A copy of every layer's factors, for the exact ‖ΔW‖₂ of the coming step (update_norm)."""
        return [tuple(None if t is None else t.detach().clone() for t in m.factors())
                for _, m in self.linear_layers()]

    def max_update_norm(self, before):
        """max over layers of ‖W − W_before‖₂ (update_norm), before: a snapshot_factors() of the step's start."""
        return max(update_norm(b, m.factors()) for b, (_, m) in zip(before, self.linear_layers()))

    @torch.no_grad()
    def load_dense(self, state_dict):
        """init_from=svd: every layer with a load_svd_ hook from the truncated SVD of its weight in a dense model's
        state_dict (the best approximation of its rank: Eckart–Young), the rest (embeddings, norms, biases) copied.
        Returns the fraction of the weights' spectral energy (Σ s²) kept."""
        layers = {f'{name}.weight': m for name, m in self.named_modules() if hasattr(m, 'load_svd_')}
        kept = total = 0.0
        for key, layer in layers.items():
            P, s, Qh = torch.linalg.svd(state_dict[key].float(), full_matrices=False)
            layer.load_svd_(P[:, :layer.rank], s[:layer.rank], Qh[:layer.rank].T)
            kept, total = kept + s[:layer.rank].square().sum().item(), total + s.square().sum().item()
        self.load_state_dict({**self.state_dict(), **{k: v for k, v in state_dict.items() if k not in layers}})
        return kept / total

    def num_params(self, dense_equivalent=False):
        """Parameters, without the position embedding (nanoGPT's convention). dense_equivalent: as if every
        low-rank layer were a dense in×out matrix."""
        n = sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()
        if dense_equivalent:
            for _, m in self.linear_layers():
                n += m.in_features * m.out_features - sum(p.numel() for k, p in m.named_parameters() if k != 'bias')
        return n

    def flops_per_token(self):
        """Matmul FLOPs of one training token (forward + backward = 3 × forward = 6 per weight), at full context:
        6 × (low-rank layers' weights + the tied head) + attention's QKᵀ and AV (nanoGPT's 12·L·d·T)."""
        weights = sum(p.numel() for _, m in self.linear_layers() for p in m.parameters() if p.dim() == 2)
        weights += self.lm_head.weight.numel()
        c = self.config
        return 6 * weights + 12 * c.n_layer * c.n_embd * c.block_size

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Extend idx (B, T) by max_new_tokens, sampling each from the softmax of logits / temperature."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size:])
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('inf')
            idx = torch.cat((idx, torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)), dim=1)
        return idx
