"""experiments/compress.py on a tiny dense checkpoint (2 layers, n_embd 32, trained a few steps): what it removes,
what it chooses, what a truncated W is, and its bad inputs. Run with: python -m pytest -q test_compress.py"""
import csv
import json
import os

import numpy as np
import pytest
import torch

import compress
import lowrank
from conftest import assert_refused, in_process, run


@pytest.fixture(scope='module')
def ckpt_dir(tmp_path_factory, corpus):
    """A dense run of 4 steps on the first 40k characters of TinyShakespeare: 12 matrices, 32x32 and 32x128."""
    out_dir = tmp_path_factory.mktemp('compress') / 'dense'
    run('train.py', '--mode=dense', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=16', '--batch_size=8',
        '--eval_iters=2', '--max_iters=4', '--eval_interval=4', '--spectra_interval=0', '--device=cpu',
        f'--input_file={corpus}', f'--out_dir={out_dir}')
    return out_dir


def with_weights(src, dst, **weights):
    """A copy of checkpoint dir src in dst with some matrices replaced (name with '_' for '.': blocks_0_mlp_down)."""
    ckpt = torch.load(src / 'ckpt.pt', weights_only=True)
    for name, W in weights.items():
        ckpt['model'][name.replace('_', '.') + '.weight'] = W
    os.makedirs(dst)
    torch.save(ckpt, dst / 'ckpt.pt')
    return dst


def with_spectrum(s, shape, seed):
    """a (out x in) matrix with singular values s and random singular vectors"""
    g = torch.Generator().manual_seed(seed)
    P = torch.linalg.qr(torch.randn(shape[0], len(s), generator=g)).Q
    Q = torch.linalg.qr(torch.randn(shape[1], len(s), generator=g)).Q
    return (P * torch.tensor(s, dtype=torch.float32)) @ Q.T


def test_removes_what_it_claims_on_the_runs_eval_batches(ckpt_dir, tmp_path, capsys):
    rows = compress.main([str(ckpt_dir), '--budgets=1,3,6', f'--csv={tmp_path / "c.csv"}',
                          f'--png={tmp_path / "c.png"}'])
    with open(tmp_path / 'c.csv') as f:
        assert [(int(r['budget']), r['rule']) for r in csv.DictReader(f)] == \
            [(b, rule) for b in (1, 3, 6) for rule in ('spectral', 'last-N')]
    with open(tmp_path / 'c.png', 'rb') as f:
        assert f.read(4) == b'\x89PNG'
    model = compress.load(str(ckpt_dir))[0]
    layers = dict(model.linear_layers())
    for row in rows:  # a rank-8 factorized layer of the same shape (lowrank.FactorizedLinear) stores exactly that less
        names = row['matrices'].split()
        factorized = [lowrank.FactorizedLinear(layers[n].in_features, layers[n].out_features, 8, False, 0.02)
                      for n in names]
        assert row['params_removed'] == sum(layers[n].weight.numel() - sum(p.numel() for p in f.parameters())
                                            for n, f in zip(names, factorized))
        assert len(names) == row['budget']
    by_budget = {b: [r['params_removed'] for r in rows if r['budget'] == b] for b in (1, 3, 6)}
    assert by_budget == {1: [4096 - 8 * 160] * 2, 3: [2 * 2816 + 512] * 2, 6: [2 * 2816 + 4 * 512] * 2}
    # last-N: the last block first, from its last matrix back
    last_n = [r['matrices'] for r in rows if r['rule'] == 'last-N']
    assert last_n[1] == 'blocks.1.mlp.down blocks.1.mlp.up blocks.1.attn.o'
    # the loss before compression is the run's last eval: the same val batches
    with open(ckpt_dir / 'log.jsonl') as f:
        logged = [r for r in map(json.loads, f) if r['kind'] == 'eval'][-1]['val_loss']
    assert rows[0]['base_val_loss'] == pytest.approx(logged, abs=1e-5)
    assert 'val loss' in capsys.readouterr().out


def test_a_compressed_w_is_the_rank_k_truncation(ckpt_dir):
    model = compress.load(str(ckpt_dir))[0]
    shapes, ranks, svds, lost, saved = compress.matrices(model, 0.25)
    state = model.state_dict()
    names = ['blocks.0.attn.v', 'blocks.1.mlp.up']
    new = compress.compressed_state(state, svds, names, ranks)
    for key, W in state.items():
        name = key[:-len('.weight')]
        if name not in names:
            assert torch.equal(new[key], W), key  # nothing else changes
            continue
        P, s, Qh = np.linalg.svd(W.double().numpy(), full_matrices=False)
        want = (P[:, :8] * s[:8]) @ Qh[:8]
        assert np.abs(new[key].double().numpy() - want).max() < 1e-5, key
        assert np.linalg.matrix_rank(new[key].double().numpy(), tol=1e-6) == 8
        assert lost[name] == pytest.approx((s[8:] ** 2).sum() / (s ** 2).sum(), rel=1e-5)


def test_spectral_and_last_n_choose_differently_when_they_should(ckpt_dir, tmp_path, capsys):
    """The last block's mlp.down gets a flat spectrum (it loses 3/4 of its energy at rank 8 of 32) and the first
    block's a steep one (it loses almost none): last-N truncates the last, spectral the first. Swapped, they agree."""
    flat, steep = [1.0] * 32, [0.5 ** i for i in range(32)]
    differ = with_weights(ckpt_dir, tmp_path / 'differ', blocks_1_mlp_down=with_spectrum(flat, (32, 128), 0),
                          blocks_0_mlp_down=with_spectrum(steep, (32, 128), 1))
    rows = compress.main([str(differ), '--budgets=1'])
    assert [r['matrices'] for r in rows] == ['blocks.0.mlp.down', 'blocks.1.mlp.down']
    assert rows[0]['energy_lost'] < 1e-4 and rows[1]['energy_lost'] == pytest.approx(0.75, abs=1e-4)
    assert rows[0]['params_removed'] == rows[1]['params_removed']
    agree = with_weights(ckpt_dir, tmp_path / 'agree', blocks_1_mlp_down=with_spectrum(steep, (32, 128), 0))
    rows = compress.main([str(agree), '--budgets=1'])
    assert [r['matrices'] for r in rows] == ['blocks.1.mlp.down'] * 2
    assert rows[0]['increase'] == rows[1]['increase']
    capsys.readouterr()


BAD = [  # (arguments after the checkpoint dir ({tmp}: a fresh folder), a key word of the one-line error)
    (['--budgets=0'], 'budget'), (['--budgets=1,13'], 'budget 13'), (['--budgets=two'], 'two'),
    (['--budget=1'], 'budgets'), (['--rank=1.0'], 'saves no parameters'), (['--rank=64'], 'does not fit'),
    (['--rank=1.5'], 'rank'), (['--eval_iters=-1'], 'eval_iters'), (['--csv=/nonexistent/dir/c.csv'], 'csv'),
    (['--csv=/proc/c.csv'], 'csv'),  # outputs that cannot be written: refused before the work, not after it
    (['--csv={tmp}'], 'csv'),  # a folder where the CSV file goes
    (['--png=/proc/c.png'], 'png'),
    (['--png={tmp}/figure.png'], 'png'),  # a folder where the PNG file goes
    (['--png={tmp}/c.txt'], 'png'),  # matplotlib cannot write a .txt figure
]


@pytest.mark.parametrize('args,word', BAD, ids=[' '.join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(ckpt_dir, tmp_path, args, word):
    (tmp_path / 'figure.png').mkdir()
    code, out, err = in_process('experiments/compress.py', ckpt_dir, *(a.format(tmp=tmp_path) for a in args))
    assert_refused(code, err, word)
    assert out == '' and sorted(os.listdir(tmp_path)) == ['figure.png']  # nothing ran, nothing written


def bad_checkpoint(ckpt_dir, root, kind):
    """a checkpoint dir (or path) that compress.py must refuse: its name is the kind of damage"""
    path = root / kind
    if kind == 'missing':
        return path
    path.mkdir()
    if kind == 'nfw':  # a checkpoint of a mode without a dense W
        ckpt = torch.load(ckpt_dir / 'ckpt.pt', weights_only=True)
        ckpt['config']['mode'] = 'nfw'
        torch.save(ckpt, path / 'ckpt.pt')
    else:
        (path / 'ckpt.pt').write_bytes(b'not a checkpoint')
    return path


CHECKPOINTS = [('missing', 'ckpt.pt'), ('nfw', 'mode=nfw'), ('junk', 'junk')]  # (kind, a key word of the error)


@pytest.mark.parametrize('kind,word', CHECKPOINTS, ids=[k for k, _ in CHECKPOINTS])
def test_bad_checkpoints_are_one_line_and_exit_2(ckpt_dir, tmp_path, kind, word):
    code, out, err = in_process('experiments/compress.py', bad_checkpoint(ckpt_dir, tmp_path, kind), '--budgets=1')
    assert_refused(code, err, word)


def test_no_checkpoint_dir_is_one_line_and_exit_2():
    assert_refused(*in_process('experiments/compress.py', '--budgets=1')[::2], 'CKPT_DIR')
