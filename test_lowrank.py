"""The math of lowrank.py, and the spectra's in model.py, checked exactly against torch.linalg on random layers
(CPU, a few seconds)."""
import math
import os
import re
import types

import pytest
import torch

import lowrank
from conftest import REPO
from lowrank import DenseLinear, FactorizedLinear, Muon, Spectron, TSVDLinear
from model import GPT, GPTConfig, svdvals_of_product, update_norm

SHAPES = [(64, 64), (32, 96), (96, 32)]  # (in, out): square, wide, tall


def dense_w(layer):
    A, B = layer.factors()
    return A if B is None else A @ B.T


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


# --- NFW layer ---------------------------------------------------------------------------------

@pytest.mark.parametrize('n_in,n_out', SHAPES)
def test_factorized_forward_is_x_U_Vt_and_x_Wt(n_in, n_out):
    torch.manual_seed(0)
    layer = FactorizedLinear(n_in, n_out, 8, bias=True, init_std=0.02)
    layer.bias.data.normal_()
    x = torch.randn(5, 7, n_in)
    y = layer(x)
    assert torch.allclose(y, (x @ layer.U) @ layer.V.T + layer.bias, atol=1e-6)
    W = layer.V @ layer.U.T  # materialised only here, to compare
    assert torch.allclose(y, x @ W.T + layer.bias, atol=1e-5)


@pytest.mark.parametrize('n_in,n_out', [(256, 256), (256, 1024), (1024, 256)])
@pytest.mark.parametrize('rank', [4, 64])
def test_factorized_init_matches_dense_std_and_is_balanced(n_in, n_out, rank):
    torch.manual_seed(0)
    layer = FactorizedLinear(n_in, n_out, rank, bias=False, init_std=0.02)
    assert abs(dense_w(layer).std().item() / 0.02 - 1) < 0.10
    assert abs(layer.U.norm().item() / layer.V.norm().item() - 1) < 0.05  # ‖U‖_F ≈ ‖V‖_F


@pytest.mark.parametrize('n_in,n_out', SHAPES)
@pytest.mark.parametrize('rank', [1, 7, 32])
def test_fast_singular_values_equal_svdvals_of_materialised_w(n_in, n_out, rank):
    torch.manual_seed(1)
    for layer in (FactorizedLinear(n_in, n_out, rank, False, 0.02), TSVDLinear(n_in, n_out, rank, False, 0.02)):
        fast = svdvals_of_product(*layer.factors())
        exact = torch.linalg.svdvals(dense_w(layer).double()).float()[:rank]
        assert fast.shape == (rank,)
        assert rel_err(fast, exact) < 1e-4


def test_update_norm_is_the_spectral_norm_of_the_change():
    torch.manual_seed(2)
    layer = FactorizedLinear(48, 80, 12, False, 0.02)
    before = tuple(t.detach().clone() for t in layer.factors())
    W0 = dense_w(layer).detach().clone()
    with torch.no_grad():
        layer.U.add_(torch.randn_like(layer.U) * 0.01)
        layer.V.add_(torch.randn_like(layer.V) * 0.01)
    exact = torch.linalg.matrix_norm(dense_w(layer).detach() - W0, ord=2).item()
    assert math.isclose(update_norm(before, layer.factors()), exact, rel_tol=1e-4)


def test_gradients_reach_both_factors():
    layer = FactorizedLinear(16, 24, 4, False, 0.02)
    layer(torch.randn(3, 16)).square().sum().backward()
    assert layer.U.grad is not None and layer.U.grad.abs().sum() > 0
    assert layer.V.grad is not None and layer.V.grad.abs().sum() > 0


def test_rank_as_int_or_fraction():
    assert lowrank.resolve_rank(0.25, 256, 1024) == 64
    assert lowrank.resolve_rank(64, 256, 1024) == 64


@pytest.mark.parametrize('bad,word', [(0, 'fit'), (257, 'fit'), (1.5, 'fraction'), (0.0, 'fraction')],
                         ids=['count 0', 'count above the smaller side', 'fraction above 1', 'fraction 0'])
def test_rank_that_does_not_fit_is_refused(bad, word):
    with pytest.raises(ValueError, match=word):
        lowrank.resolve_rank(bad, 256, 1024)


# --- Spectron ----------------------------------------------------------------------------------

def newton_schulz_reference(G, steps=5):
    """Muon's iteration written directly on X (wide orientation), to check the Gram-matrix version against."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.double().mT
    X = X / X.norm(dim=(-2, -1), keepdim=True)
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT


@pytest.mark.parametrize('m,r', [(64, 1), (96, 8), (256, 64), (64, 64)])
def test_newton_schulz_gram_form_equals_muon_iteration(m, r):
    torch.manual_seed(3)
    G = torch.randn(3, m, r)
    assert rel_err(lowrank.newton_schulz(G).double(), newton_schulz_reference(G)) < 1e-4


def test_newton_schulz_keeps_float64_and_equals_the_direct_iteration():
    """float64 in, float64 out (float32 was returned silently), and the Gram form then matches Muon's X-iteration
    X ← aX + bX(XᵀX) + cX(XᵀX)², written directly, to rounding."""
    torch.manual_seed(3)
    a, b, c = 3.4445, -4.7750, 2.0315
    for m, r in ((96, 8), (64, 64)):
        G = torch.randn(3, m, r, dtype=torch.float64)
        X = G / (G.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # newton_schulz's own normalisation
        for _ in range(5):
            A = X.mT @ X
            X = a * X + b * X @ A + c * X @ A @ A
        out = lowrank.newton_schulz(G)
        assert out.dtype == torch.float64 and rel_err(out, X) < 1e-10
    assert lowrank.newton_schulz(G.to(torch.bfloat16)).dtype == torch.float32  # bf16 is computed in float32


@pytest.mark.parametrize('m,r', [(64, 4), (256, 64), (128, 128)])
def test_newton_schulz_singular_values_are_bounded(m, r):
    torch.manual_seed(4)
    for _ in range(5):
        s = torch.linalg.svdvals(lowrank.newton_schulz(torch.randn(m, r) * 10))
        assert s.max() <= 1.25
        # a well-conditioned input (condition number ≤ 10) comes out with every singular value ≥ 0.5
        P, _ = torch.linalg.qr(torch.randn(m, r))
        Q, _ = torch.linalg.qr(torch.randn(r, r))
        G = P @ torch.diag(torch.logspace(0, -1, r)) @ Q.T
        s = torch.linalg.svdvals(lowrank.newton_schulz(G))
        assert 0.5 <= s.min() and s.max() <= 1.25


def test_power_iteration_reaches_sigma_within_one_percent_in_20_warm_steps():
    """Trained weights have power-law spectra (METHODS.md §4); here s_i = i^-0.5, and the matrix drifts a little
    every step, as a factor does during training. Power iteration converges like (σ₂/σ₁)^(2k)."""
    torch.manual_seed(5)
    P, _ = torch.linalg.qr(torch.randn(4, 256, 64))
    Q, _ = torch.linalg.qr(torch.randn(4, 64, 64))
    A = P @ torch.diag(torch.arange(1, 65.0) ** -0.5) @ Q.mT
    v = torch.randn(4, 64)
    v = v / v.norm(dim=-1, keepdim=True)
    for _ in range(20):
        A = A + 1e-3 * torch.randn_like(A) / 16  # ‖drift‖₂ ≈ 1e-3 ‖A‖₂ per step
        sigma, v = lowrank.power_iteration(A, v)  # one step per call, warm-started as in the optimizer
    true = torch.linalg.matrix_norm(A, ord=2)
    assert ((sigma - true).abs() / true).max() < 0.01
    assert (sigma <= true * (1 + 1e-5)).all()  # never an over-estimate


def test_power_iteration_never_overestimates_even_without_a_spectral_gap():
    """A Gaussian matrix (a factor at init) has no gap at the top; the estimate is then low by a few percent,
    which the ΔW bound test below covers."""
    torch.manual_seed(5)
    A = torch.randn(4, 256, 64)
    v = torch.nn.functional.normalize(torch.randn(4, 64), dim=-1)
    for _ in range(20):
        sigma, v = lowrank.power_iteration(A, v)
    true = torch.linalg.matrix_norm(A, ord=2)
    assert (sigma <= true * (1 + 1e-5)).all() and (sigma >= 0.9 * true).all()


@pytest.mark.parametrize('n_in,n_out,rank', [(64, 64, 1), (64, 64, 64), (32, 96, 8), (96, 32, 32), (128, 48, 16)])
@pytest.mark.parametrize('eta', [0.02, 0.5])
def test_spectron_step_bound_on_dW(n_in, n_out, rank, eta):
    """‖W_after − W_before‖₂ by a real SVD, every step after 20 warm-up steps: ≤ c_ns (1 + ε) η < 1.3 η."""
    torch.manual_seed(6)
    layers = [FactorizedLinear(n_in, n_out, rank, False, 0.02) for _ in range(2)]  # two same-shape: batched path
    opt = Spectron([(m.U, m.V) for m in layers], lr=eta)
    worst = 0.0
    for step in range(40):
        before = [dense_w(m).detach().double() for m in layers]
        for m in layers:
            for p in (m.U, m.V):
                p.grad = torch.randn_like(p)
        opt.step()
        if step >= 20:
            for m, W0 in zip(layers, before):
                dW = torch.linalg.matrix_norm(dense_w(m).detach().double() - W0, ord=2).item()
                worst = max(worst, dW / eta)
    assert worst <= 1.3
    # and not vanishingly small: ΔW ≈ −ρ(O_V Uᵀ + V O_Uᵀ) has norm ≳ ρ max(σ_U, σ_V) = η max(σ) / (σ_U + σ_V + 1)
    sigmas = [torch.linalg.matrix_norm(p.detach(), ord=2).item() for p in (layers[0].U, layers[0].V)]
    assert worst > 0.5 * max(sigmas) / (sum(sigmas) + 1)


def test_spectron_batched_step_equals_one_layer_at_a_time():
    torch.manual_seed(7)
    layers = [FactorizedLinear(40, 56, 8, False, 0.02) for _ in range(3)]
    copies = [FactorizedLinear(40, 56, 8, False, 0.02) for _ in range(3)]
    for a, b in zip(layers, copies):
        b.load_state_dict(a.state_dict())
    together = Spectron([(m.U, m.V) for m in layers], lr=0.05)
    # one optimizer per layer, each with the factor indices the shared one gives it (same power-iteration seeds)
    apart = []
    for i, m in enumerate(copies):
        opt = Spectron([(m.U, m.V)], lr=0.05)
        for j, p in enumerate((m.U, m.V)):
            opt._init_state(p, 2 * i + j)
        apart.append(opt)
    for _ in range(3):
        for a, b in zip(layers, copies):
            for pa, pb in ((a.U, b.U), (a.V, b.V)):
                pa.grad = torch.randn_like(pa)
                pb.grad = pa.grad.clone()
        together.step()
        for opt in apart:
            opt.step()
    for a, b in zip(layers, copies):
        assert torch.allclose(a.U, b.U, atol=1e-6) and torch.allclose(a.V, b.V, atol=1e-6)


@pytest.mark.parametrize('ortho,renorm', [(True, True), (True, False), (False, True), (False, False)])
def test_spectron_ablation_switches_step_by_rho_times_direction(ortho, renorm):
    """By hand, with the momentum tracked in float64: ΔU = −ρ·D for every factor, where D = NS(M) with ortho and
    M/‖M‖₂ without, and ρ = η / (σ_U + σ_V + 1) with renorm (σ: one power step from the optimizer's stored vector)
    and η without. A real SVD then checks the step's scale: ‖D‖₂ in NS's band, or exactly 1."""
    torch.manual_seed(11)
    layers = [FactorizedLinear(n_in, n_out, 8, False, 0.02) for n_in, n_out in SHAPES]  # 32×8 twice: batched path
    eta, beta = 0.05, 0.95
    params = [p for m in layers for p in (m.U, m.V)]
    opt = Spectron([(m.U, m.V) for m in layers], lr=eta, momentum=beta, ortho=ortho, renorm=renorm)
    momenta = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for step in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, g, M in zip(params, grads, momenta):
            p.grad = g.clone()
            M.mul_(beta).add_(g.double(), alpha=1 - beta)
        if step == 0:  # the first step initialises the power-iteration vectors the later ones are checked with
            opt.step()
            continue
        before = [p.detach().double().clone() for p in params]
        sigmas = [lowrank.power_iteration(p.detach().float(), opt.state[p]['power_vec'])[0].item() for p in params]
        opt.step()
        for i, (p, W0, M) in enumerate(zip(params, before, momenta)):
            rho = eta / (sigmas[i - i % 2] + sigmas[i - i % 2 + 1] + 1) if renorm else eta  # one ρ per (U, V) pair
            D = lowrank.newton_schulz(M).double() if ortho else M / torch.linalg.matrix_norm(M, ord=2)
            step_ = p.detach().double() - W0
            assert rel_err(step_, -rho * D) < 1e-5
            top = torch.linalg.matrix_norm(step_, ord=2).item() / rho
            assert 0.7 <= top <= 1.25 if ortho else abs(top - 1) < 1e-5


def test_spectron_checkpoint_from_before_the_switches_loads_as_both_on():
    params = [torch.nn.Parameter(torch.randn(16, 4)), torch.nn.Parameter(torch.randn(24, 4))]
    for p in params:
        p.grad = torch.randn_like(p)
    old = Spectron([params])
    old.step()
    state = old.state_dict()
    for group in state['param_groups']:
        del group['ortho'], group['renorm']
    opt = Spectron([params], ortho=False, renorm=False)
    opt.load_state_dict(state)
    assert opt.param_groups[0]['ortho'] is True and opt.param_groups[0]['renorm'] is True
    opt.step()


NOT_PAIRS = {  # what Spectron refuses, built from U (16×4) and V (24×4), and a key word of its error
    'flat list, odd (the last factor was never stepped)': (lambda U, V: [U, V, U], 'pairs'),
    'flat list, even (was paired by position)': (lambda U, V: [U, V], 'pairs'),
    'one factor': (lambda U, V: [(U,)], 'pairs'),
    'three factors': (lambda U, V: [(U, V, U)], 'pairs'),
    'ranks differ': (lambda U, V: [(U, torch.nn.Parameter(torch.randn(24, 3)))], 'rank'),
    'a factor not 2-D': (lambda U, V: [(U, torch.nn.Parameter(torch.randn(24)))], '2-D'),
}


@pytest.mark.parametrize('make,word', NOT_PAIRS.values(), ids=NOT_PAIRS.keys())
def test_spectron_rejects_anything_but_one_pair_per_layer(make, word):
    """The pairing is explicit: a flat list of factors and pairs that are not two 2-D factors of one rank are
    refused with a ValueError that says what is wrong."""
    U, V = torch.nn.Parameter(torch.randn(16, 4)), torch.nn.Parameter(torch.randn(24, 4))
    with pytest.raises(ValueError, match=word):
        Spectron(make(U, V))


def test_spectron_takes_one_pair_per_layer():
    U, V = torch.nn.Parameter(torch.randn(16, 4)), torch.nn.Parameter(torch.randn(24, 4))
    opt = Spectron([(U, V)])
    assert [p for g in opt.param_groups for p in g['params']] == [U, V]  # the checkpoint layout: one flat group


def test_spectron_and_muon_skip_factors_without_grad():
    """A parameter whose .grad is None is not stepped (as torch's optimizers do; Muon raised TypeError, Spectron
    failed in its fused momentum update). In a Spectron pair the factor with a grad steps alone, at the pair's ρ."""
    torch.manual_seed(12)
    layers = [FactorizedLinear(32, 48, 8, False, 0.02) for _ in range(3)]
    reference = [FactorizedLinear(32, 48, 8, False, 0.02) for _ in range(3)]
    for a, b in zip(layers, reference):
        b.load_state_dict(a.state_dict())
    opt, ref = Spectron([(m.U, m.V) for m in layers], lr=0.05), Spectron([(m.U, m.V) for m in reference], lr=0.05)
    before = [p.detach().clone() for m in layers for p in (m.U, m.V)]
    for m, r in zip(layers[:2], reference[:2]):
        m.U.grad = torch.randn_like(m.U)
        r.U.grad, r.V.grad = m.U.grad.clone(), torch.zeros_like(r.V)  # a zero gradient: no momentum, M = 0 ...
    layers[1].V.grad = torch.randn_like(layers[1].V)  # layer 1: both; layer 0: U only; layer 2: neither
    reference[1].V.grad = layers[1].V.grad.clone()
    opt.step()
    ref.step()
    U0, V0, U1, V1, U2, V2 = before
    assert not torch.equal(layers[0].U, U0) and torch.equal(layers[0].V, V0)
    assert torch.allclose(layers[0].U, reference[0].U, atol=1e-7)  # ... so U's step is the one of the full pair
    assert not torch.equal(layers[1].U, U1) and not torch.equal(layers[1].V, V1)
    assert torch.equal(layers[2].U, U2) and torch.equal(layers[2].V, V2)
    weights = [torch.nn.Parameter(torch.randn(24, 16)) for _ in range(2)]
    muon = Muon(weights, lr=0.05)
    weights[0].grad = torch.randn_like(weights[0])
    W1 = weights[1].detach().clone()
    muon.step()
    assert torch.equal(weights[1], W1) and 'momentum' not in muon.state[weights[1]]


BAD_HYPERPARAMETERS = [(dict(lr=0.0), 'lr'), (dict(lr=-1.0), 'lr'), (dict(momentum=1.0), 'momentum'),
                       (dict(momentum=-0.1), 'momentum'), (dict(ns_steps=0), 'ns_steps')]  # and a key word of the error


@pytest.mark.parametrize('kwargs,word', BAD_HYPERPARAMETERS, ids=[f'{k}={v}' for (kw, _) in BAD_HYPERPARAMETERS
                                                                  for k, v in kw.items()])
def test_spectron_rejects_bad_hyperparameters(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Spectron([(torch.nn.Parameter(torch.randn(4, 2)), torch.nn.Parameter(torch.randn(4, 2)))], **kwargs)


# --- Muon (the dense control) --------------------------------------------------------------------

@pytest.mark.parametrize('n_in,n_out', SHAPES)
def test_muon_step_is_lr_times_scale_times_ns_of_nesterov_momentum(n_in, n_out):
    """Two steps by hand: B ← μB + G, ΔW = −lr·max(1, rows/cols)^½·NS(G + μB), Muon's direct NS on the wide side."""
    torch.manual_seed(8)
    layers = [DenseLinear(n_in, n_out, None, False, 0.02) for _ in range(2)]  # two same-shape: batched path
    lr, mu = 0.03, 0.95
    opt = Muon([m.weight for m in layers], lr=lr, momentum=mu)
    scale = max(1, n_out / n_in) ** 0.5  # weight is out×in: rows/cols = out/in
    buffers = [torch.zeros(n_out, n_in, dtype=torch.float64) for _ in layers]
    for _ in range(2):
        before = [m.weight.detach().double().clone() for m in layers]
        grads = [torch.randn(n_out, n_in) for _ in layers]
        for m, g in zip(layers, grads):
            m.weight.grad = g.clone()
        opt.step()
        for m, W0, g, buf in zip(layers, before, grads, buffers):
            buf.mul_(mu).add_(g.double())
            d = g.double() + mu * buf
            d32 = d.float()  # the optimizer's own precision
            ours = -lr * scale * (lowrank.newton_schulz(d32) if n_out >= n_in else lowrank.newton_schulz(d32.T).T)
            muon = -lr * scale * (newton_schulz_reference(d) if n_out >= n_in else newton_schulz_reference(d.T).T)
            dW = m.weight.detach().double() - W0
            assert rel_err(dW, ours.double()) < 1e-5  # the update rule, exactly
            assert rel_err(dW, muon) < 1e-4  # and the NS in it is Muon's iteration (as Spectron's is)


def test_muon_step_has_spectral_norm_lr_times_scale_like_spectrons_factor_steps():
    """‖ΔW‖₂ / (lr·scale) is NS's top singular value: in the band that bounds Spectron's factor steps (≤ 1.25)."""
    torch.manual_seed(9)
    for n_in, n_out in SHAPES:
        layer = DenseLinear(n_in, n_out, None, False, 0.02)
        opt = Muon([layer.weight], lr=0.05)
        for _ in range(10):
            W0 = layer.weight.detach().clone()
            layer.weight.grad = torch.randn_like(layer.weight)
            opt.step()
            top = torch.linalg.matrix_norm(layer.weight.detach() - W0, ord=2).item()
            assert 0.7 <= top / (0.05 * max(1, n_out / n_in) ** 0.5) <= 1.25


@pytest.mark.parametrize('kwargs,word', BAD_HYPERPARAMETERS, ids=[f'{k}={v}' for (kw, _) in BAD_HYPERPARAMETERS
                                                                  for k, v in kw.items()])
def test_muon_rejects_bad_hyperparameters(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Muon([torch.nn.Parameter(torch.randn(4, 2))], **kwargs)


# --- TSVD --------------------------------------------------------------------------------------

def orthonormality_error(M):
    return (M.T @ M - torch.eye(M.shape[1])).abs().max().item()


@pytest.mark.parametrize('n_in,n_out', [(256, 256), (256, 1024), (1024, 256)])
def test_tsvd_init_is_orthonormal_and_matches_dense_std(n_in, n_out):
    torch.manual_seed(8)
    layer = TSVDLinear(n_in, n_out, 64, False, 0.02)
    assert orthonormality_error(layer.U) < 1e-5 and orthonormality_error(layer.V) < 1e-5
    assert abs(dense_w(layer).std().item() / 0.02 - 1) < 0.10
    assert torch.all(layer.s[:-1] >= layer.s[1:])  # sorted, distinct


def test_tsvd_retraction_keeps_w_of_unit_columns_and_restores_orthonormality():
    torch.manual_seed(9)
    layer = TSVDLinear(48, 80, 16, False, 0.02)
    with torch.no_grad():
        for p in (layer.U, layer.V, layer.s):
            p.add_(torch.randn_like(p) * 0.05)  # an optimizer step leaves the manifold
    U, V = (p.detach() / p.detach().norm(dim=0) for p in (layer.U, layer.V))
    W = (U * layer.s.detach()) @ V.T  # the step's W with each factor column at unit length: s alone sets the scale
    lowrank.retract_all([layer])
    assert orthonormality_error(layer.U) < 1e-5 and orthonormality_error(layer.V) < 1e-5
    assert rel_err(dense_w(layer).detach(), W) < 1e-5
    assert torch.allclose(layer.s, torch.linalg.svdvals(W)[:16], rtol=1e-4)  # s is W's spectrum
    assert torch.all(layer.s >= 0)


def test_tsvd_retraction_does_not_turn_step_noise_into_growth_of_s():
    """AdamW-sized steps of pure noise on U and V (every coordinate ±lr): had the columns kept their length, their
    growth by |Δ⊥|² a step would compound into s as exp(steps·lr²·(m+n)), here e^14; at unit length Σ s² stays put"""
    torch.manual_seed(0)
    layer = TSVDLinear(96, 384, 48, False, 0.02)
    energy, lr = layer.s.detach().square().sum(), 1e-2
    with torch.no_grad():
        for _ in range(300):
            layer.U.add_(lr * torch.sign(torch.randn_like(layer.U)))
            layer.V.add_(lr * torch.sign(torch.randn_like(layer.V)))
            lowrank.retract_all([layer])
    assert layer.s.detach().square().sum() / energy == pytest.approx(1, rel=0.05)


def test_energy_rank_on_hand_made_spectrum():
    s = torch.tensor([3.0, 2.0, 1.0, 0.1])  # energies 9, 4, 1, 0.01 of 14.01: 64.2%, 92.8%, 99.93%, 100%
    assert lowrank.energy_rank(s, 0.99) == 3
    assert lowrank.energy_rank(s, 0.9) == 2
    assert lowrank.energy_rank(s, 0.5) == 1
    assert lowrank.energy_rank(s, 1.0) == 4


def test_tsvd_training_truncates_keeps_orthonormality_and_optimizer_state_and_loss_falls():
    torch.manual_seed(10)
    layer = TSVDLinear(32, 48, 24, False, 0.2)
    target = torch.randn(48, 4) @ torch.randn(4, 32) * 0.1  # rank 4, singular values 3-6: s moves ~lr a step
    x = torch.randn(256, 32)
    cfg = dict(rank_warmup=50, rank_interval=50, energy=0.99, min_rank=2, learning_rate=1e-2,
               weight_decay=0.0, beta1=0.9, beta2=0.99)
    opts = lowrank.tsvd_adamw(layer, cfg)
    losses = []
    for it in range(1, 301):
        loss = (layer(x) - x @ target.T).square().mean()
        loss.backward()
        for opt in opts:
            opt.step()
            opt.zero_grad()
        lowrank.tsvd_after_step(layer, opts, it, cfg)
        assert orthonormality_error(layer.U) < 1e-5 and orthonormality_error(layer.V) < 1e-5
        losses.append(loss.item())
    assert layer.rank < 24  # it found the low-rank target and shrank
    for p in (layer.U, layer.s, layer.V):
        st = opts[0].state[p]
        assert st['exp_avg'].shape == p.shape and st['exp_avg_sq'].shape == p.shape
    assert losses[-1] < 0.05 * losses[0]
    assert losses[-1] <= min(losses[-60:-40])  # still falling after the last truncations


def test_tsvd_rank_broadcast_sends_a_tensor_on_the_layers_device(monkeypatch):
    """Under NCCL every collective takes CUDA tensors only. Emulated on CPU: the default device is 'meta' while the
    layers live on the CPU (as they live on a GPU while the default stays CPU), and a stand-in broadcast refuses any
    tensor that is not on the layers' device."""
    torch.manual_seed(0)
    layers = [TSVDLinear(16, 16, 8, bias=False, init_std=0.02) for _ in range(2)]
    model = torch.nn.Sequential(*layers)
    sent = []

    def broadcast(tensor, src):
        assert tensor.device == layers[0].s.device, f"a {tensor.device} tensor in a collective on {layers[0].s.device}"
        sent.append(tensor.tolist())
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'broadcast', broadcast)
    cfg = dict(rank_warmup=0, rank_interval=1, energy=0.5, min_rank=1)
    with torch.device('meta'):
        changed = lowrank.tsvd_after_step(model, [], 1, cfg)
    assert changed and sent == [[layer.rank for layer in layers]] and all(layer.rank < 8 for layer in layers)


# --- init_from=svd -----------------------------------------------------------------------------

@pytest.mark.parametrize('mode', ['nfw', 'tsvd'])
def test_load_dense_is_the_truncated_svd_balanced_or_orthonormal(mode):
    """GPT.load_dense: each factorized layer (square attention, tall MLP up, wide MLP down) becomes its dense W's
    best rank-r approximation (checked against torch's own SVD): NFW's factors balanced (VᵀV = UᵀU = diag(s)),
    TSVD's U, V orthonormal; biases and norms are copied; at full rank W is exact and all the energy is kept."""
    torch.manual_seed(11)
    shape = dict(n_layer=1, n_head=2, n_embd=32, bias=True, vocab_size=16, block_size=8)
    dense = {k: torch.randn_like(v) for k, v in GPT(GPTConfig(mode='dense', **shape)).state_dict().items()}
    for r in (8, 32):
        model = GPT(GPTConfig(mode=mode, rank=r, **shape))
        kept = model.load_dense(dense)
        energy = [0.0, 0.0]
        for name, layer in model.linear_layers():
            W = dense[f'{name}.weight']
            P, s, Qh = torch.linalg.svd(W)
            energy = [energy[0] + s[:r].square().sum().item(), energy[1] + s.square().sum().item()]
            assert rel_err(dense_w(layer).detach(), P[:, :r] @ torch.diag(s[:r]) @ Qh[:r]) < 1e-5, name
            assert torch.equal(layer.bias, dense[f'{name}.bias'])
            if mode == 'nfw':
                assert rel_err(layer.V.T @ layer.V, torch.diag(s[:r])) < 1e-5
                assert rel_err(layer.U.T @ layer.U, torch.diag(s[:r])) < 1e-5
            else:
                assert orthonormality_error(layer.U) < 1e-5 and orthonormality_error(layer.V) < 1e-5
                assert torch.allclose(layer.s, s[:r])
            if r == 32:
                assert rel_err(dense_w(layer).detach(), W) < 1e-5
        assert kept == pytest.approx(energy[0] / energy[1], rel=1e-5)
        assert all(torch.equal(model.state_dict()[k], dense[k]) for k in ('ln_f.weight', 'ln_f.bias', 'wpe.weight'))
    assert kept == pytest.approx(1.0)


def fit_one_batch(model, optimizers, steps=30):
    """The losses of `steps` optimizer steps on one fixed random batch (vocab 20, block 16): a recipe's mode trains."""
    x, y = torch.randint(20, (4, 16)), torch.randint(20, (4, 16))
    losses = []
    for _ in range(steps):
        _, loss = model(x, y)
        loss.backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad()
        losses.append(loss.item())
    return losses


def readme():
    with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
        return f.read()


def test_readme_recipe(monkeypatch):
    """README's "Try your own idea" code, run as written: the layer class and its registry line give a mode whose
    GPT trains (the loss of a fixed batch falls) with a gain that learns, and README's own test of it passes."""
    section = readme().split('## Try your own idea', 1)[1].split('\n## ', 1)[0].split('\n### An optimizer idea', 1)[0]
    recipe, test = re.findall(r'```python\n(.*?)```', section, re.S)
    namespace = {**vars(lowrank), 'MODES': dict(lowrank.MODES)}  # the registry line must not leak into other tests
    exec(recipe, namespace)
    monkeypatch.setattr(lowrank, 'MODES', namespace['MODES'])
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=20, n_layer=1, n_head=2, n_embd=32, mode='gated', rank=8))
    gated = [m for m in model.modules() if isinstance(m, namespace['GatedFactorizedLinear'])]
    assert len(gated) == 6  # q, k, v, o, up, down
    cfg = dict(learning_rate=1e-2, weight_decay=0.1, beta1=0.9, beta2=0.99)
    optimizers = lowrank.MODES['gated'].optimizers(model, cfg)
    losses = fit_one_batch(model, optimizers)
    assert losses[-1] < losses[0] - 0.5
    assert all(not torch.equal(m.g, torch.ones_like(m.g)) for m in gated)  # the gain is a trained parameter
    test_namespace = {'torch': torch, 'lowrank': types.SimpleNamespace(**namespace)}
    exec(test, test_namespace)
    test_namespace['test_gated_layer_is_its_factors']()


def test_readme_optimizer_recipe(monkeypatch):
    """README's "An optimizer idea", run as written: the subclass and its registry line give a mode whose GPT trains
    (the loss of a fixed batch falls) through the subclass' step_sizes, and README's own test of it passes."""
    section = readme().split('## Try your own idea', 1)[1].split('\n## ', 1)[0].split('\n### An optimizer idea', 1)[1]
    recipe, test = re.findall(r'```python\n(.*?)```', section.split('\n### ', 1)[0], re.S)
    namespace = {**vars(lowrank), 'MODES': dict(lowrank.MODES)}  # the registry line must not leak into other tests
    exec(recipe, namespace)
    monkeypatch.setattr(lowrank, 'MODES', namespace['MODES'])
    variant = namespace['FrobeniusSpectron']
    calls = []
    rule = variant.step_sizes  # a spy that keeps the rule
    monkeypatch.setattr(variant, 'step_sizes', lambda self, *args: calls.append(args) or rule(self, *args))
    mode = lowrank.MODES['spectron_fro']
    assert mode.step_size == 'spectron_lr' and mode.bounded
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=20, n_layer=1, n_head=2, n_embd=32, mode='spectron_fro', rank=8))
    cfg = dict(learning_rate=1e-2, weight_decay=0.1, beta1=0.9, beta2=0.99, spectron_lr=0.1, spectron_beta=0.95,
               ns_steps=5, spectron_power_iters=1, spectron_wd=0.0, spectron_ortho=True, spectron_renorm=True)
    optimizers = mode.optimizers(model, cfg)
    assert type(optimizers[0]) is variant
    losses = fit_one_batch(model, optimizers)
    assert losses[-1] < losses[0] - 0.5
    assert len(calls) == 30 * 6  # one call per layer (q, k, v, o, up, down) per step: the variant's rule is used
    pairs = {(id(m.U), id(m.V)) for m in model.modules() if isinstance(m, lowrank.FactorizedLinear)}
    assert all((id(U), id(V)) in pairs and sU.dim() == sV.dim() == 0 for _, U, V, sU, sV in calls)  # the factors
    test_namespace = {'torch': torch, 'lowrank': types.SimpleNamespace(**namespace)}
    exec(test, test_namespace)
    test_namespace['test_frobenius_spectron_keeps_the_bound_on_dW']()
