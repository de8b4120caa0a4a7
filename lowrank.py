"""The heart of nanoLowRank: the linear layers a GPT is built from, and the optimizers that train them. Read it
top to bottom, one section per method:

    §1 dense     W (out×in), the nanoGPT baseline, trained with AdamW (or Muon, §3).
    §2 nfw       W = V Uᵀ from step 0, two thin factors trained with plain AdamW (Native Factorized Weights).
    §3 spectron  the same factors, trained with Spectron so that ‖ΔW‖₂ ≲ η every step (Janson et al. 2026).
    §4 tsvd      W = U diag(s) Vᵀ, U and V orthonormal, each layer's rank shrunk by its spectral energy (Kamali et al.).
    §5 cola      y = SiLU(x U) Vᵀ: the factors with a nonlinearity between them (Liu et al. 2025).

Every layer exposes factors() -> (A, B) with W = A Bᵀ (B is None for a dense W), all that the spectra code
(model.py) needs. train.py reads the mode registry at the bottom (§6); a new mode is a new entry there.
"""
import math
from collections import defaultdict, namedtuple

import torch
import torch.nn as nn
import torch.nn.functional as F

def check(ok, message):
    """Every argument check here: unless ok, a ValueError whose one-line message names the key."""
    if not ok:
        raise ValueError(message)

def resolve_rank(rank, in_features, out_features):
    """--rank is a count (64) or a fraction of the layer's smaller side (0.25); either must fit the layer."""
    full = min(in_features, out_features)
    if isinstance(rank, float):
        check(0 < rank <= 1, f"rank={rank}: a fractional rank must be in (0, 1]")
        rank = max(1, round(rank * full))
    check(1 <= rank <= full, f"rank={rank} does not fit a {in_features}->{out_features} layer (need 1..{full})")
    return rank

# -----------------------------------------------------------------------------
# 1. Dense: the baseline. A plain nn.Linear, so dense mode costs exactly what nanoGPT costs.

class DenseLinear(nn.Linear):
    def __init__(self, in_features, out_features, rank, bias, init_std):
        super().__init__(in_features, out_features, bias=bias)
        nn.init.normal_(self.weight, std=init_std)
        if bias:
            nn.init.zeros_(self.bias)

    @property
    def rank(self):
        return min(self.in_features, self.out_features)

    def factors(self):
        return self.weight, None

# -----------------------------------------------------------------------------
# 2. NFW: W = V Uᵀ from initialization; no dense W ever exists.

class FactorPair(nn.Module):
    """U: in×r, V: out×r, W = V Uᵀ: r (in + out) parameters instead of in·out; the layer of NFW and of CoLA (§5).
    Init: an entry of W sums r products, so std(U)·std(V) = gain·init_std / √r gives W gain × a dense layer's std;
    split so that ‖U‖_F = ‖V‖_F: neither factor holds more of the scale, which matters to Spectron's ρ (σ_U + σ_V)."""
    gain = 1

    def __init__(self, in_features, out_features, rank, bias, init_std):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        r = resolve_rank(rank, in_features, out_features)
        product_std = self.gain * init_std / math.sqrt(r)
        std_u = math.sqrt(product_std * math.sqrt(out_features / in_features))
        std_v = math.sqrt(product_std * math.sqrt(in_features / out_features))
        self.U = nn.Parameter(torch.randn(in_features, r) * std_u)
        self.V = nn.Parameter(torch.randn(out_features, r) * std_v)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def rank(self):
        return self.U.shape[1]

    def factors(self):
        return self.V, self.U

class FactorizedLinear(FactorPair):
    """y = (x U) Vᵀ + b: two thin matmuls."""

    def forward(self, x):
        return F.linear(x @ self.U, self.V, self.bias)

    def load_svd_(self, P, s, Q):
        """W = P diag(s) Qᵀ (P, Q orthonormal), split balanced as at init: V = P √s, U = Q √s, VᵀV = UᵀU."""
        self.V.copy_(P * s.sqrt())
        self.U.copy_(Q * s.sqrt())

# -----------------------------------------------------------------------------
# 3. Spectron: orthogonalised factor updates, renormalised by the factors' spectral norms.
# Why NFW + AdamW spikes: ΔW = ΔV Uᵀ + V ΔUᵀ + ΔV ΔUᵀ, so a bounded step per factor is not a bounded step in W;
# it grows with ‖U‖₂ and ‖V‖₂. Spectron (Alg. 1, Eq. 16) makes every factor step a near-orthogonal matrix O
# (all singular values ≈ 1) scaled by ρ = η / (σ_U + σ_V + 1); then ‖ΔU‖₂, ‖ΔV‖₂ ≲ ρ and
#     ‖ΔW‖₂ ≤ ρ‖U‖₂ + ρ‖V‖₂ + ρ² ≤ ρ (σ_U + σ_V + 1) = η        (for ρ ≤ 1).
# In code, NS leaves singular values ≤ c_ns ≈ 1.2 (5 steps) and the power iteration under-estimates σ by (1 + ε),
# ε < 1% once warm: ‖ΔW‖₂ ≤ c_ns (1 + ε) η < 1.3 η, as test_lowrank.py measures with a real SVD (weight decay, when
# on, adds about 2η·wd·‖W‖₂).

def newton_schulz(G, steps=5, eps=1e-7):
    """Orthogonalise a batch of tall matrices G (..., m, r), m ≥ r: if G = P S Qᵀ, return ≈ P Qᵀ. Muon's quintic
    iteration X ← a X + b X(XᵀX) + c X(XᵀX)² takes every singular value into about [0.7, 1.2] in five steps: enough
    for an update direction, and much cheaper than an SVD. Every iterate is X₀ Q with Q = p(S) a polynomial in the
    r×r Gram S = X₀ᵀX₀, so Q, S and the iterate's Gram A = Qᵀ S Q commute: with P = aI + bA + cA², Q ← Q P and
    A ← A P², O(r³) per step plus O(m r²) once. In float64 for float64 input (error ~1e-12), else in float32, where
    the Gram form (it squares the condition number) is off by up to ~2e-3 relative (X-iteration ~1e-5), below bf16's."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(torch.float64 if G.dtype == torch.float64 else torch.float32).reshape(-1, *G.shape[-2:])
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)  # ‖X‖₂ ≤ ‖X‖_F = 1: in the basin of the iteration
    A = X.mT @ X
    eye = torch.eye(A.size(-1), device=A.device, dtype=A.dtype)
    Q = None
    for k in range(steps):
        P = torch.baddbmm(A, A, A, beta=b, alpha=c).add_(eye, alpha=a)  # a I + b A + c A², one fused call
        Q = P if Q is None else Q @ P  # Q₀ = I: the first product is free
        if k < steps - 1:  # the last A is never used
            A = A @ (P @ P)
    return (X @ Q).view(G.shape)

def by_shape(items, shape=lambda p: p.shape):
    """items grouped by shape (in order), for one batched call per shape"""
    groups = defaultdict(list)
    for item in items:
        groups[shape(item)].append(item)
    return list(groups.values())

def check_hyperparameters(name, lr, momentum, **counts):
    """Spectron's and Muon's: a positive step size, a momentum in [0, 1), counts (ns_steps, ...) >= 1."""
    check(lr > 0, f"{name} lr must be > 0, got {lr}")
    check(0 <= momentum < 1, f"{name} momentum must be in [0, 1), got {momentum}")
    for key, n in counts.items():
        check(n >= 1, f"{key} must be >= 1, got {n}")

def power_iteration(A, v, iters=1):
    """(σ, v_next): σ_max of each matrix of a batch A (..., m, r) from warm-start unit vectors v (..., r). σ =
    sqrt(‖AᵀA v‖) ≤ σ_max, reached as v aligns with the top right-singular vector; A moves little per step, so one
    iteration per step keeps up."""
    for _ in range(iters):
        w = (A.mT @ (A @ v.unsqueeze(-1))).squeeze(-1)
        norm = w.norm(dim=-1, keepdim=True)
        sigma = norm.sqrt().squeeze(-1)
        v = w / norm.clamp_min(1e-30)
    return sigma, v

class Spectron(torch.optim.Optimizer):
    """Spectron on pairs = [(U₀, V₀), (U₁, V₁), ...], each one layer's factors; lr is η (the LR schedule scales it).
    ortho=False steps along M/‖M‖₂ instead of NS(M), renorm=False by ρ = η: the paper's ablation (each alone trained
    worse, neither diverged). A factor whose .grad is None stays put, as in torch; its partner steps at the pair's ρ."""

    def __init__(self, pairs, lr=0.02, momentum=0.95, ns_steps=5, power_iters=1, weight_decay=0.0, ortho=True,
                 renorm=True):
        pairs = list(pairs)
        check(all(isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in pairs),
              "Spectron takes a list of (U, V) pairs, one per layer, not a flat list of factors")
        for U, V in pairs:
            check(U.dim() == V.dim() == 2 and U.shape[1] == V.shape[1],
                  f"a (U, V) pair must be two 2-D factors of one rank (shape[1]): {tuple(U.shape)}, {tuple(V.shape)}")
        check_hyperparameters('spectron', lr, momentum, ns_steps=ns_steps, power_iters=power_iters)
        # one group, params [U₀, V₀, U₁, V₁, ...]: the layout of every checkpoint; step pairs them back in twos
        super().__init__([p for pair in pairs for p in pair],
                         dict(lr=lr, momentum=momentum, ns_steps=ns_steps, power_iters=power_iters,
                              weight_decay=weight_decay, ortho=ortho, renorm=renorm))

    def __setstate__(self, state):  # a checkpoint from before the switches was made with both on
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault('ortho', True)
            group.setdefault('renorm', True)

    def step_sizes(self, eta, U, V, sigma_U, sigma_V):
        """(ρ_U, ρ_V) for a pair, from η and σ (0-d tensors): Eq. 16's ρ for both. A variant overrides it (README,
        "An optimizer idea"); U, V, the factors before the step, are there for a rule on them."""
        rho = eta / (sigma_U + sigma_V + 1)
        return rho, rho

    def _init_state(self, p, index):
        # the power-iteration vector starts from a seed that depends on the factor's index only, so every
        # DDP rank (and a rerun) starts from the same vector and takes the same step
        gen = torch.Generator().manual_seed(1000 + index)
        v = torch.randn(p.shape[1], generator=gen).to(p.device)
        self.state[p].update(momentum=torch.zeros_like(p), power_vec=v / v.norm())

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params, eta = group['params'], group['lr']
            for i, p in enumerate(params):
                if not self.state[p]:
                    self._init_state(p, i)
            pairs = [(U, V) for U, V in zip(params[0::2], params[1::2]) if U.grad is not None or V.grad is not None]
            moving = [p for pair in pairs for p in pair if p.grad is not None]  # no grad: that factor stays put
            # 1-2. momentum M ← βM + (1−β)G on every factor (one fused call)
            momenta = [self.state[p]['momentum'] for p in moving]
            torch._foreach_lerp_(momenta, [p.grad for p in moving], 1 - group['momentum'])
            # 3. NS(M), batched over factors of the same shape: one bmm chain per shape, not per layer. Without ortho,
            #    M/‖M‖₂: ‖·‖₂ = 1 as NS(M)'s ≈ 1, so η still bounds a factor step (svdvals of m×r: O(m r²), like NS)
            direction = {}
            for ps in by_shape(moving):
                M = torch.stack([self.state[p]['momentum'] for p in ps]).float()
                direction.update(zip(ps, newton_schulz(M, group['ns_steps']) if group['ortho'] else
                                     M / torch.linalg.matrix_norm(M, ord=2, keepdim=True).clamp_min(1e-30)))
            # 4. σ of both factors of every pair that steps (a still factor bounds its partner's step in W), batched
            sigma = {}
            for ps in by_shape([p for pair in pairs for p in pair] if group['renorm'] else []):
                s, v = power_iteration(torch.stack(ps).float(), torch.stack([self.state[p]['power_vec'] for p in ps]),
                                       group['power_iters'])
                sigma.update(zip(ps, s))
                for p, v_p in zip(ps, v):
                    self.state[p]['power_vec'] = v_p
            # 5. each factor steps by its ρ (step_sizes); without renorm, ρ = η
            for U, V in pairs:
                rhos = self.step_sizes(eta, U, V, sigma[U], sigma[V]) if group['renorm'] else (eta, eta)
                for p, rho in zip((U, V), rhos):
                    if p.grad is not None:
                        if group['weight_decay']:
                            p.mul_(1 - eta * group['weight_decay'])
                        p.sub_(rho * direction[p].to(p.dtype))

def spectron_lr_at_width(eta, n_embd):
    """η tuned at n_embd 256, at another width η·√(256/n_embd): in 1000-step grids the best η moved ×0.65-0.68 from
    n_embd 128 to 256, near 1/√2, and about not at all across ranks (RESULTS.md, "η transfer")."""
    return eta * math.sqrt(256 / n_embd)

class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024), the dense control for Spectron: the same orthogonalised momentum, on a whole W.
        B ← μB + G,   O = NS(G + μB)  (Nesterov),   W ← W − lr · max(1, rows/cols)^½ · O
    so ‖ΔW‖₂ ≈ lr·scale: Spectron's η without the factors' renormalisation. A wide W is orthogonalised as its Wᵀ."""

    def __init__(self, params, lr=0.01, momentum=0.95, ns_steps=5):
        check_hyperparameters('muon', lr, momentum, ns_steps=ns_steps)
        super().__init__(params, dict(lr=lr, momentum=momentum, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for ps in by_shape(p for p in group['params'] if p.grad is not None):  # no grad: skipped, as in torch
                for p in ps:
                    self.state[p].setdefault('momentum', torch.zeros_like(p)).mul_(group['momentum']).add_(p.grad)
                D = torch.stack([p.grad.add(self.state[p]['momentum'], alpha=group['momentum']) for p in ps])
                rows, cols = ps[0].shape  # one batched NS per shape, as in Spectron
                O = newton_schulz(D, group['ns_steps']) if rows >= cols else newton_schulz(D.mT, group['ns_steps']).mT
                for p, o in zip(ps, O):
                    p.sub_(o.to(p.dtype), alpha=group['lr'] * max(1, rows / cols) ** 0.5)

# -----------------------------------------------------------------------------
# 4. TSVD: W = U diag(s) Vᵀ with U, V orthonormal throughout, and a rank that shrinks by spectral energy. Only the
# paper's abstract is public; these choices are ours (METHODS.md §3). Orthonormality by a retraction after each
# optimizer step, W unchanged; the stored U, V serve every forward pass until the next step (our reading of the
# paper's "caching"), and W's singular values are exactly s, so the energy rule needs no SVD. Rank only shrinks:
# regrowing would need new directions and fresh optimizer state, and a monotone rank keeps compute predictable.

class TSVDLinear(nn.Module):
    """y = ((x V) ⊙ s) Uᵀ + b with U: out×r, V: in×r orthonormal, s ≥ 0 sorted descending.
    Init: U, s, V from the SVD of a dense-init random matrix, top r kept, s rescaled so that W has the dense
    per-entry std (Σ s² = in·out·std²). Distinct s keep the retraction's SVD from rotating columns at random."""

    def __init__(self, in_features, out_features, rank, bias, init_std):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        r = resolve_rank(rank, in_features, out_features)
        U, s, Vh = torch.linalg.svd(torch.randn(out_features, in_features), full_matrices=False)
        s = s[:r] * (init_std * math.sqrt(in_features * out_features) / s[:r].norm())
        self.U = nn.Parameter(U[:, :r].contiguous())
        self.s = nn.Parameter(s)
        self.V = nn.Parameter(Vh[:r].T.contiguous())
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def rank(self):
        return self.s.shape[0]

    def forward(self, x):
        return F.linear(x @ (self.V * self.s), self.U, self.bias)  # scale V (in×r), not the tokens×r activation

    def factors(self):
        return self.U * self.s, self.V

    def load_svd_(self, P, s, Q):
        """W = P diag(s) Qᵀ: an SVD (P, Q orthonormal, s descending) is this layer's parametrisation as it stands."""
        for param, value in zip((self.U, self.s, self.V), (P, s, Q)):
            param.copy_(value)

def r_factor(M):
    """R of the thin QR M = Q R of a batch of tall M (..., m, r), one optimizer step from orthonormal: Cholesky's
    R = chol(MᵀM)ᵀ is then exact to rounding and several times faster than QR, the fallback if MᵀM is not PD."""
    L, info = torch.linalg.cholesky_ex(M.mT @ M)
    return torch.linalg.qr(M, mode='r').R if info.any() else L.mT

@torch.no_grad()
def retract_all(layers):
    """Back to orthonormal U, V after an optimizer step, batched over layers of the same shapes. First each column of
    U and V back to unit length, so that s alone carries W's scale and moves only by its own AdamW steps (at most
    about lr a step, as a dense W's entries do). Kept, a column's length would move s multiplicatively: AdamW moves
    every coordinate by about lr, so the part of a step across the column lengthens it by |Δ⊥|² in the square, which
    compounds as exp(steps·lr²·(m+n)) even for pure noise, and the part along it changes s by a factor 1 + u·Δ that
    compounds too (both ran away in long runs: RESULTS, the ladder's TSVD). Then W = U diag(s) Vᵀ is kept exactly:
    U = Qu Ru, V = Qv Rv  ⇒  W = Qu (Ru diag(s) Rvᵀ) Qvᵀ = (Qu P) diag(s') (Qv Q)ᵀ with P s' Qᵀ the core's SVD;
    Qu P = U (Ru⁻¹ P) needs only an r×r triangular solve and one m×r×r matmul."""
    for group in by_shape(layers, shape=lambda layer: (layer.U.shape, layer.V.shape)):
        U, s, V = (torch.stack([getattr(layer, name) for layer in group]).float() for name in ('U', 's', 'V'))
        U, V = U / U.norm(dim=-2, keepdim=True), V / V.norm(dim=-2, keepdim=True)
        Ru, Rv = r_factor(U), r_factor(V)
        P, s, Qh = torch.linalg.svd((Ru * s.unsqueeze(-2)) @ Rv.mT)
        # QR and SVD fix columns up to sign: keep each pointing the way it did (Uᵀ U_new = Ruᵀ P), for AdamW's moments
        sign = torch.where(torch.diagonal(Ru.mT @ P, dim1=-2, dim2=-1) < 0, -1.0, 1.0).unsqueeze(-2)
        U = U @ torch.linalg.solve_triangular(Ru, P * sign, upper=True)
        V = V @ torch.linalg.solve_triangular(Rv, Qh.mT * sign, upper=True)
        for j, layer in enumerate(group):
            layer.load_svd_(U[j], s[j], V[j])

def energy_rank(s, tau):
    """Smallest k with Σ_{i≤k} s_i² ≥ τ Σ s_i² (s sorted descending): the rank holding a fraction τ of the energy."""
    energy = torch.cumsum(s.float().square(), 0)
    k = int(torch.searchsorted(energy, tau * energy[-1]).item()) + 1
    return min(k, len(s))

def truncate(layer, k, optimizers=()):
    """Keep a TSVD layer's top k singular triplets (the first k of U, s, V), their optimizer state sliced to match."""
    for name in ('U', 's', 'V'):
        old = getattr(layer, name)
        new = nn.Parameter(old.detach()[..., :k].clone())
        setattr(layer, name, new)
        for opt in optimizers:
            for group in opt.param_groups:
                for i, p in enumerate(group['params']):
                    if p is old:
                        group['params'][i] = new
                        opt.state[new] = {key: v[..., :k].clone() if torch.is_tensor(v) and v.shape == old.shape
                                          else v for key, v in opt.state.pop(old, {}).items()}

def tsvd_after_step(model, optimizers, iter_num, cfg):
    """Retract every TSVD layer; at rank-update steps, truncate each to its energy rank. True if shapes changed."""
    layers = [m for m in model.modules() if isinstance(m, TSVDLinear)]
    retract_all(layers)
    if iter_num < cfg['rank_warmup'] or iter_num % cfg['rank_interval'] != 0:
        return False
    ks = torch.tensor([max(cfg['min_rank'], energy_rank(layer.s, cfg['energy'])) for layer in layers],
                      device=layers[0].s.device)  # NCCL sends only CUDA tensors
    if torch.distributed.is_initialized():  # replicas hold identical s; broadcasting makes that a guarantee
        torch.distributed.broadcast(ks, 0)
    shrinking = [(layer, k) for layer, k in zip(layers, ks.tolist()) if k < layer.rank]
    for layer, k in shrinking:
        truncate(layer, k, optimizers)
    return bool(shrinking)

def match_shapes(model, state_dict):
    """Shrink TSVD layers to the ranks stored in a checkpoint, so load_state_dict finds the same shapes."""
    for name, module in model.named_modules():
        if isinstance(module, TSVDLinear) and f'{name}.s' in state_dict:
            truncate(module, state_dict[f'{name}.s'].shape[0])

# -----------------------------------------------------------------------------
# 5. CoLA: the two factors with a nonlinearity between them, trained by AdamW like NFW (METHODS.md §8).

class CoLALinear(FactorPair):
    """y = σ(x U) Vᵀ + b with σ = SiLU: a small autoencoder through rank r, at NFW's parameters and FLOPs. Not a
    linear map, so not a FactorizedLinear: Spectron's bound on ‖ΔW‖₂ is not on its map, and no SVD of a dense W gives
    its factors (it has no load_svd_). Init: NFW's with gain 2, as SiLU(h) = h/2 + O(h²) near 0: small inputs (the o
    and down projections' at init) get a dense layer's output scale; unit-variance ones (q, k, v, up: h has std
    1.1-1.6 at n_embd 256, rank 64, where SiLU's gain is ≈0.6) start 20-30% above it. factors() -> (V, U), as NFW's:
    the spectra and ‖ΔW‖₂ of a cola run are V Uᵀ's, not its map's."""
    gain = 2  # 1/SiLU'(0)

    def forward(self, x):
        return F.linear(F.silu(x @ self.U), self.V, self.bias)

# -----------------------------------------------------------------------------
# 6. Optimizers and the mode registry

def and_adamw(model, cfg, *optimizers, no_decay=()):
    """optimizers, then AdamW on every parameter of model they do not train (embeddings, head, norms, biases), with
    nanoGPT's split: matrices decay, vectors and `no_decay` do not. Fused on a GPU."""
    taken = {id(p) for opt in optimizers for group in opt.param_groups for p in group['params']}
    params = [p for p in model.parameters() if id(p) not in taken]
    no_decay = {id(p) for p in no_decay}
    decay = [p for p in params if p.dim() >= 2 and id(p) not in no_decay]
    other = [p for p in params if p.dim() < 2 or id(p) in no_decay]
    groups = [dict(params=decay, weight_decay=cfg['weight_decay']), dict(params=other, weight_decay=0.0)]
    return [*optimizers, torch.optim.AdamW([g for g in groups if g['params']], lr=cfg['learning_rate'],
                                           betas=(cfg['beta1'], cfg['beta2']), fused=params[0].is_cuda)]

adamw_only = and_adamw  # with no other optimizer: AdamW on every parameter

def spectron_and_adamw(model, cfg, optimizer=Spectron):
    """Each layer's factor pair to Spectron (or a variant: a subclass, as optimizer), the rest to AdamW, together."""
    pairs = [(m.U, m.V) for m in model.modules() if isinstance(m, FactorPair)]
    spectron = optimizer(pairs, lr=cfg['spectron_lr'], momentum=cfg['spectron_beta'], ns_steps=cfg['ns_steps'],
                         power_iters=cfg['spectron_power_iters'], weight_decay=cfg['spectron_wd'],
                         ortho=cfg['spectron_ortho'], renorm=cfg['spectron_renorm'])
    return and_adamw(model, cfg, spectron)

def muon_and_adamw(model, cfg):
    """Dense block weights to Muon, the rest to AdamW (as in spectron mode)."""
    weights = [m.weight for m in model.modules() if isinstance(m, DenseLinear)]
    muon = Muon(weights, lr=cfg['muon_lr'], momentum=cfg['muon_beta'], ns_steps=cfg['ns_steps'])
    return and_adamw(model, cfg, muon)

def muon_spectron_and_adamw(model, cfg):
    """Dense block weights to Muon, factor pairs to Spectron, the rest to AdamW: for modes that mix layers."""
    return and_adamw(model, cfg, muon_and_adamw(model, cfg)[0], spectron_and_adamw(model, cfg)[0])

def tsvd_adamw(model, cfg):
    """AdamW on U, s, V, without weight decay (U, V are orthonormal anyway, s is a vector); it checks
    tsvd_after_step's settings too, so that a bad one stops the run before it starts."""
    layers = [m for m in model.modules() if isinstance(m, TSVDLinear)]
    check(0 < cfg['energy'] <= 1, f"energy (τ) must be in (0, 1], got {cfg['energy']}")
    least = min(m.rank for m in layers)
    check(1 <= cfg['min_rank'] <= least, f"min_rank={cfg['min_rank']} must be in 1..rank={least}")
    check(cfg['rank_interval'] >= 1, f"rank_interval must be >= 1, got {cfg['rank_interval']}")
    return and_adamw(model, cfg, no_decay=[p for m in layers for p in (m.U, m.V)])

# The one list of modes: every other file asks a mode what it needs through these fields, never by its name.
#   layer       the class of every non-embedding linear, or {'attn': class, 'mlp': class}, one per part of a block
#   optimizers  (model, cfg) -> list of optimizers, stepped together
#   after_step  (model, optimizers, iter_num, cfg) -> True if parameter shapes changed (None: nothing to do)
#   defaults    the config values it trains with unless given (learning_rate: its AdamW peak as tuned in RESULTS.md,
#               but cola's is NFW's; where another optimizer trains the block weights, it trains only the rest)
#   step_size   the config key of the step size of its block weights (logs, figures and tables call it so)
#   bounded     its optimizer promises ‖ΔW‖₂ ≤ step size every step (the stability figure draws that line)
#   color       its colour in every figure (None: one from matplotlib's cycle, fixed by its place in MODES)
#   keys        the config keys its layer and optimizers read beyond AdamW's (train.py refuses another mode's)
Mode = namedtuple('Mode', 'layer optimizers after_step defaults step_size bounded color keys',
                  defaults=(None, {}, 'learning_rate', False, None, ()))
SPECTRON_KEYS = ('rank', 'spectron_lr', 'spectron_beta', 'ns_steps', 'spectron_power_iters', 'spectron_wd',
                 'spectron_ortho', 'spectron_renorm')
MODES = {
    'dense': Mode(DenseLinear, adamw_only, None, dict(learning_rate=1e-3), color='black'),
    'muon': Mode(DenseLinear, muon_and_adamw, None, dict(learning_rate=1e-3), 'muon_lr', color='tab:purple',
                 keys=('muon_lr', 'muon_beta', 'ns_steps')),
    'nfw': Mode(FactorizedLinear, adamw_only, None, dict(learning_rate=2e-3), color='tab:blue', keys=('rank',)),
    'spectron': Mode(FactorizedLinear, spectron_and_adamw, None, dict(learning_rate=1e-3), 'spectron_lr', bounded=True,
                     color='tab:orange', keys=SPECTRON_KEYS),
    'tsvd': Mode(TSVDLinear, tsvd_adamw, tsvd_after_step, dict(learning_rate=3e-3, rank=0.5, energy=0.99),
                 color='tab:green', keys=('rank', 'energy', 'rank_warmup', 'rank_interval', 'min_rank')),
    'cola': Mode(CoLALinear, adamw_only, None, dict(learning_rate=2e-3), color='tab:red', keys=('rank',)),
    # The hunt for a low-rank recipe that beats dense + Muon at equal training FLOPs (RESULTS.md, "The leaderboard"),
    # one idea a line: CoLA's layer with Spectron's steps (its bound is on V Uᵀ, not on the layer's map); factors in
    # the MLP only (2/3 of a block's weights), the attention dense and on Muon at its tuned muon_lr.
    'cola_spectron': Mode(CoLALinear, spectron_and_adamw, None, dict(learning_rate=1e-3), 'spectron_lr',
                          color='teal', keys=SPECTRON_KEYS),
    'cola_mlp': Mode(dict(attn=DenseLinear, mlp=CoLALinear), muon_and_adamw, None, dict(learning_rate=2e-3),
                     color='salmon', keys=('rank', 'muon_lr', 'muon_beta', 'ns_steps')),
    'spectron_mlp': Mode(dict(attn=DenseLinear, mlp=FactorizedLinear), muon_spectron_and_adamw, None,
                         dict(learning_rate=1e-3), 'spectron_lr', color='goldenrod',
                         keys=SPECTRON_KEYS + ('muon_lr', 'muon_beta')),
}

def get_mode(name):
    """MODES[name], or a ValueError that names the modes there are."""
    if name not in MODES:
        close = next((f" (did you mean {m!r}?)" for m in MODES if m.startswith(name[:4])), '')
        raise ValueError(f"unknown mode {name!r}{close}; known modes: {', '.join(MODES)}")
    return MODES[name]

def modes_help():
    """--help's list of modes: each one's step-size key, the defaults it sets and its own keys."""
    return '\n'.join(["modes (--mode=NAME): its step-size key, the defaults it sets unless given, its own keys"] +
                     [f"  {name}: {m.step_size}; {' '.join(f'{k}={v:g}' for k, v in m.defaults.items())}; "
                      f"{', '.join(m.keys) or '-'}" for name, m in MODES.items()])

def make_linear(mode, in_features, out_features, rank, bias=False, init_std=0.02, part='attn'):
    """The one call model.py makes for every non-embedding linear layer; part: 'attn' or 'mlp', the block's part."""
    layer = MODES[mode].layer
    return (layer[part] if isinstance(layer, dict) else layer)(in_features, out_features, rank, bias, init_std)
