"""experiments/ladder.py: the FLOP accounting of the ladder's shapes, the fits on synthetic data with known answers,
and analyze end to end on synthetic log.jsonl files (CPU, no training)."""
import json
import math
import os
import subprocess

import numpy as np
import pytest

import ladder
from conftest import assert_refused, in_process


def count_by_hand(mode, d):
    """(all parameters, training FLOPs per token) from the layer shapes alone: per block Q, K, V, O (d×d) and the
    MLP's up and down (d×4d), dense or as two factors of rank d/4; two LayerNorms per block and a final one;
    token and position embeddings, the head tied to the first; attention's QKᵀ and AV: 2·2·T·d per layer forward.
    TSVD: rank d/2, and a vector s of r singular values per layer (a parameter, no matmul)"""
    L, T, V = ladder.N_LAYER, ladder.BLOCK_SIZE, ladder.VOCAB
    vectors = 0
    if mode in ('dense', 'muon'):
        weights = 4 * d * d + 2 * d * 4 * d
    else:
        r = d // 2 if mode == 'tsvd' else d // 4
        weights = 4 * r * (d + d) + 2 * r * (d + 4 * d)
        vectors = 6 * r if mode == 'tsvd' else 0
    params = L * (weights + vectors) + (2 * L + 1) * d + V * d + T * d
    return params, 6 * (L * weights + V * d) + 3 * L * 2 * 2 * T * d


@pytest.mark.parametrize('mode', ['dense', 'muon', 'spectron', 'nfw', 'tsvd'])
def test_flop_accounting_of_the_ladder_shapes(mode):
    for d in ladder.WIDTHS[mode]:
        assert ladder.shape(mode, d) == count_by_hand(mode, d), (mode, d)


def plan_rows():
    return ladder.plan_rows({m: [(ladder.shape(m, d)[1], ms) for (mm, d), ms in ladder.MEASURED_MS.items() if mm == m]
                             for m in ('dense', 'muon', 'spectron')})


@pytest.fixture(autouse=True)
def fresh_clone(tmp_path, monkeypatch):
    """every test in an empty folder: run_lines reads runs/ladder (a restored long run without its checkpoints), so a
    test sees the plan as a fresh clone does, whatever this machine's ladder has run"""
    monkeypatch.chdir(tmp_path)

def test_plan_keeps_epochs_and_spans():
    rows, grid = plan_rows()
    assert max(r['tokens'] for r in rows) / ladder.TRAIN_TOKENS <= ladder.MAX_EPOCHS
    assert max(ladder.BUDGETS) / min(ladder.BUDGETS) >= 10 - 1e-9 and len(ladder.BUDGETS) >= 4
    for mode in ladder.WIDTHS:
        params = [r['params'] for r in rows if r['mode'] == mode]
        assert len(params) >= 5 and math.log10(max(params) / min(params)) >= 1.5, mode
        for b in ladder.BUDGETS:  # room for a minimum with two widths on either side of it at every budget
            assert sum(b in r['steps'] for r in rows if r['mode'] == mode) >= 5, (mode, b)
        assert grid[mode] > 0 and all(r['hours'] > 0 for r in rows)


def test_budgets_past_1e13_and_the_epoch_rule():
    """2e13 and 4e13 are budgets; a point is run iff it takes ≥ MIN_STEPS steps and ≤ MAX_EPOCHS epochs (16: the
    complete works are all the data there is), so the narrowest widths stop below the top budget"""
    assert {2e13, 4e13} <= set(ladder.BUDGETS) and ladder.MAX_EPOCHS == 16 and ladder.FRESH_EPOCHS == 4
    for mode, widths in ladder.WIDTHS.items():
        for d in widths:
            fpt = ladder.shape(mode, d)[1]
            run = dict(ladder.budget_steps(mode, d))
            for b in ladder.BUDGETS:
                s = ladder.steps_for(b, fpt)
                epochs = s * ladder.TOKENS_PER_STEP / ladder.TRAIN_TOKENS
                assert (b in run) == (s >= ladder.MIN_STEPS and epochs <= ladder.MAX_EPOCHS), (mode, d, b)
    assert ladder.budget_steps('dense', 12) == list(zip(ladder.BUDGETS, (11573, 20580, 36597, 65079)))  # 1e13: 26
    assert ladder.budget_steps('dense', 32)[-1] == (2e13, 47714)  # 10.7 epochs: run; 4e13's 21.4 are not
    assert [b for b, _ in ladder.budget_steps('dense', 384)] == [1e13, 2e13, 4e13]  # 5.6e12: 125 steps, too few
    lines = ladder.run_lines('long', ['dense'], seeds=(1337,))
    assert all(int(line.split('--max_iters=')[1].split()[0]) * ladder.TOKENS_PER_STEP <= 16 * ladder.TRAIN_TOKENS
               for line in lines)


def committed_runs():
    """{out dir the ladder would train it in: the last config of its committed log} of every committed run"""
    import gzip
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets', 'ladder', 'logs')
    out = {}
    for name in sorted(os.listdir(root)):
        with gzip.open(os.path.join(root, name), 'rt') as f:
            config = [r for r in map(json.loads, f) if r['kind'] == 'config'][-1]  # a branch's own, after its parent's
        name = name[:-len('.log.jsonl.gz')]
        out['runs/ladder/grid/' + name[5:] if name.startswith('grid_') else 'runs/ladder/' + name] = config
    return out


def test_every_committed_run_is_still_planned_with_its_settings(monkeypatch):
    """bash experiments/ladder.sh resumes: each committed log (seed 1337, the first ladder's budgets) is the run of
    a line of the new plan, under the same name, with the same settings (a long run of then is a branch now: a branch
    equals the straight WSD run); only log_interval differs (the runs logged every 10 steps, the plan says 100). Dense's
    runs under its first step-size rule lie in assets/ladder/dense_lr1e-3, out of the plan; those at 1× the rule of a
    width STEP_X moved are the plan's without STEP_X (the grid's 1×)"""
    lines = {}
    for step_x in ({}, ladder.STEP_X):
        monkeypatch.setattr(ladder, 'STEP_X', step_x)
        lines.update({line.split()[0]: line.split()[1:] for stage in ('long', 'branch', 'grid')
                      for line in ladder.run_lines(stage, list(ladder.WIDTHS), seeds=ladder.SEEDS)})
    committed = committed_runs()
    assert len(committed) >= 90
    for run, config in committed.items():
        assert run in lines, run
        for flag in lines[run]:
            key, value = flag[2:].split('=', 1)
            if key not in ('log_interval', 'save_at', 'init_from', 'branch_from'):
                assert value == str(config[key]) or float(value) == pytest.approx(config[key], rel=1e-6), (run, key)


def test_a_long_run_whose_checkpoints_are_gone_is_remade_by_its_highest_unfinished_branch(tmp_path, monkeypatch):
    """a long run restored from its committed log has no branch checkpoints (they stay on the machine that made
    them): the long stage then trains the highest unfinished branch straight, keeping the lower ones' branch points,
    and the branch stage branches from those; with its checkpoints there, the long run serves every branch"""
    monkeypatch.chdir(tmp_path)
    d = 32
    steps = [s for _, s in ladder.budget_steps('dense', d)]
    starts = [s - max(1, round(ladder.COOLDOWN * s)) for s in steps[:-1]]
    run = lambda s: ladder.point_dir('dense', d, s, 1)
    def line_of(stage, s):
        return next(ln for ln in ladder.run_lines(stage, ['dense'], seeds=(1,)) if ln.split()[0] == run(s))
    def finish(s, ckpts=()):
        os.makedirs(run(s), exist_ok=True)
        with open(f"{run(s)}/log.jsonl", 'w') as f:
            f.write(json.dumps(dict(kind='summary')) + '\n')
        for k in ckpts:
            open(f"{run(s)}/ckpt_{k}.pt", 'w').close()
    assert line_of('long', steps[-1]).endswith(f"--max_iters={steps[-1]} --save_at={','.join(map(str, starts))}")
    finish(steps[-1])  # restored: no checkpoints
    finish(steps[0])  # one branch done already
    assert not any(ln.split()[0] == run(steps[-1]) for ln in ladder.run_lines('long', ['dense'], seeds=(1,)))
    assert line_of('long', steps[-2]).endswith(f"--max_iters={steps[-2]} --save_at={','.join(map(str, starts[1:-1]))}")
    finish(steps[-2], starts[1:-1])
    assert all(line_of('branch', s).endswith(f"--branch_from={run(steps[-2])}/ckpt_{k}.pt")
               for s, k in zip(steps[1:-2], starts[1:-2]))
    assert line_of('long', steps[-1]).endswith(f"--save_at={','.join(map(str, starts))}")  # nothing more to remake
    finish(steps[-1], starts)  # the long run's own checkpoints come first
    assert all(line_of('branch', s).endswith(f"--branch_from={run(steps[-1])}/ckpt_{k}.pt")
               for s, k in zip(steps[:-1], starts))


def test_dense_trains_at_its_width_rule():
    """dense's learning_rate is 1.3e-3·(256/d)^(2/3) in every stage (its grid at ½× and 2× of it)"""
    for stage in ('long', 'branch', 'grid'):
        for line in ladder.run_lines(stage, ['dense'], seeds=(1337,)):
            d = int(line.split('--n_embd=')[1].split()[0])
            lr = float(line.split('--learning_rate=')[-1].split()[0])
            x = float(line.split('_x')[1].split('_')[0].split()[0]) if stage == 'grid' else ladder.ladder_x('dense', d)
            assert ('_x' in line.split()[0]) == (x != 1), line
            assert lr == pytest.approx(x * 1.3e-3 * (256 / d) ** (2 / 3), rel=1e-5), line
    assert ladder.step_rule('muon', 12) == 0.01 and ladder.step_rule('spectron', 64) == 0.04
    for mode, rule in (('nfw', lambda d: 4e-3 * min(1, 32 / d)), ('tsvd', lambda d: 6e-3 * min(1, (96 / d) ** 0.5))):
        for ln in (ln for stage in ('long', 'branch') for ln in ladder.run_lines(stage, [mode], seeds=(1337,))):
            d = int(ln.split('--n_embd=')[1].split()[0])  # 2× their registry's up to d₀, then falling: a flag
            x = ladder.ladder_x(mode, d)  # STEP_X's widths (tsvd d=24) at their multiple, named _x2
            assert ('_x' in ln.split()[0]) == (x != 1), ln
            assert float(ln.split('--learning_rate=')[1].split()[0]) == pytest.approx(x * rule(d), rel=1e-5), ln


def test_speeds_writes_what_analyze_reads(tmp_path, monkeypatch):
    """ladder.py speeds: one row per ladder shape of --modes, at the ladder's rank, in the CSV analyze's --bench reads"""
    monkeypatch.setattr(ladder, 'WIDTHS', {'dense': (12,), 'spectron': (32,), 'tsvd': (16,)})
    monkeypatch.setattr(ladder, 'SAMPLE_TOKENS', 3)
    ladder.main(['speeds', '--modes=dense,spectron,tsvd', f'--out={tmp_path}/speeds.csv'])
    speeds = ladder.read_bench(f'{tmp_path}/speeds.csv')
    assert set(speeds) == {('dense', 12, 12), ('spectron', 32, 8), ('tsvd', 16, 8)} and min(speeds.values()) > 0


def test_seed_names():
    """seed 1337's lines are the same with or without more seeds; another seed's are the same runs with _s{seed}
    appended to every name (its branches from its own long run) and its --seed"""
    for stage in ('long', 'branch'):
        alone = ladder.run_lines(stage, ['dense', 'tsvd'], seeds=(1337,))
        both = ladder.run_lines(stage, ['dense', 'tsvd'], seeds=(1337, 1))
        assert ladder.SEEDS[0] == 1337
        other = [ln for ln in both if '_s1' not in ln.split()[0]]
        seed1 = [ln for ln in both if ln.split()[0].endswith('_s1')]
        assert other == alone and len(seed1) == len(alone)
        for a, b in zip(alone, seed1):
            expected = a.replace('--seed=1337', '--seed=1').split()
            expected[0] += '_s1'
            expected = [f.replace('/ckpt_', '_s1/ckpt_') if f.startswith('--branch_from=') else f for f in expected]
            assert b.split() == expected
    assert ladder.point_dir('dense', 96, 2441, 1) == 'runs/ladder/dense_d96_T2441_s1'
    assert ladder.point_dir('dense', 96, 2441, 1337) == 'runs/ladder/dense_d96_T2441'
    assert ladder.point_dir('dense', 64, 2441, 1) == 'runs/ladder/dense_d64_x2_T2441_s1'  # STEP_X's width
    assert ladder.point_dir('dense', 64, 2441, 1, x=1) == 'runs/ladder/dense_d64_T2441_s1'
    assert ladder.run_lines('grid', ['dense'], seeds=(1337, 1)) == ladder.run_lines('grid', ['dense'], seeds=(1337,))


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


def write_run(root, mode, d, budget, loss_of, seed=1337, offset=0.0, spent=1.0):
    """a finished run's log.jsonl at one ladder shape and budget, its val loss from loss_of(N, D) + offset; spent < 1:
    its FLOPs/token shrink (as TSVD's rank does) so that it logs that fraction of its nominal FLOPs"""
    params, fpt = ladder.shape(mode, d)
    steps = ladder.steps_for(budget, fpt)
    C = steps * fpt * ladder.BLOCK_SIZE * ladder.BATCH_SIZE
    path = os.path.join(root, f"{mode}_d{d}_C{budget:.2g}_s{seed}")
    os.makedirs(path)
    config = dict(kind='config', mode=mode, n_embd=d, n_layer=ladder.N_LAYER, block_size=ladder.BLOCK_SIZE,
                  batch_size=ladder.BATCH_SIZE, rank=ladder.rank_of(mode) or d, seed=seed,
                  **{ladder.step_key(mode): ladder.ladder_x(mode, d) * ladder.step_rule(mode, d)})
    logged = params - ladder.BLOCK_SIZE * d  # num_params() leaves out the position embedding
    evals = [dict(kind='eval', iter=it, val_loss=loss_of(params, C / fpt) + extra + offset, params=logged,
                  train_flops=C * it / steps * (1 if it == 0 else spent), flops_per_token=fpt * (1 if it == 0 else
                  2 * spent - 1)) for it, extra in ((0, 3.0), (steps, 0.0))]  # mean FLOPs/token: spent × the start's
    with open(os.path.join(path, 'log.jsonl'), 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in [config] + evals) + '\n')
    return path


def chinchilla(E, A, B, a=0.34, b=0.34):
    return lambda N, D: E + A / N ** a + B / D ** b


def synthetic_ladder(root, modes, seeds=(1337,)):
    """every point the plan runs, at each seed (seed k's loss offset by ±0.01·k, alternating over the points)"""
    paths = []
    for mode, loss_of in modes.items():
        for d in ladder.WIDTHS[mode]:
            for i, (b, _) in enumerate(ladder.budget_steps(mode, d)):
                paths += [write_run(root, mode, d, b, loss_of, seed, 0.01 * k * (-1) ** (i + d))
                          for k, seed in enumerate(seeds)]
    return paths


def test_analyze_end_to_end(tmp_path, capsys):
    # equal exponents of N and D: N_opt ∝ C^0.5; spectron's reducible loss is larger, so its gap to dense is > 0
    paths = synthetic_ladder(tmp_path / 'runs', {'dense': chinchilla(1.0, 40, 40)}, seeds=(1337, 1))
    paths += synthetic_ladder(tmp_path / 'runs', {'spectron': chinchilla(1.0, 60, 40)})
    out = tmp_path / 'out'
    ladder.main(['analyze', *paths, f'--out={out}', '--resamples=10'])
    for name in ('loss_vs_flops.png', 'isoflop.png', 'gap.png', 'ladder.md', 'points.csv'):
        assert (out / name).stat().st_size > 0, name
    text = (out / 'ladder.md').read_text()
    assert 'spectron − dense' in text and '| dense |' in text and 'Held-out check' in text and 'Approach 3: a' in text
    assert "The first ladder's decade" in text and '| dense | 4e+13 |' in text.split("first ladder's decade")[1]
    n_dense = sum('/dense_' in p for p in paths) // 2
    assert f"seeds per point: dense {n_dense} with 2; spectron {len(paths) - 2 * n_dense} with 1" in text
    assert '| spectron − dense | ' in text.split('Measured gap')[1]  # fit-free, an interval from dense's seeds
    with open(out / 'points.csv') as f:
        assert len(f.readlines()) == len(paths) + 1
    points = ladder.merge_seeds([ladder.read_point(p) for p in paths])
    budgets = ladder.group_budgets(points)
    assert len(budgets) == len(ladder.BUDGETS)
    fits = {m: ladder.mode_fits([p for p in points if p['mode'] == m], budgets, 20, np.random.default_rng(0))
            for m in ('dense', 'spectron')}
    assert fits['dense']['exp'][0] == pytest.approx(0.5, abs=0.08)  # N_opt ∝ C^0.5 by construction
    gap = ladder.gap_curves(fits, np.array(ladder.BUDGETS))['spectron']['gap']
    assert (gap > 0).all()
    assert ladder.gap_curves(fits, np.array(ladder.BUDGETS), 'muon') == {}  # no dense + Muon run: no gap to it
    assert list(ladder.gap_curves(dict(fits, muon=fits['dense']), np.array(ladder.BUDGETS), 'muon')) == ['spectron']
    for f in fits.values():  # the frontier runs through each budget's best point, not its cheapest run (the lower
        best = ladder.budget_best(f['B'], f['L'])  # envelope of single runs: 0.4 above dense's best at 1e12)
        assert len(best) == len(ladder.BUDGETS)
        assert np.abs(ladder.frontier_loss(f['fit'], f['C'][best]) - f['L'][best]).max() < 0.02
    ladder.check_fits(points, budgets, fits, 20, 0)
    assert fits['dense']['held_out']['law'] and abs(fits['dense']['held_out']['error']) < 0.02  # a true law holds


def test_cpu_time_counts_a_branch_from_its_branch_point(tmp_path):
    """a branch's summary counts its parent's seconds up to the branch point: the ladder's CPU time takes only its
    own share, and a budget's straight-run time (a fresh clone's) all of it"""
    loss = chinchilla(1.0, 40, 40)
    straight, branch = (write_run(tmp_path, 'dense', d, 1e12, loss) for d in ladder.WIDTHS['dense'][2:4])
    for path, seconds, config in ((straight, 3600, []), (branch, 36000, [dict(kind='config', iter=0)])):
        steps = ladder.read_point(path)['iter']
        config = [dict(r, iter=round(steps * 0.8), init_from='branch') for r in config]  # its own record, at 80%
        with open(os.path.join(path, 'log.jsonl'), 'a') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in config + [dict(kind='summary', seconds=seconds)]))
    runs = [ladder.read_point(p) for p in (straight, branch)]
    assert [r['start'] for r in runs] == [0, round(runs[1]['iter'] * 0.8)]
    line = ladder.cpu_time(runs, ladder.group_budgets(ladder.merge_seeds(runs)))
    own = (3600 + 36000 * (runs[1]['iter'] - runs[1]['start']) / runs[1]['iter']) / 3600
    assert f"the 2 runs with a summary took {own:.1f} core-hours" in line and 'C = 1e+12 11.0 core-hours' in line
    # the straight run again at seed 1, 1800 s: the clone's budget counts one seed (the point's mean), not both
    twin = write_run(tmp_path, 'dense', ladder.WIDTHS['dense'][2], 1e12, loss, seed=1)
    with open(os.path.join(twin, 'log.jsonl'), 'a') as f:
        f.write(json.dumps(dict(kind='summary', seconds=1800)) + '\n')
    runs.append(ladder.read_point(twin))
    line = ladder.cpu_time(runs, ladder.group_budgets(ladder.merge_seeds(runs)))
    assert 'runs with a summary took' in line and 'C = 1e+12 10.8 core-hours' in line


BAD = [  # (command line: {tmp} a fresh folder, {run} a finished run in it; a key word of the one-line error)
    (['analyze', '--out={tmp}'], 'usage'), (['analyze', '{tmp}/no_evals', '--out={tmp}'], 'no_evals'),
    (['analyze', '{tmp}/missing', '--out={tmp}'], 'missing'), (['fit'], 'usage'), (['third'], 'usage'), (['speeds'], 'out'), (['speeds', '--out=/proc/x.csv'], 'out'), (['plan', '--measur=True'], 'measur'),
    (['plan', '--measure=yes'], 'measure'), (['plan', '--measure=1'], 'measure'),  # were a silent False
    (['plan', 'extra'], 'extra'),  # was ignored
    (['analyze', '{run}', '--out=/proc/ladder'], 'out'),  # unwritable: refused before the fits, not after them
    (['analyze', '{run}', '--out={run}/log.jsonl'], 'out'),  # a file where the output folder goes
    (['analyze', '{run}', '--out='], 'out'),
    (['analyze', '{run}', '--out={tmp}/out', '--bench={run}/log.jsonl'], 'gen_tok_s'),  # not a bench.py CSV
    (['analyze', '{tmp}/foreign', '--out={tmp}/out'], 'foreign'),  # JSON, but not a train.py log
    (['analyze', '{run}', '{run}', '--out={tmp}/out'], 'more than once'),  # one seed of a point twice: not 2 seeds
    (['runs', '--stage=long', '--seeds=1,x'], 'seeds'), (['runs', '--stage=long', '--seeds=1,1'], 'seeds'),
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
    L += rng.normal(0, 0.005, len(L))  # noise, as seeds have: on noise-free points any fit error would be a miss
    law = ladder.held_out_check(C, L, budgets[-1], 50, rng)
    assert law['within'] and law['law'] and abs(law['error']) < 0.02
    bent = L - 0.08 * (C > budgets[-2] * ladder.BUDGET_TOL)
    off = ladder.held_out_check(C, bent, budgets[-1], 50, rng)
    assert not off['within'] and not off['law'] and off['error'] == pytest.approx(0.08, abs=0.01)
    fits = dict(degenerate='', held_out=off)
    assert 'misses its held-out budget' in ladder.not_a_law(fits)
    # the first decade's fit (1e12–1e13) at each budget past it: on the law, then bent from 2e13 on
    for loss, hit in ((L, True), (L - 0.08 * (C > ladder.FIRST_DECADE[1] * ladder.BUDGET_TOL), False)):
        for top in budgets[budgets > 1.5e13]:
            h = ladder.held_out_check(C, loss, top, 50, rng, fit_below=2e13)
            assert h['hits'] == hit and h['measured'] == pytest.approx(loss[np.isclose(C / top, 1, rtol=0.1)].min())
    loose = bent + np.random.default_rng(10).normal(0, 0.05, len(L))  # seeds this far apart: an interval so wide
    wide = ladder.held_out_check(C, loose, budgets[-1], 50, np.random.default_rng(0))  # that it holds the miss
    assert wide['within'] and abs(wide['error']) > ladder.HELD_OUT_TOL and not wide['law']


def law_runs(mode, spread, seeds=(1337, 1), widths=None):
    """run records (as read_point gives them) at every point the plan runs for mode, on a known frontier-like law;
    seed k's loss is the law's ± spread (the sign alternating over points, so each point's mean is the law's)"""
    runs, loss_of = [], chinchilla(1.0, 40, 40)
    for d in widths or ladder.WIDTHS[mode]:
        params, fpt = ladder.shape(mode, d)
        for i, (b, steps) in enumerate(ladder.budget_steps(mode, d)):
            C = steps * fpt * ladder.TOKENS_PER_STEP
            for k, seed in enumerate(seeds):
                runs.append(dict(run=f"{mode}_d{d}_T{steps}_s{seed}", mode=mode, seed=seed, n_embd=d,
                                 n_layer=ladder.N_LAYER, rank=d, iter=steps, params=params, flops_per_token=fpt,
                                 train_flops=C, budget=C, tokens=C / fpt, val_loss=loss_of(params, C / fpt)
                                 + spread * (-1) ** (i + d + k)))
    return runs


def test_a_third_seed_where_two_disagree_by_more_than_the_gap(capsys):
    """ladder.py third: a budget's best points of a pair (mode against dense, or against muon) get seed 2 where their
    seeds' range exceeds |gap|; none where the seeds agree, none twice, only the modes asked for; each a straight run"""
    agree = law_runs('dense', 0.0) + law_runs('spectron', 0.0)
    assert ladder.third_seed_lines(ladder.merge_seeds(agree), ['dense', 'spectron']) == []
    runs = law_runs('dense', 0.05) + law_runs('spectron', 0.0)  # dense's ±0.05 > the gap at most budgets
    points = ladder.merge_seeds(runs)
    lines = ladder.third_seed_lines(points, ['dense', 'spectron'])
    gaps = dict(ladder.measured_gaps(ladder.group_budgets(points), ['dense', 'spectron'], 10, 0))['spectron − dense']
    assert len(lines) == 2 * sum(abs(g) < 0.1 for g, _ in gaps.values()) > 0  # both sides of each such budget
    assert all('_s2 ' in ln and '--seed=2 ' in ln and 'branch' not in ln and 'save_at' not in ln for ln in lines)
    dense = ladder.third_seed_lines(points, ['dense'])
    assert dense == [ln for ln in lines if '--mode=dense ' in ln]
    assert all('--learning_rate=' in ln for ln in dense)  # dense's rule, as in its other runs
    third = [dict(r, seed=2, run=r['run'][:-5] + '_s2') for r in runs if r['seed'] == 1337 and any(
        f"{ladder.point_dir(r['mode'], r['n_embd'], r['iter'], 2)} " in ln for ln in lines)]
    again = ladder.third_seed_lines(ladder.merge_seeds(runs + third), ['dense', 'spectron'])  # a new best point may
    assert not {ln.split()[0] for ln in again} & {ln.split()[0] for ln in lines}  # ask for its own, none twice
    assert 'third seed: dense d=' in capsys.readouterr().err


def test_seeds_are_one_point_and_widen_every_interval():
    """two seeds of a point are one point at their mean; each interval (frontier, exponents, held-out prediction,
    measured gap) is wider when the seeds disagree than when they agree, the central values the same"""
    width = {}
    for spread in (0.0, 0.03):
        runs = law_runs('dense', spread) + law_runs('muon', 0.0, seeds=(1337,))
        points = ladder.merge_seeds(runs)
        assert len(points) == len(runs) - sum(r['mode'] == 'dense' for r in runs) // 2
        assert sorted(len(p['losses']) for p in points) == [1] * len(law_runs('muon', 0, (1,))) + [2] * (
            len(points) - len(law_runs('muon', 0, (1,))))
        dense = [p for p in points if p['mode'] == 'dense']
        assert all(p['val_loss'] == pytest.approx(chinchilla(1.0, 40, 40)(p['params'], p['tokens'])) for p in dense)
        budgets = ladder.group_budgets(points)
        f = ladder.mode_fits(dense, budgets, 25, np.random.default_rng(0))
        held = ladder.held_out_check(f['C'], f['L'], max(budgets), 25, np.random.default_rng(1), f['S'], f['B'])
        gaps = dict(ladder.measured_gaps(budgets, ['dense', 'muon'], 200, 2))['muon − dense']
        width[spread] = dict(
            frontier=np.ptp(ladder.interval([ladder.frontier_loss(b, ladder.C_REF) for b in f['boot']])),
            exponent=np.ptp(ladder.interval([e[0] for e in f['boot_exp']])),
            held=np.ptp(held['interval']), gap=max(np.ptp(iv) for _, iv in gaps.values()), central=f['exp'][0])
    assert width[0.0]['gap'] == 0 and width[0.0]['central'] == pytest.approx(width[0.03]['central'])
    for k in ('frontier', 'exponent', 'held', 'gap'):
        assert width[0.03][k] > width[0.0][k], k


def test_a_point_with_one_seed_twice_is_refused():
    runs = law_runs('dense', 0.0, seeds=(1337,), widths=(64,))
    with pytest.raises(SystemExit):
        ladder.merge_seeds(runs + runs[:1])


def test_tsvd_points_group_by_the_budget_they_were_given(tmp_path):
    """TSVD runs the steps its start shape needs for a budget, and its shrinking rank logs fewer FLOPs (here 70 %
    past its rank warmup): it is grouped with the other modes at that nominal budget, but its frontier, the gaps and
    the held-out check place it at the FLOPs it logged"""
    paths = synthetic_ladder(tmp_path / 'dense', {'dense': chinchilla(1.0, 40, 40)})
    for d in ladder.WIDTHS['tsvd']:
        for b, steps in ladder.budget_steps('tsvd', d):
            paths.append(write_run(tmp_path / 'tsvd', 'tsvd', d, b, chinchilla(1.0, 50, 40),
                                   spent=0.7 if steps > 500 else 1.0))
    points = ladder.merge_seeds([ladder.read_point(p) for p in paths])
    tsvd = [p for p in points if p['mode'] == 'tsvd']
    shrunk = [p for p in tsvd if p['iter'] > 500]
    assert shrunk and all(p['train_flops'] == pytest.approx(0.7 * p['budget']) for p in shrunk)
    assert all(p['tokens'] == p['iter'] * ladder.TOKENS_PER_STEP for p in tsvd)  # not train_flops / its last shape's
    budgets = ladder.group_budgets(points)
    assert len(budgets) == len(ladder.BUDGETS)
    for (b, g), nominal in zip(sorted(budgets.items()), ladder.BUDGETS):
        assert {p['mode'] for p in g} == {'dense', 'tsvd'} and b == pytest.approx(nominal, rel=0.01)
    logged = ladder.group_budgets([dict(p, budget=p['train_flops']) for p in points])
    assert len(logged) > len(ladder.BUDGETS)  # by logged FLOPs, its shrunk points would split off
    f = ladder.mode_fits(tsvd, budgets, 5, np.random.default_rng(0))
    assert (f['C'] <= f['B'] * (1 + 1e-9)).all() and (f['C'] < f['B'] * 0.71).any()
    held = ladder.held_out_check(f['C'], f['L'], max(budgets), 5, np.random.default_rng(0), f['S'], f['B'])
    best = min((p for p in budgets[max(budgets)] if p['mode'] == 'tsvd'), key=lambda p: p['val_loss'])
    assert held['measured'] == best['val_loss'] and best['train_flops'] < 0.71 * max(budgets)
    assert held['pred'] == pytest.approx(ladder.frontier_loss(held['fit'], best['train_flops']))  # where it was


def tiny_log(path, mode, d, steps, loss, finished=True, x=1):
    os.makedirs(path)
    fpt = ladder.shape(mode, d)[1]
    end = (dict(kind='summary', seconds=1.0),) if finished else ()  # a run still going has none
    with open(os.path.join(path, 'log.jsonl'), 'w') as f:
        for r in (dict(kind='config', mode=mode, n_embd=d, n_layer=ladder.N_LAYER, block_size=ladder.BLOCK_SIZE,
                       batch_size=ladder.BATCH_SIZE, rank=d, seed=1337, learning_rate=x * ladder.step_rule(mode, d)),
                  dict(kind='eval', iter=steps, val_loss=loss, params=1, flops_per_token=fpt,
                       train_flops=steps * fpt * ladder.TOKENS_PER_STEP)) + end:
            f.write(json.dumps(r) + '\n')


def test_the_grid_checks_the_lowest_budget_too(tmp_path, monkeypatch):
    """½× and 2× at each checked width's highest budget up to 1e13 within 4 epochs (the first ladder's runs, names
    unchanged) and at its lowest budget (its name ends in _T{steps}); one check where the two are the same; then at
    GRID_BEST's (width, budget) points"""
    lines = {ln.split()[0].split('/')[-1]: int(ln.split('--max_iters=')[1].split()[0])
             for ln in ladder.run_lines('grid', ['dense'])}
    assert lines == {'dense_d12_x0.5': 11573, 'dense_d12_x2': 11573,  # 1.8e12 would be 4.6 epochs: one check
                     'dense_d24_x0.5': 12269, 'dense_d24_x2': 12269, 'dense_d24_x0.5_T3880': 3880,
                     'dense_d24_x2_T3880': 3880, 'dense_d48_x0.5': 11693, 'dense_d48_x2': 11693,
                     'dense_d48_x0.5_T1170': 1170, 'dense_d48_x2_T1170': 1170,
                     'dense_d384_x0.5': 223, 'dense_d384_x2': 223,  # 1e13 is d=384's lowest budget and its check's
                     'dense_d32_x0.5_T13416': 13416, 'dense_d32_x2_T13416': 13416, 'dense_d64_x0.5_T6934': 6934,
                     'dense_d64_x2_T6934': 6934, 'dense_d96_x0.5_T13032': 13032, 'dense_d96_x2_T13032': 13032}
    monkeypatch.chdir(tmp_path)
    for name, steps, loss in (('grid/dense_d24_x0.5_T3880', 3880, 2.1), ('dense_d24_T3880', 3880, 2.0),
                              ('grid/dense_d24_x2_T3880', 3880, 1.9), ('dense_d24_T12269', 12269, 1.8)):
        tiny_log(f"runs/ladder/{name}", 'dense', 24, steps, loss)
    tiny_log("runs/ladder/grid/dense_d24_x2", 'dense', 24, 5000, 1.7, finished=False)  # running: its last eval isn't
    table = ladder.grid_table(['dense', 'muon'])  # every mode's, rows only where a run finished: none of muon's
    assert '| muon |' not in table and '| dense | 12 |' not in table
    rows = [r for r in table.splitlines() if r.startswith('| dense | 24 ')]
    assert rows == ['| dense | 24 | 3.16e+12 | 12,269 | learning_rate | nan | 1.8000 | nan | not yet run |',
                    '| dense | 24 | 1e+12 | 3,880 | learning_rate | 2.1000 | 2.0000 | 1.9000 | 2× |']


def test_approach_3_intervals_include_the_seed_spread():
    """Approach 3's bootstrap draws each point's loss from its seeds: wider intervals when they disagree"""
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(5e4, 5e6, 4), np.geomspace(1e6, 1e8, 4)))
    L = 1.3 + 30.0 / N ** 0.3 + 400.0 / D ** 0.45
    width = {}
    for spread in (0.0, 0.03):
        losses = [np.array([v - spread, v + spread]) for v in L]
        p = ladder.fit_parametric(N, D, L, 10, np.random.default_rng(0), losses)
        width[spread] = np.ptp(ladder.interval([q['a'] for q in p['boot']]))
    assert width[0.03] > width[0.0]


def test_a_width_the_grid_moved_runs_at_its_step_size_and_only_those_runs_count(tmp_path, capsys):
    """STEP_X: dense d=48 and 64 (and tsvd d=24) run at 2× the rule at every budget and seed (names _x2, the flag 2×
    the rule); their 1× runs (the grid's 1× column) are set aside from the ladder's points, with a line saying so"""
    assert ladder.STEP_X == {('dense', 48): 2, ('dense', 64): 2, ('tsvd', 24): 2}
    for line in ladder.run_lines('long', ['dense'], seeds=(1,)) + ladder.run_lines('branch', ['dense']):
        d = int(line.split('--n_embd=')[1].split()[0])
        lr = float(line.split('--learning_rate=')[1].split()[0])
        assert lr == pytest.approx(ladder.ladder_x('dense', d) * ladder.step_rule('dense', d), rel=1e-5), line
        assert ('_x2_T' in line.split()[0]) == (d in (48, 64)), line
    old, new, other = (tmp_path / 'dense_d48_T1170', 1), (tmp_path / 'dense_d48_x2_T1170', 2), (tmp_path / 'd96', 1)
    for (path, x), d in zip((old, new, other), (48, 48, 96)):
        tiny_log(path, 'dense', d, 1170, 2.0, x=x)
    runs = [ladder.read_point(str(p)) for p, _ in (old, new, other)]
    kept = ladder.on_the_ladder(runs)
    assert [r['run'] for r in kept] == [runs[1]['run'], runs[2]['run']]
    assert 'dense_d48_T1170' in capsys.readouterr().err


@pytest.mark.parametrize('check', ['nfw 50 100 0.001', 'bogus 64 100 0.001', 'nfw 64 x 0.001'])
def test_factor_lr_checks_refuse_a_bad_check_in_one_line_before_any_run(check):
    """experiments/factor_lr.sh "MODE D STEPS LR": a width the ladder does not run, a mode it does not know or a
    malformed check is one line on stderr and exit status 2"""
    root = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run(['bash', os.path.join(root, 'experiments', 'factor_lr.sh'), check], capture_output=True,
                       text=True, cwd=root)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_factor_lr_runs_each_check_at_its_own_width_step_size_and_length():
    """PLAN=1 prints the runs: each check's line is the ladder's run at that check's width (not the first check's)"""
    root = os.path.dirname(os.path.abspath(__file__))
    checks = ['tsvd 96 419 0.003', 'nfw 64 8770 0.006']
    r = subprocess.run(['bash', os.path.join(root, 'experiments', 'factor_lr.sh'), *checks], capture_output=True,
                       text=True, cwd=root, env={**os.environ, 'PLAN': '1'})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, check in zip(lines, checks):
        mode, d, steps, lr = check.split()
        assert line.startswith(f'runs/factor_lr/{mode}_d{d}_lr{lr}_T{steps} ')
        for flag in (f'--mode={mode}', f'--n_embd={d}', f'--max_iters={steps}', f'--learning_rate={lr}'):
            assert f' {flag} ' in f'{line} ', (flag, line)
        assert '--save_at' not in line


def test_adding_a_mode_to_the_analysis_never_moves_another_modes_intervals():
    """each mode's (and each pair's) bootstrap draws from its own stream: spectron − dense's measured gaps and
    spectron's held-out check are the same with NFW's points analysed beside them or not"""
    runs = law_runs('dense', 0.01) + law_runs('spectron', 0.01) + law_runs('nfw', 0.01)
    points = ladder.merge_seeds(runs)
    results = []
    for modes in (['dense', 'spectron'], ['dense', 'nfw', 'spectron']):
        mine = [p for p in points if p['mode'] in modes]
        budgets = ladder.group_budgets(mine)
        fits = {m: ladder.mode_fits([p for p in mine if p['mode'] == m], budgets, 20, ladder.stream(0, m))
                for m in modes}
        ladder.check_fits(mine, budgets, fits, 20, 1)
        gaps = dict(ladder.measured_gaps(budgets, modes, 20, 2))['spectron − dense']
        results.append((list(gaps.values()), fits['spectron']['held_out']['interval']))  # budgets: NFW's move C
    assert results[0] == results[1]
