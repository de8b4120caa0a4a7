"""experiments/ladder.py: the FLOP accounting of the ladder's shapes, the fits on synthetic data with known answers,
and analyze end to end on synthetic log.jsonl files (CPU, no training)."""
import json
import math
import os

import numpy as np
import pytest

import ladder
from conftest import assert_refused, in_process


def count_by_hand(mode, d):
    """(all parameters, training FLOPs per token) from the layer shapes alone: per block Q, K, V, O (d×d) and the
    MLP's up and down (d×4d), dense or as two factors of rank d/4; two LayerNorms per block and a final one;
    token and position embeddings, the head tied to the first; attention's QKᵀ and AV: 2·2·T·d per layer forward"""
    L, T, V = ladder.N_LAYER, ladder.BLOCK_SIZE, ladder.VOCAB
    if mode in ('dense', 'muon'):
        weights = 4 * d * d + 2 * d * 4 * d
    else:
        r = d // 4
        weights = 4 * r * (d + d) + 2 * r * (d + 4 * d)
    params = L * weights + (2 * L + 1) * d + V * d + T * d
    return params, 6 * (L * weights + V * d) + 3 * L * 2 * 2 * T * d


@pytest.mark.parametrize('mode', ['dense', 'muon', 'spectron', 'nfw'])
def test_flop_accounting_of_the_ladder_shapes(mode):
    for d in ladder.WIDTHS[mode]:
        assert ladder.shape(mode, d) == count_by_hand(mode, d), (mode, d)


def test_plan_keeps_epochs_and_spans():
    rows = ladder.plan_rows({m: [(ladder.shape(m, d)[1], ms) for (mm, d), ms in ladder.MEASURED_MS.items() if mm == m]
                             for m in ('dense', 'muon', 'spectron')})
    assert max(r['tokens'] for r in rows) / ladder.TRAIN_TOKENS <= 4
    assert max(ladder.BUDGETS) / min(ladder.BUDGETS) >= 10 - 1e-9 and len(ladder.BUDGETS) >= 4
    for mode in ladder.WIDTHS:
        params = [r['params'] for r in rows if r['mode'] == mode]
        assert len(params) >= 5 and math.log10(max(params) / min(params)) >= 1.5, mode
        assert all(r['steps'][-1] >= ladder.MIN_STEPS for r in rows)  # every size reaches the top budget


def test_fit_recovers_known_frontier():
    C = np.geomspace(1e12, 1e14, 8)
    E, A, alpha = 1.2, 0.5, 0.3
    fit = ladder.fit_frontier(C, E + A * (C / ladder.C_REF) ** -alpha)
    assert fit == pytest.approx((E, A, alpha), abs=0.01)


def test_isoflop_quadratic_recovers_n_opt():
    N = np.geomspace(1e5, 5e6, 6)
    n_opt, loss = ladder.isoflop_fit(N, 1.7 + 0.3 * (np.log10(N) - math.log10(6e5)) ** 2)
    assert n_opt == pytest.approx(6e5, rel=1e-6) and loss == pytest.approx(1.7)
    assert ladder.isoflop_fit(N, 1.7 - 0.3 * (np.log10(N) - 5.8) ** 2) is None  # a maximum is no optimum


def test_a_fit_with_e_on_its_bound_is_flagged_degenerate(tmp_path):
    """A pure power law has no loss floor: E lands on 0, the bound of its search, and ladder.md says so."""
    C = np.geomspace(1e12, 1e13, 5)
    power_law, with_floor = 0.5 * (C / ladder.C_REF) ** -0.05, 1.2 + 0.5 * (C / ladder.C_REF) ** -0.3
    fit = ladder.fit_frontier(C, power_law)
    assert fit[0] == 0 and 'bound 0' in ladder.at_bound(fit, power_law)
    assert ladder.at_bound(ladder.fit_frontier(C, with_floor), with_floor) == ''


def test_exponent_recovers_known_slope():
    C = np.geomspace(1e12, 1e13, 5)
    assert ladder.slope(C, 3 * C ** 0.479) == pytest.approx(0.479)


def write_run(root, mode, d, budget, loss_of):
    """a finished run's log.jsonl at one ladder shape and budget, its val loss from loss_of(N, D)"""
    params, fpt = ladder.shape(mode, d)
    steps = ladder.steps_for(budget, fpt)
    C = steps * fpt * ladder.BLOCK_SIZE * ladder.BATCH_SIZE
    path = os.path.join(root, f"{mode}_d{d}_C{budget:.2g}")
    os.makedirs(path)
    config = dict(kind='config', mode=mode, n_embd=d, n_layer=ladder.N_LAYER, block_size=ladder.BLOCK_SIZE,
                  batch_size=ladder.BATCH_SIZE, rank=ladder.RANK)
    logged = params - ladder.BLOCK_SIZE * d  # num_params() leaves out the position embedding
    evals = [dict(kind='eval', iter=it, val_loss=loss_of(params, C / fpt) + extra, train_flops=C * it / steps,
                  params=logged, flops_per_token=fpt) for it, extra in ((steps // 2, 0.3), (steps, 0.0))]
    with open(os.path.join(path, 'log.jsonl'), 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in [config] + evals) + '\n')
    return path


def chinchilla(E, A, B, a=0.34, b=0.34):
    return lambda N, D: E + A / N ** a + B / D ** b


def synthetic_ladder(root, modes):
    paths = []
    for mode, loss_of in modes.items():
        for d in ladder.WIDTHS[mode]:
            params, fpt = ladder.shape(mode, d)
            paths += [write_run(root, mode, d, b, loss_of) for b in ladder.BUDGETS
                      if ladder.steps_for(b, fpt) >= ladder.MIN_STEPS]
    return paths


def test_analyze_end_to_end(tmp_path, capsys):
    # equal exponents of N and D: N_opt ∝ C^0.5; spectron's reducible loss is larger, so its gap to dense is > 0
    paths = synthetic_ladder(tmp_path / 'runs', {'dense': chinchilla(1.0, 40, 40), 'spectron': chinchilla(1.0, 60, 40)})
    out = tmp_path / 'out'
    ladder.main(['analyze', *paths, f'--out={out}', '--resamples=50'])
    for name in ('loss_vs_flops.png', 'isoflop.png', 'gap.png', 'ladder.md', 'points.csv'):
        assert (out / name).stat().st_size > 0, name
    text = (out / 'ladder.md').read_text()
    assert 'spectron − dense' in text and '| dense |' in text and 'Held-out check' in text and 'Approach 3: a' in text
    with open(out / 'points.csv') as f:
        assert len(f.readlines()) == len(paths) + 1
    points = [ladder.read_point(p) for p in paths]
    budgets = ladder.group_budgets(points)
    assert len(budgets) == len(ladder.BUDGETS)
    fits = {m: ladder.mode_fits([p for p in points if p['mode'] == m], budgets, 20, np.random.default_rng(0))
            for m in ('dense', 'spectron')}
    assert fits['dense']['exp'][0] == pytest.approx(0.5, abs=0.08)  # N_opt ∝ C^0.5 by construction
    gap = ladder.gap_curves(fits, np.array(ladder.BUDGETS))['spectron']['gap']
    assert (gap > 0).all()


BAD = [  # (command line: {tmp} a fresh folder, {run} a finished run in it; a key word of the one-line error)
    (['analyze', '--out={tmp}'], 'usage'), (['analyze', '{tmp}/no_evals', '--out={tmp}'], 'no_evals'),
    (['analyze', '{tmp}/missing', '--out={tmp}'], 'missing'), (['fit'], 'usage'), (['plan', '--measur=True'], 'measur'),
    (['plan', '--measure=yes'], 'measure'), (['plan', '--measure=1'], 'measure'),  # were a silent False
    (['plan', 'extra'], 'extra'),  # was ignored
    (['analyze', '{run}', '--out=/proc/ladder'], 'out'),  # unwritable: refused before the fits, not after them
    (['analyze', '{run}', '--out={run}/log.jsonl'], 'out'),  # a file where the output folder goes
    (['analyze', '{run}', '--out='], 'out'),
    (['analyze', '{run}', '--out={tmp}/out', '--bench={run}/log.jsonl'], 'gen_tok_s'),  # not a bench.py CSV
    (['analyze', '{tmp}/foreign', '--out={tmp}/out'], 'foreign'),  # JSON, but not a train.py log
]


@pytest.mark.parametrize('args,word', BAD, ids=[' '.join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, word):
    run = write_run(tmp_path, 'dense', 64, ladder.BUDGETS[-1], chinchilla(1.0, 40, 40))
    for name, records in (('no_evals', [dict(kind='config', mode='dense')]),
                          ('foreign', [dict(kind='config'), dict(kind='eval', val_loss=2.0)])):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'log.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    code, out, err = in_process('experiments/ladder.py', *(a.format(tmp=tmp_path, run=run) for a in args))
    assert_refused(code, err, word)
    assert out == '' and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('flag', ['--help', '-h'])
def test_help_lists_the_commands_and_keys(flag):
    code, out, err = in_process('experiments/ladder.py', flag)
    assert code == 0 and err == '' and 'analyze' in out and 'resamples = ' in out


def test_approach_3_recovers_known_exponents():
    """noise-free points from L(N, D) = E + A/N^α + B/D^β at ladder-like N and D: α, β, a = β/(α+β) come back"""
    E, A, B, alpha, beta = 1.3, 30.0, 400.0, 0.3, 0.45
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(5e4, 5e6, 6), np.geomspace(1e6, 1e8, 6)))
    p = ladder.fit_parametric(N, D, E + A / N ** alpha + B / D ** beta)
    assert (p['alpha'], p['beta'], p['E']) == pytest.approx((alpha, beta, E), abs=0.02)
    assert p['a'] == pytest.approx(beta / (alpha + beta), abs=0.01) and p['degenerate'] == ''


def test_held_out_check_flags_a_frontier_that_bends_at_the_top_budget():
    """on the law the top budget is predicted within its interval; bent below it (as the ladder's spectron is), not"""
    rng = np.random.default_rng(0)
    budgets = np.array(ladder.BUDGETS)
    C = np.repeat(budgets, 4) * np.tile([1.0, 1.02, 1.04, 1.06], len(budgets))  # the on-law point cheapest
    L = 1.2 + 0.5 * (C / ladder.C_REF) ** -0.3 + np.tile([0.0, 0.02, 0.05, 0.1], len(budgets))
    law = ladder.held_out_check(C, L, budgets[-1], 50, rng)
    assert law['within'] and law['law'] and abs(law['error']) < 0.01
    bent = L - 0.08 * (C > budgets[-2] * ladder.BUDGET_TOL)
    off = ladder.held_out_check(C, bent, budgets[-1], 50, rng)
    assert not off['within'] and not off['law'] and off['error'] == pytest.approx(0.08, abs=0.01)
    fits = dict(degenerate='', held_out=off)
    assert 'misses its held-out budget' in ladder.not_a_law(fits)
