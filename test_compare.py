"""experiments/compare.py (issue 28): its protocol on mocked runs (a grid extended at its end, the best and its
neighbours at more seeds, nothing rerun on resume), its axes (equal FLOPs' steps, equal parameters' ranks), the
folder's config key and its one-line refusals; the cola mode (its layer, its init's scale, init_from=svd refused);
Spectron's step_sizes hook, which sees the factors."""
import json
import math
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

import compare
import lowrank
from conftest import assert_refused, in_process, records, train_in_process
from model import GPT, GPTConfig

TINY = ['--n_layer=1', '--n_embd=32', '--n_head=2', '--block_size=16', '--batch_size=4', '--max_iters=20',
        '--warmup_iters=2', '--eval_interval=10', '--eval_iters=2']


def args(corpus, tmp_path, *extra):
    return [*TINY, f'--input_file={corpus}', f'--out={tmp_path / "cmp"}', f'--keep={tmp_path / "keep"}', *extra]


class FakeRuns:
    """train.py's place: writes the log a finished run writes, with a final val loss that is a parabola in the log of
    the step size, lowest at best[mode] (plus 0.01 × seed / 1337 so that seeds differ); calls are recorded"""

    def __init__(self, best):
        self.best, self.calls, self.argv = best, [], []

    def __call__(self, path, argv):
        self.argv.append(argv)
        a = {k[2:]: v for k, _, v in (x.partition('=') for x in argv)}
        mode, seed, steps = a['mode'], int(a['seed']), int(a['max_iters'])
        key = lowrank.MODES[mode].step_size
        value = float(a[key])
        self.calls.append((mode, value, seed))
        val = 2 + (math.log10(value / self.best[mode])) ** 2 + 0.01 * seed / 1337
        config = dict(mode=mode, seed=seed, max_iters=steps, batch_size=4, block_size=16, gradient_accumulation_steps=1,
                      **{key: value})
        evals = [dict(kind='eval', iter=i, val_loss=val + (steps - i) / steps, train_loss=val, params=1000,
                      flops_per_token=1e5, train_flops=1e5 * 64 * i, ranks={}) for i in (0, steps // 2, steps)]
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, 'log.jsonl'), 'w') as f:
            for r in [dict(kind='config', **config), *evals, dict(kind='summary', iter=steps, seconds=1.0)]:
                f.write(json.dumps(r) + '\n')
        return 0


def folder_of(out):
    return os.path.join(out, next(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d))))


def test_protocol_extends_a_grid_at_its_end_then_seeds_the_best_and_resumes(corpus, tmp_path, monkeypatch, capsys):
    """cola's best lies 10× above its grid's centre: the grid grows upward one value at a time until the best is
    inside (3 values), then the best and its neighbours run at seed 1; muon's best is its centre: no extension.
    Run again, nothing reruns; a run whose log holds other settings (not this config's) is run again; a third seed
    runs only its own runs."""
    centre = compare.centre('cola', {})
    fake = FakeRuns(dict(cola=10 * centre, muon=0.01))
    monkeypatch.setattr(compare, 'train_run', fake)
    compare.main(args(corpus, tmp_path, '--modes=cola', '--reference=muon', '--rank=8'))
    cola = [(v, s) for m, v, s in fake.calls if m == 'cola']
    grid = [compare.rounded(centre * 10 ** (i / 4 - 0.5), 10 ** 0.25) for i in range(5)]
    added = [grid[-1]]
    for _ in range(3):  # each a grid step (10^¼) past the last: ~6, 10, 20 × the centre
        added.append(compare.rounded(added[-1] * 10 ** 0.25, 10 ** 0.25))
    added = added[1:]
    assert [v for v, s in cola if s == 1337] == grid + added
    assert sorted(v for v, s in cola if s == 1) == added  # the best (10×) and its two neighbours
    assert len([c for c in fake.calls if c[0] == 'muon']) == 5 + 3
    folder, keep = folder_of(tmp_path / 'cmp'), folder_of(tmp_path / 'keep')
    report = open(os.path.join(keep, 'steps_vs_muon.md')).read()
    assert f"| cola | learning_rate = {added[1]:g} |" in report and "| muon | muon_lr = 0.01 |" in report
    assert all(os.path.getsize(os.path.join(keep, f'steps_vs_muon_{f}.png')) > 10_000
               for f in ('step_sizes', 'val_vs_flops'))
    assert len([n for n in os.listdir(keep) if n.endswith('.log.jsonl.gz')]) == 19  # every run's log kept
    out = capsys.readouterr().out
    assert out.index('plan: 10 grid runs at seed 1337 + 6 at seed 1') < out.index('1 of ') and '19 of 19 done' in out

    fake.calls.clear()  # resumed: every run is on disk
    compare.main(args(corpus, tmp_path, '--modes=cola', '--reference=muon', '--rank=8'))
    assert fake.calls == [] and '19 of 19 done: 0 run now, 19 found finished' in capsys.readouterr().out
    stale = os.path.join(folder, 'muon_lr0.01_seed1337_20it', 'log.jsonl')
    rows = [json.loads(line) for line in open(stale)]
    rows[0]['max_iters'] = 999  # another config's run in its place: not counted
    open(stale, 'w').write(''.join(json.dumps(r) + '\n' for r in rows))
    compare.main(args(corpus, tmp_path, '--modes=cola', '--reference=muon', '--rank=8'))
    assert fake.calls == [('muon', 0.01, 1337)] and '--overwrite=True' in fake.argv[-1]  # replaced, not resumed
    fake.calls.clear()  # a third seed: the same folder, and only the new seed's runs
    compare.main(args(corpus, tmp_path, '--modes=cola', '--reference=muon', '--rank=8', '--seeds=3'))
    assert sorted(fake.calls) == sorted([('cola', v, 2) for v in added] + [('muon', v, 2) for v in (0.006, 0.01,
                                                                                                   0.02)])
    fake.calls.clear()  # a fresh clone: no runs/, only the kept logs (as committed under assets/)
    shutil.rmtree(tmp_path / 'cmp')
    compare.main(args(corpus, tmp_path, '--modes=cola', '--reference=muon', '--rank=8', '--seeds=3'))
    assert fake.calls == [] and '25 found finished' in capsys.readouterr().out
    fake.calls.clear()  # the same runs serve another axis: equal FLOPs at the reference's budget (cola's 20 steps)
    compare.main(args(corpus, tmp_path, '--modes=cola', '--reference=cola', '--rank=8', '--axis=flops'))
    assert fake.calls == [] and os.path.exists(os.path.join(keep, 'flops_vs_cola.md'))


def test_a_grid_stops_growing_after_extend_values_and_says_so(corpus, tmp_path, monkeypatch):
    fake = FakeRuns(dict(nfw=1.0, muon=0.01))  # nfw's best far above any grid
    monkeypatch.setattr(compare, 'train_run', fake)
    compare.main(args(corpus, tmp_path, '--modes=nfw', '--reference=muon', '--rank=8', '--extend=1', '--grid=3'))
    nfw = [(v, s) for m, v, s in fake.calls if m == 'nfw']
    assert len([1 for v, s in nfw if s == 1337]) == 3 + 1 and len([1 for v, s in nfw if s == 1]) == 2  # one neighbour
    report = open(os.path.join(folder_of(tmp_path / 'keep'), 'steps_vs_muon.md')).read()
    assert '- nfw (learning_rate, 20 steps) !:' in report


def test_equal_flops_gives_each_mode_the_reference_flops_and_equal_params_a_matching_rank(corpus, tmp_path):
    opts, flags = compare.parse(args(corpus, tmp_path, '--modes=cola,tsvd,dense', '--reference=dense', '--rank=8',
                                     '--axis=flops'))
    plan, info = compare.make_plan(opts, flags)
    tokens = 4 * 16
    vocab = info['meta']['vocab_size']
    fpt = lambda mode, rank: GPT(GPTConfig(block_size=16, vocab_size=vocab, n_layer=1, n_head=2, n_embd=32,
                                           mode=mode, rank=rank)).flops_per_token()
    budget = fpt('dense', 32) * tokens * 20
    assert plan['dense']['steps'] == 20 and info['flops_budget'] == budget
    for mode, rank in (('cola', 8), ('tsvd', 8)):  # TSVD: from its start rank (--rank=8 given)
        assert abs(plan[mode]['steps'] * fpt(mode, rank) * tokens - budget) <= fpt(mode, rank) * tokens / 2
        assert plan[mode]['steps'] > 20
    opts, flags = compare.parse(args(corpus, tmp_path, '--modes=cola,spectron', '--reference=muon', '--axis=params'))
    plan, _ = compare.make_plan(opts, flags)
    params = lambda mode, rank: GPT(GPTConfig(block_size=16, vocab_size=vocab, n_layer=1, n_head=2, n_embd=32,
                                              mode=mode, rank=rank)).num_params()
    target = params('muon', 32)
    for mode in ('cola', 'spectron'):
        r = plan[mode]['rank']
        assert all(abs(params(mode, r) - target) <= abs(params(mode, k) - target) for k in (r - 1, r + 1) if k <= 32)
    assert plan['muon']['rank'] is None


def test_the_folder_is_keyed_by_what_its_runs_share(corpus, tmp_path):
    """train.py's flags and the corpus; not the comparison's options, which only decide which runs are needed (each
    run's name holds its own mode, step size, seed, steps and rank)"""
    def key(*extra, input_file=corpus):
        opts, flags = compare.parse([*args(corpus, tmp_path, '--modes=cola', '--rank=8', *extra),
                                     f'--input_file={input_file}'])
        return compare.config_key(flags, compare.make_plan(opts, flags)[1]['meta'])[0]

    other = tmp_path / 'other.txt'
    other.write_text(open(corpus).read()[:-1] + 'X')
    base = key()
    assert key('--jobs=1', '--plan_only=True', '--seeds=3', '--extend=5', '--grid=7', '--modes=cola,nfw',
               '--axis=flops', '--reference=nfw') == base
    assert len({base, key('--dropout=0.1'), key(input_file=str(other))}) == 3
    p = dict(steps=20, rank=None)
    assert compare.run_name(compare.Run('cola', 0.002, 1), p) == 'cola_lr0.002_seed1_20it'
    assert compare.run_name(compare.Run('cola', 0.002, 1), dict(p, rank=5)) == 'cola_lr0.002_seed1_20it_rank5'


def test_a_log_from_before_train_flops_was_logged_gets_it_from_flops_per_token(tmp_path):
    rows = [dict(kind='config', batch_size=4, block_size=16, gradient_accumulation_steps=2),
            *(dict(kind='eval', iter=i, val_loss=2.0, flops_per_token=1e5) for i in (0, 10)),
            dict(kind='eval', iter=20, val_loss=1.9, flops_per_token=1e5, train_flops=123.0),
            dict(kind='summary', iter=20, seconds=1.0)]
    (tmp_path / 'log.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    evals = compare.summary_of(str(tmp_path))['evals']
    assert [e['train_flops'] for e in evals] == [0, 1e5 * 128 * 10, 123.0]  # a logged value is kept as it is


@pytest.mark.parametrize('argv, word', [
    (['--modes=cola,nope'], 'nope'),
    (['--axis=time'], 'axis'),
    (['--seed=3'], 'seed'),
    (['--axis=params', '--rank=8'], 'rank'),
    (['--modes=cola', '--energy=0.9'], 'energy'),  # no mode of cola, muon reads it
    (['--grid=2'], 'grid'),
    (['--budget=1e9', '--max_iters=5', '--axis=flops'], 'budget'),
    (['--n_embd=thirty'], 'n_embd'),
    (['--modes=cola', '--rank=64'], 'rank=64'),  # does not fit n_embd 32: the plan's model says so
    (['--keep=/dev/null/logs'], 'keep'),  # the kept logs' folder cannot be made
])
def test_bad_input_is_one_line(corpus, tmp_path, argv, word):
    code, _, err = in_process('experiments/compare.py', *args(corpus, tmp_path), *argv)
    assert_refused(code, err, word)
    assert not os.path.exists(tmp_path / 'cmp') or os.listdir(tmp_path / 'cmp') == []


def test_help_lists_the_keys():
    code, out, err = in_process('experiments/compare.py', '--help')
    assert code == 0 and err == '' and 'axis = ' in out and 'cola: learning_rate' in out


def test_the_grid_centres_are_train_pys_derived_defaults(corpus, tmp_path):
    """what a fresh train.py run at n_embd 32 logs as its step size (spectron_lr scaled by √(256/32))"""
    for mode, extra in (('spectron', ['--rank=8']), ('cola', ['--rank=8']), ('muon', [])):
        code, _, err = train_in_process(*TINY[:4], f'--input_file={corpus}', f'--mode={mode}', *extra,
                                        '--max_iters=1', '--eval_iters=1', f'--out_dir={tmp_path / mode}')
        assert code == 0, err
        key = lowrank.MODES[mode].step_size
        assert math.isclose(compare.centre(mode, {'n_embd': 32}), records(tmp_path / mode, 'config')[0][key])


# -----------------------------------------------------------------------------
# cola: y = SiLU(x U) Vᵀ + b

def test_cola_layer_is_its_formula_and_its_factors_are_V_U():
    torch.manual_seed(0)
    layer = lowrank.CoLALinear(32, 48, 8, True, 0.02)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(5, 32)
    assert torch.allclose(layer(x), F.silu(x @ layer.U) @ layer.V.T + layer.bias, atol=1e-6)
    A, B = layer.factors()
    assert A is layer.V and B is layer.U and layer.rank == 8
    assert not isinstance(layer, lowrank.FactorizedLinear)  # Spectron's pairs and load_svd_ are not its


def test_cola_init_keeps_a_dense_layers_output_scale():
    """small inputs (SiLU's linear range): output std = a dense layer's √in · init_std · std(x), where NFW's init
    through SiLU gives half of it"""
    torch.manual_seed(0)
    x = torch.randn(2048, 256) * 0.01
    dense = 256 ** 0.5 * 0.02 * 0.01
    cola = lowrank.CoLALinear(256, 256, 64, False, 0.02)
    nfw = lowrank.FactorizedLinear(256, 256, 64, False, 0.02)
    assert abs(cola(x).std().item() / dense - 1) < 0.03
    assert abs(F.linear(F.silu(x @ nfw.U), nfw.V).std().item() / dense - 0.5) < 0.02


def test_init_from_svd_with_mode_cola_is_refused(corpus, tmp_path):
    code, _, err = train_in_process(*TINY[:4], f'--input_file={corpus}', '--mode=dense', '--max_iters=2',
                                    '--eval_iters=1', f'--out_dir={tmp_path / "dense"}')
    assert code == 0, err
    code, _, err = train_in_process(*TINY[:4], f'--input_file={corpus}', '--mode=cola', '--rank=8',
                                    '--init_from=svd', f'--svd_from={tmp_path / "dense"}',
                                    f'--out_dir={tmp_path / "cola"}')
    assert_refused(code, err, 'cola')
    assert not os.path.exists(tmp_path / 'cola')


# -----------------------------------------------------------------------------
# Spectron.step_sizes(eta, U, V, sigma_U, sigma_V): a rule on the factors themselves

def test_step_sizes_sees_the_factors_and_its_steps_are_taken():
    class UOnly(lowrank.Spectron):  # U steps by a rule on both factors' Frobenius norms, V stays
        seen = []

        def step_sizes(self, eta, U, V, sigma_U, sigma_V):
            self.seen.append((U, V))
            return eta / (U.norm() + V.norm() + 1), 0.0

    torch.manual_seed(0)
    layer = lowrank.FactorizedLinear(32, 48, 8, False, 0.02)
    U0, V0 = layer.U.detach().clone(), layer.V.detach().clone()
    opt = UOnly([(layer.U, layer.V)], lr=0.1)
    layer.U.grad, layer.V.grad = torch.randn_like(layer.U), torch.randn_like(layer.V)
    opt.step()
    assert len(UOnly.seen) == 1 and UOnly.seen[0][0] is layer.U and UOnly.seen[0][1] is layer.V
    rho = 0.1 / (U0.norm() + V0.norm() + 1)  # the factors before the step
    expected = U0 - rho * lowrank.newton_schulz((0.05 * layer.U.grad)[None])[0]  # momentum after one step: 0.05 G
    assert torch.allclose(layer.U.detach(), expected, atol=1e-7) and torch.equal(layer.V.detach(), V0)


# -----------------------------------------------------------------------------
# the hunt's registry lines: each idea's layers and optimizers are what its line says

@pytest.mark.parametrize('mode, attn, mlp, optimizers', [
    ('cola_spectron', lowrank.CoLALinear, lowrank.CoLALinear, {'Spectron': 'factors', 'AdamW': 'the rest'}),
    ('cola_mlp', lowrank.DenseLinear, lowrank.CoLALinear, {'Muon': 'attn', 'AdamW': 'the rest'}),
    ('spectron_mlp', lowrank.DenseLinear, lowrank.FactorizedLinear,
     {'Muon': 'attn', 'Spectron': 'factors', 'AdamW': 'the rest'}),
])
def test_hunt_modes_build_their_parts_and_give_each_parameter_one_optimizer(mode, attn, mlp, optimizers):
    model = GPT(GPTConfig(block_size=16, vocab_size=65, n_layer=2, n_head=2, n_embd=32, mode=mode, rank=8))
    for name, layer in model.linear_layers():
        assert type(layer) is (attn if '.attn.' in name else mlp), name
    cfg = dict(learning_rate=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99, spectron_lr=0.02, spectron_beta=0.95,
               ns_steps=5, spectron_power_iters=1, spectron_wd=0.0, spectron_ortho=True, spectron_renorm=True,
               muon_lr=0.01, muon_beta=0.95)
    opts = lowrank.MODES[mode].optimizers(model, cfg)
    got = {type(o).__name__: [p for g in o.param_groups for p in g['params']] for o in opts}
    assert list(got) == list(optimizers)
    assert sorted(map(id, sum(got.values(), []))) == sorted(map(id, model.parameters()))  # each exactly once
    attn_weights = {id(m.weight) for n, m in model.linear_layers() if '.attn.' in n and hasattr(m, 'weight')}
    factors = {id(p) for _, m in model.linear_layers() if hasattr(m, 'U') for p in (m.U, m.V)}
    if 'Muon' in got:
        assert {id(p) for p in got['Muon']} == attn_weights
    if 'Spectron' in got:
        assert {id(p) for p in got['Spectron']} == factors
