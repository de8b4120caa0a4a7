"""train.py, sample.py and prepare_data.py end to end, as a user runs them (subprocesses, tiny models, CPU)."""
import json
import math
import os
import subprocess
import sys

import pytest

import lowrank
import prepare_data

REPO = os.path.dirname(os.path.abspath(__file__))
TINY = ['--n_layer=1', '--n_head=2', '--n_embd=32', '--block_size=16', '--batch_size=8', '--rank=8',
        '--eval_iters=2', '--log_interval=1', '--spectra_interval=5', '--device=cpu', '--warmup_iters=5']
MODES = list(lowrank.MODES)  # every mode, one added to the registry too
FACTORIZED = [m for m in MODES if lowrank.MODES[m].layer is not lowrank.DenseLinear]


def is_tsvd(mode):
    return issubclass(lowrank.MODES[mode].layer, lowrank.TSVDLinear)


def run(script, *args, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    p = subprocess.run([sys.executable, os.path.join(REPO, script), *args], capture_output=True, text=True,
                       env=env, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def start(*args, **env):
    """train.py in the background (text pipes, unbuffered, one thread; env added), for tests that signal or kill it."""
    return subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', **env))


def launch_ddp(*args, n=2):
    """n train.py processes of one gloo DDP job, started directly rather than by torchrun, so that a test can signal
    each one. Returns the Popen objects."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return [start(*args, WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                  RANK=str(r), LOCAL_RANK=str(r)) for r in range(n)]


def finish(procs, timeout=120):
    """(stdout, stderr) of every process; any still running after timeout is killed and the test fails."""
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()


def run_ddp(*args):
    """A two-process gloo run that must succeed; returns each process' (stdout, stderr)."""
    procs = launch_ddp(*args)
    outs = finish(procs)
    assert all(p.returncode == 0 for p in procs), outs
    return outs


def records(out_dir, kind):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['kind'] == kind]


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """The first 40k characters of TinyShakespeare: enough to learn something in 50 steps."""
    path = tmp_path_factory.mktemp('corpus') / 'tiny.txt'
    with open(os.path.join(REPO, 'data', 'tinyshakespeare.txt')) as f:
        path.write_text(f.read()[:40000])
    return str(path)


def train(corpus, out_dir, *args, check=True):
    return run('train.py', *TINY, f'--input_file={corpus}', f'--out_dir={out_dir}', *args, check=check)


@pytest.mark.parametrize('mode', MODES)
def test_fifty_steps_lower_the_loss(corpus, tmp_path, mode):
    train(corpus, tmp_path, f'--mode={mode}', '--max_iters=50', '--eval_interval=50', '--lr_decay_iters=50',
          '--learning_rate=3e-3', '--spectron_lr=0.1', '--rank_warmup=20', '--rank_interval=10', '--energy=0.8')
    evals = records(tmp_path, 'eval')
    assert [e['iter'] for e in evals] == [0, 50]
    assert evals[-1]['val_loss'] < 0.8 * evals[0]['val_loss']
    assert os.path.isfile(tmp_path / 'ckpt.pt') and os.path.isfile(tmp_path / 'spectra.npz')
    if is_tsvd(mode):  # truncation really happened, and the parameter count fell with it
        assert max(evals[-1]['ranks'].values()) < 8 and evals[-1]['params'] < evals[0]['params']


def test_spectra_early_records_every_tenth_step_before_it(corpus, tmp_path):
    """spectra_early adds every 10th step before it to the spectra_interval schedule; alone, it is the whole one."""
    import numpy as np
    for interval, want in ((15, [0, 10, 15, 20, 30]), (0, [0, 10, 20])):
        train(corpus, tmp_path / str(interval), '--mode=dense', '--max_iters=30', '--eval_interval=30',
              f'--spectra_interval={interval}', '--spectra_early=25')
        with np.load(tmp_path / str(interval) / 'spectra.npz') as z:
            assert list(z['steps']) == want and len(z['blocks.0.attn.q']) == len(want)


SPECTRON_ABLATIONS = ['spectron --spectron_ortho=False', 'spectron --spectron_renorm=False',
                      'spectron --spectron_ortho=False --spectron_renorm=False']  # the paper's ablation's variants


@pytest.mark.parametrize('mode', MODES + SPECTRON_ABLATIONS)
def test_resume_continues_the_same_loss_curve(corpus, tmp_path, mode):
    common = [*f'--mode={mode}'.split(), '--eval_interval=10', '--lr_decay_iters=20', '--rank_warmup=5', '--rank_interval=5',
              '--energy=0.9', '--min_rank=2', '--dropout=0.1']
    train(corpus, tmp_path / 'straight', *common, '--max_iters=20')
    train(corpus, tmp_path / 'resumed', *common, '--max_iters=10')
    train(corpus, tmp_path / 'resumed', *common, '--max_iters=20', '--init_from=resume')
    a, b = records(tmp_path / 'straight', 'train'), records(tmp_path / 'resumed', 'train')
    assert [r['iter'] for r in a] == [r['iter'] for r in b] == list(range(20))
    for ra, rb in zip(a, b):
        assert abs(ra['loss'] - rb['loss']) < 1e-5, (ra['iter'], ra['loss'], rb['loss'])
    ea, eb = records(tmp_path / 'straight', 'eval')[-1], records(tmp_path / 'resumed', 'eval')[-1]
    assert abs(ea['val_loss'] - eb['val_loss']) < 1e-5 and ea['ranks'] == eb['ranks']
    assert ea['train_flops'] == eb['train_flops'] > 0  # the count survives the resume


def test_sample_from_a_checkpoint(corpus, tmp_path):
    train(corpus, tmp_path, '--mode=tsvd', '--max_iters=10', '--eval_interval=10', '--rank_warmup=5',
          '--rank_interval=5', '--energy=0.9', '--min_rank=2')
    p = run('sample.py', f'--out_dir={tmp_path}', '--start=ROMEO:', '--num_samples=2', '--max_new_tokens=30',
            '--device=cpu')
    samples = p.stdout.split('---------------\n')[:2]
    assert len(samples) == 2 and all(s.startswith('ROMEO:') and len(s) == len('ROMEO:') + 30 + 1 for s in samples)
    bad = run('sample.py', f'--out_dir={tmp_path}', '--start=héllo~', check=False)
    assert bad.returncode == 2 and "'~é'" in bad.stderr


def test_char_and_bpe_preparation_round_trip(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    path = tmp_path / 'c.txt'
    path.write_text(text)
    for tokenizer in ('char', 'gpt2'):
        out = prepare_data.prepare(str(path), tokenizer)
        codec = prepare_data.Codec(prepare_data.load_meta(out))
        assert codec.decode(codec.encode(text)) == text
        import numpy as np
        tokens = np.concatenate([np.fromfile(os.path.join(out, f'{s}.bin'), dtype=np.uint16) for s in ('train', 'val')])
        assert codec.decode(tokens.tolist()) == text  # the files hold the whole corpus, in order
    assert codec.meta['vocab_size'] == 50257 and len(codec.encode(text)) < len(text) / 2  # BPE really merged


def test_offline_bpe_failure_is_one_clear_line(monkeypatch):
    import tiktoken

    def offline(name):
        raise ConnectionError("no network")
    monkeypatch.setattr(tiktoken, 'get_encoding', offline)
    with pytest.raises(prepare_data.DataError, match='TIKTOKEN_CACHE_DIR.*--tokenizer=char'):
        prepare_data.gpt2_encoding()


BAD_TRAIN_ARGS = [  # (arguments, what the one-line error must say)
    (['--mode=foo'], "unknown mode 'foo'"),
    (['--mode=spectrom'], "did you mean 'spectron'"),
    (['--n_embed=64'], "did you mean 'n_embd'"),
    (['--max_iters=ten'], 'max_iters must be int'),
    (['--dropout=True'], 'dropout must be float'),
    (['--compile=1'], 'compile must be bool'),
    (['--spectron_ortho=maybe'], 'spectron_ortho must be bool'),
    (['--spectron_renorm=1'], 'spectron_renorm must be bool'),
    (['--rank=9999'], 'does not fit'),
    (['--rank=0'], 'does not fit'),
    (['--rank=1.5'], 'fractional rank'),
    (['--n_embd=30', '--n_head=4'], 'not divisible'),
    (['--spectron_lr=0'], 'spectron_lr'),
    (['--spectron_lr=-0.1'], 'spectron_lr'),
    (['--spectron_beta=1.0'], 'spectron_beta'),
    (['--mode=muon', '--muon_lr=0'], 'muon_lr must be > 0'),
    (['--mode=muon', '--muon_beta=1.0'], 'muon_beta'),
    (['--mode=muon', '--muon_lr=fast'], 'muon_lr must be float'),
    (['--ns_steps=0'], 'ns_steps'),
    (['--energy=1.5'], 'energy'),
    (['--energy=0'], 'energy'),
    (['--min_rank=0'], 'min_rank'),
    (['--mode=tsvd', '--min_rank=16'], 'min_rank=16 is larger than rank=8'),
    (['--rank_interval=0'], 'rank_interval'),
    (['--batch_size=0'], 'batch_size'),
    (['--dtype=float64'], 'dtype'),
    (['--device=tpu'], 'device'),
    (['--tokenizer=bpe'], 'tokenizer'),
    (['--init_from=gpt2'], 'init_from'),
    (['--input_file=/nonexistent/corpus.txt'], 'corpus not found'),
    (['no_such_config.py'], 'config file not found'),
    (['--max_iters'], 'expected --key=value'),
    (['--lr_decay_iters=-1'], 'lr_decay_iters must be >= 0'),
    (['--spectra_early=-10'], 'spectra_early must be >= 0'),
    (['--spectra_early=0.5'], 'spectra_early must be int'),
    (['--out_dir=/dev/null/out'], 'cannot write to out_dir /dev/null/out'),  # as root too: /dev/null is no folder
    (['--device=cuda'], 'no CUDA GPU is available'),  # skipped where there is one
    (['--train_tokens=-1'], 'train_tokens must be >= 0'),
    (['--train_tokens=1e4'], 'train_tokens must be int'),
    (['--train_tokens=16'], 'train_tokens=16 holds no training window'),  # block_size + 1 = 17 tokens are one
    (['--train_tokens=10000000'], 'is larger than the training split'),  # of 36,000 tokens
    (['--init_from=svd'], 'init_from=svd needs --svd_from'),
    (['--init_from=svd', '--svd_from=/nonexistent/run'], 'no checkpoint at /nonexistent/run/ckpt.pt'),
]


@pytest.mark.parametrize('args,message', BAD_TRAIN_ARGS, ids=[' '.join(a) for a, _ in BAD_TRAIN_ARGS])
def test_bad_train_input_is_one_line_and_exit_2(corpus, tmp_path, args, message, capsys, monkeypatch):
    import torch
    if args == ['--device=cuda'] and torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    refused(capsys, monkeypatch, tmp_path, message, *TINY, f'--input_file={corpus}', *args)


def refused(capsys, monkeypatch, out_dir, message, *args):
    """train.py with args must stop with exit 2 and one line saying message, before starting a run in out_dir.
    In-process (train.py run as __main__), to spare a torch import per case; the subprocess tests show the same
    errors reach a real command line."""
    import runpy
    monkeypatch.setattr(sys, 'argv', ['train.py', f'--out_dir={out_dir}', *args])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(os.path.join(REPO, 'train.py'), run_name='__main__')
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    assert not os.path.exists(os.path.join(out_dir, 'log.jsonl'))  # nothing started


def test_each_mode_trains_with_its_own_defaults_unless_given(corpus, tmp_path):
    for mode, args in (('dense', []), ('nfw', []), ('tsvd', []), ('tsvd', ['--learning_rate=0.007', '--rank=16'])):
        out = tmp_path / f'{mode}{len(args)}'  # a mode with its own rank: TINY without --rank (tsvd: a fraction)
        own_rank = 'rank' in lowrank.MODES[mode].defaults
        run('train.py', *[a for a in TINY if not own_rank or not a.startswith('--rank')], f'--input_file={corpus}',
            f'--out_dir={out}', f'--mode={mode}', '--max_iters=0', *args)
        config = records(out, 'config')[0]
        want = {**lowrank.MODES[mode].defaults, **dict(a[2:].split('=') for a in args)}
        assert all(config[k] == type(config[k])(v) for k, v in want.items()), (want, config)
        assert config['min_lr'] == config['learning_rate'] / 10
    # Spectron's default η follows the width as 1/√n_embd (tuned at 256); a given η is taken as it is
    for args, eta in (([], 0.02 * math.sqrt(256 / 32)), (['--spectron_lr=0.05'], 0.05)):
        train(corpus, tmp_path / f'spectron{len(args)}', '--mode=spectron', '--max_iters=0', *args)
        assert records(tmp_path / f'spectron{len(args)}', 'config')[0]['spectron_lr'] == pytest.approx(eta, rel=1e-12)
    train(corpus, tmp_path / 'floor', '--mode=dense', '--max_iters=0', '--min_lr=0')  # a set floor stays set
    assert records(tmp_path / 'floor', 'config')[0]['min_lr'] == 0
    # a resumed run keeps its own values, not the mode's defaults (nor a min_lr of the default LR)
    tiny = [a for a in TINY if not a.startswith('--rank')] + [f'--input_file={corpus}', f'--out_dir={tmp_path}/resumed']
    run('train.py', *tiny, '--mode=tsvd', '--rank=16', '--energy=0.8', '--learning_rate=0.007', '--max_iters=2',
        '--eval_interval=1')
    run('train.py', *tiny, '--init_from=resume', '--max_iters=3', '--eval_interval=1')
    first, config = records(tmp_path / 'resumed', 'config')
    assert (config['rank'], config['energy'], config['learning_rate'], config['min_lr']) == (16, 0.8, 0.007, 0.0007)
    assert config['spectron_lr'] == first['spectron_lr']
    # muon, like dense, trains full W and ignores --rank (even one that fits no factorized layer)
    train(corpus, tmp_path / 'muon', '--mode=muon', '--rank=9999', '--max_iters=1', '--eval_interval=1')
    assert records(tmp_path / 'muon', 'eval')[-1]['params'] == records(tmp_path / 'dense0', 'eval')[-1]['params']
    help_text = run('train.py', '--help').stdout
    assert all(f"{k}={v:g}" in help_text for m in lowrank.MODES.values() for k, v in m.defaults.items())


def test_bad_corpora_and_config_files(tmp_path):
    cases = {'empty.txt': b'', 'small.txt': b'too small', 'latin1.txt': 'caf\xe9 '.encode('latin-1') * 100}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        p = run('train.py', f'--input_file={tmp_path / name}', f'--out_dir={tmp_path}', check=False)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (name, p.stderr)
    (tmp_path / 'cfg.py').write_text("n_layers = 3\n")
    p = run('train.py', str(tmp_path / 'cfg.py'), check=False)
    assert p.returncode == 2 and "did you mean 'n_layer'" in p.stderr
    p = run('sample.py', '--help')  # lists every key with its default, exit 0
    assert '--temperature=0.8' in p.stdout and '--out_dir=' in p.stdout
    p = run('prepare_data.py', f'--input={tmp_path / "latin1.txt"}', check=False)
    assert p.returncode == 2 and 'not UTF-8' in p.stderr


def test_bad_checkpoints(corpus, tmp_path):
    p = train(corpus, tmp_path, '--init_from=resume', check=False)
    assert p.returncode == 2 and 'no checkpoint' in p.stderr
    train(corpus, tmp_path, '--mode=nfw', '--max_iters=2', '--eval_interval=2')
    for args, message in ((['--mode=dense'], "has mode='nfw'"), (['--n_embd=64'], 'has n_embd=32'),
                          (['--mode=tsvd'], "has mode='nfw'"), (['--mode=muon'], "has mode='nfw'"),
                          (['--train_tokens=1000'], 'has train_tokens=0; cannot resume it with train_tokens=1000')):
        p = train(corpus, tmp_path, '--init_from=resume', *args, check=False)
        assert p.returncode == 2 and message in p.stderr, p.stderr
    (tmp_path / 'ckpt.pt').write_bytes((tmp_path / 'ckpt.pt').read_bytes()[:1000])  # a torn write
    p = train(corpus, tmp_path, '--init_from=resume', check=False)
    assert p.returncode == 2 and 'not a readable' in p.stderr and str(tmp_path) in p.stderr
    p = run('sample.py', f'--out_dir={tmp_path / "nowhere"}', check=False)
    assert p.returncode == 2 and 'no checkpoint' in p.stderr


def test_train_tokens_trains_on_a_prefix_and_leaves_val_alone(tmp_path, monkeypatch):
    """A corpus of distinct characters in code-point order, so that every token's id is its position. With
    --train_tokens=17 (block_size + 1: one window) the model must train, and measure its train loss, on positions
    0-16 alone; the val batches must be those of a run on the whole training split."""
    import runpy
    import signal
    import torch
    import model
    corpus = tmp_path / 'positions.txt'
    corpus.write_text(''.join(chr(0x4e00 + i) for i in range(4000)))  # train: positions 0-3599, val: 3600-3999
    seen, forward = [], model.GPT.forward

    def spy(self, idx, targets=None):  # every batch the model sees, and whether it trains on it
        seen.append((self.training, idx.clone(), targets.clone()))
        return forward(self, idx, targets)
    monkeypatch.setattr(model.GPT, 'forward', spy)
    monkeypatch.setattr(signal, 'signal', lambda *a: None)  # leave pytest's Ctrl-C alone

    def batches(out_dir, *args):
        seen.clear()
        monkeypatch.setattr(sys, 'argv', ['train.py', *TINY, f'--input_file={corpus}', f'--out_dir={out_dir}',
                                          '--max_iters=10', '--eval_interval=10', *args])
        runpy.run_path(os.path.join(REPO, 'train.py'), run_name='__main__')
        return list(seen)

    prefix, full = batches(tmp_path / 'prefix', '--train_tokens=17'), batches(tmp_path / 'full')
    window = torch.arange(17)
    train = [(x, y) for training, x, y in prefix if training or x.max() < 3600]  # eval's train split too
    assert len(train) == 10 + 2 * 2  # 10 steps, 2 evals of eval_iters = 2 batches
    assert all((x == window[:-1]).all() and (y == window[1:]).all() for x, y in train)
    assert max(y.max() for training, x, y in full if training) > 17  # the whole split, without the option
    val = lambda seen: [(x, y) for training, x, y in seen if not training and x.min() >= 3600]
    assert len(val(prefix)) == 4 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                         for a, b in zip(val(prefix), val(full)))
    assert records(tmp_path / 'prefix', 'config')[0]['train_tokens'] == 17
    assert torch.load(tmp_path / 'prefix' / 'ckpt.pt', weights_only=True)['config']['train_tokens'] == 17


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope='module')
def runs(corpus, tmp_path_factory):
    """A dense run (with biases, which an SVD init must take) and an nfw run, 4 steps each, to factorize."""
    out = tmp_path_factory.mktemp('runs')
    train(corpus, out / 'dense', '--mode=dense', '--bias=True', '--max_iters=4', '--eval_interval=4')
    train(corpus, out / 'nfw', '--mode=nfw', '--max_iters=4', '--eval_interval=4')
    return out


@pytest.mark.parametrize('mode', FACTORIZED)
def test_svd_init_factorizes_every_dense_layer(corpus, tmp_path, runs, mode):
    """One step at a step size of 1e-12 (which changes nothing at 1e-5), so that a checkpoint holds the SVD init:
    every layer is its dense weight's rank-8 truncation (NFW's factors balanced, TSVD's U, V orthonormal), the rest
    is the dense model's, the model's shape is the dense run's, and iterations and optimizer state start afresh."""
    import torch
    p = train(corpus, tmp_path, f'--mode={mode}', '--init_from=svd', f'--svd_from={runs / "dense"}', '--max_iters=1',
              '--eval_interval=1', '--learning_rate=1e-12', '--spectron_lr=1e-12')
    assert f'init from the SVD of {runs / "dense"}/ckpt.pt (dense, iter 4): rank 8 keeps' in p.stdout
    dense, ckpt = (torch.load(path, weights_only=True) for path in (runs / 'dense' / 'ckpt.pt', tmp_path / 'ckpt.pt'))
    assert ckpt['config']['bias'] and ckpt['iter_num'] == 1 and records(tmp_path, 'train')[0]['iter'] == 0
    assert all(s['step'] == 1 for opt in ckpt['optimizers'] for s in opt['state'].values() if 'step' in s)
    layers = [k[:-len('.weight')] for k in dense['model'] if '.attn.' in k or '.mlp.' in k if k.endswith('.weight')]
    assert len(layers) == 6
    for name in layers:
        P, s, Qh = torch.linalg.svd(dense['model'][f'{name}.weight'])
        truncation = P[:, :8] @ torch.diag(s[:8]) @ Qh[:8]
        U, V = ckpt['model'][f'{name}.U'], ckpt['model'][f'{name}.V']
        if is_tsvd(mode):
            W = (U * ckpt['model'][f'{name}.s']) @ V.T
            assert all(torch.allclose(M.T @ M, torch.eye(8), atol=1e-5) for M in (U, V))
        else:
            W = V @ U.T
            assert all(rel_err(M.T @ M, torch.diag(s[:8])) < 1e-5 for M in (U, V)), name
        assert rel_err(W, truncation) < 1e-5, name
    rest = [k for k in dense['model'] if k[:-len('.weight')] not in layers]
    assert len(rest) > 6 and all(torch.allclose(ckpt['model'][k], dense['model'][k], atol=1e-9) for k in rest)


def test_svd_init_at_full_rank_has_the_dense_val_loss(corpus, tmp_path, runs):
    train(corpus, tmp_path, '--mode=spectron', '--rank=1.0', '--init_from=svd', f'--svd_from={runs / "dense"}',
          '--max_iters=0')
    dense, factorized = records(runs / 'dense', 'eval')[-1], records(tmp_path, 'eval')[0]
    assert abs(factorized['val_loss'] - dense['val_loss']) < 1e-4
    assert abs(factorized['train_loss'] - dense['train_loss']) < 1e-4


def test_bad_svd_inits_are_one_line_and_exit_2(corpus, tmp_path, runs, capsys, monkeypatch):
    svd = ['--init_from=svd', f'--svd_from={runs / "dense"}']
    for args, message in (
            ([*TINY, '--mode=dense', *svd], 'init_from=svd with mode=dense: a dense model has nothing to factorize'),
            ([*TINY, '--mode=muon', *svd], 'init_from=svd with mode=muon: a dense model has nothing to factorize'),
            ([*TINY, '--init_from=svd', f'--svd_from={runs / "nfw"}'], 'is from a mode=nfw run'),
            (['--rank=64', *svd], 'rank=64 does not fit a 32->128 layer'),  # n_embd 32 from the checkpoint
            ([*TINY, '--n_embd=64', *svd], 'has n_embd=32; cannot factorize it with n_embd=64')):
        refused(capsys, monkeypatch, tmp_path, message, f'--input_file={corpus}', '--device=cpu', *args)


def test_resume_keeps_the_spectron_variant_of_its_checkpoint(corpus, tmp_path):
    """spectron_ortho and spectron_renorm change the optimizer, so a resume takes them from the checkpoint: a flag that
    contradicts it is refused (one line, exit 2), and a checkpoint from before the switches resumes with both on."""
    import torch
    train(corpus, tmp_path, '--mode=spectron', '--spectron_renorm=False', '--max_iters=2', '--eval_interval=2')
    for args, message in ((['--spectron_renorm=True'], 'has spectron_renorm=False; cannot resume it with '
                                                       'spectron_renorm=True'),
                          (['--spectron_ortho=False'], 'has spectron_ortho=True')):
        p = train(corpus, tmp_path, '--init_from=resume', '--max_iters=4', *args, check=False)
        assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    train(corpus, tmp_path, '--init_from=resume', '--max_iters=4', '--eval_interval=2')  # no flag: the saved variant
    assert records(tmp_path, 'config')[-1]['spectron_renorm'] is False
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)  # made old: no switches in its config or optimizer
    del ckpt['config']['spectron_ortho'], ckpt['config']['spectron_renorm']
    for group in ckpt['optimizers'][0]['param_groups']:
        del group['ortho'], group['renorm']
    torch.save(ckpt, tmp_path / 'ckpt.pt')
    train(corpus, tmp_path, '--init_from=resume', '--max_iters=6', '--eval_interval=2')
    config = records(tmp_path, 'config')[-1]
    assert config['spectron_ortho'] is True and config['spectron_renorm'] is True
    assert records(tmp_path, 'eval')[-1]['iter'] == 6


@pytest.mark.parametrize('mode', ['dense', 'spectron', 'tsvd'])
def test_ddp_two_processes_match_one_process_with_the_same_global_batch(corpus, tmp_path, mode):
    """torchrun with 2 CPU processes (gloo), each taking half of every global batch, trains the same model as one
    process doing both halves by gradient accumulation."""
    args = [*TINY, f'--input_file={corpus}', f'--mode={mode}', '--max_iters=12', '--eval_interval=12',
            '--gradient_accumulation_steps=2', '--rank_warmup=4', '--rank_interval=4', '--energy=0.9', '--min_rank=2']
    train(corpus, tmp_path / 'one', *args)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        os.path.join(REPO, 'train.py'), *args, f'--out_dir={tmp_path / "two"}'],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    one, two = records(tmp_path / 'one', 'eval')[-1], records(tmp_path / 'two', 'eval')[-1]
    assert abs(one['val_loss'] - two['val_loss']) < 1e-4 and one['ranks'] == two['ranks']
    for a, b in zip(records(tmp_path / 'one', 'train'), records(tmp_path / 'two', 'train')):
        assert abs(a['loss'] - b['loss']) < 1e-4


def test_ctrl_c_finishes_the_step_checkpoints_and_resumes(corpus, tmp_path):
    import signal
    import time
    import torch
    p = start(*TINY, f'--input_file={corpus}', f'--out_dir={tmp_path}', '--mode=spectron', '--max_iters=100000',
              '--eval_interval=100000')
    for line in p.stdout:  # wait until training is under way
        if line.startswith('iter 5:'):
            break
    time.sleep(3)  # trains on meanwhile: the resumed run's "done" line must count these seconds too
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert 'checkpoint saved' in out and '--init_from=resume' in out
    stopped_at = torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num']
    assert stopped_at >= 6
    assert records(tmp_path, 'summary') == []  # only a finished run has one (experiments/lib.sh skips those)
    train(corpus, tmp_path, '--mode=spectron', f'--max_iters={stopped_at + 3}', '--eval_interval=100000',
          '--init_from=resume')
    summary = records(tmp_path, 'summary')
    assert [r['iter'] for r in summary] == [stopped_at + 3] and summary[0]['seconds'] > 3
    assert [r['iter'] for r in records(tmp_path, 'train')][-4:] == [stopped_at - 1, stopped_at, stopped_at + 1,
                                                                     stopped_at + 2]


def test_keep_last_keeps_previous_checkpoints(corpus, tmp_path):
    import torch
    train(corpus, tmp_path, '--mode=nfw', '--max_iters=30', '--eval_interval=10', '--keep_last=2')
    steps = {name: torch.load(tmp_path / name, weights_only=True)['iter_num']
             for name in ('ckpt.pt', 'ckpt.1.pt', 'ckpt.2.pt')}
    assert steps == {'ckpt.pt': 30, 'ckpt.1.pt': 20, 'ckpt.2.pt': 10}
    assert not os.path.exists(tmp_path / 'ckpt.3.pt')


def test_nonfinite_gradients_are_skipped_and_counted_or_stop_the_run(corpus, tmp_path):
    """A learning rate of 1e30 blows the weights up after one step, so every later gradient is NaN."""
    import torch
    blowup = ['--mode=nfw', '--learning_rate=1e30', '--warmup_iters=0', '--max_iters=4', '--eval_interval=4']
    train(corpus, tmp_path / 'skip', *blowup)
    assert records(tmp_path / 'skip', 'train')[-1]['skipped'] == 3
    state = torch.load(tmp_path / 'skip' / 'ckpt.pt', weights_only=True)['model']
    assert all(torch.isfinite(v).all() for v in state.values())  # nothing non-finite was written
    p = train(corpus, tmp_path / 'stop', *blowup, '--skip_nonfinite=False', check=False)
    assert p.returncode == 1 and 'stopping at step 1: non-finite gradient, first in' in p.stderr
    assert 'Intel' not in p.stderr + p.stdout  # no LAPACK noise from logging a diverged model


def test_sigkill_at_random_moments_then_resume_reaches_the_same_loss(corpus, tmp_path):
    """Kill -9 the run at random moments (checkpoint writes included: one every 2 steps), resume each time;
    the last checkpoint must load and the final loss must equal an uninterrupted run's."""
    import random
    import signal
    import time
    import torch
    common = [*TINY, f'--input_file={corpus}', '--mode=spectron', '--max_iters=40', '--eval_interval=2',
              '--spectra_interval=2']
    train(corpus, tmp_path / 'straight', *common)
    out, rng, kills = tmp_path / 'killed', random.Random(0), 0
    for attempt in range(30):
        resume = ['--init_from=resume'] if (out / 'ckpt.pt').exists() else []
        p = start(*common, f'--out_dir={out}', *resume)
        if attempt < 5:
            for line in p.stdout:  # training is under way: now kill it at a random moment
                if line.startswith('iter'):
                    time.sleep(rng.uniform(0, 0.03))  # short: 5 kills must land before the 40 steps are done,
                    # even on a quiet machine (a TINY step with a checkpoint every 2 steps is a few ms)
                    p.send_signal(signal.SIGKILL)
                    break
        p.communicate(timeout=120)
        kills += p.returncode == -signal.SIGKILL  # a kill that lands after a clean exit does not count
        if p.returncode == 0:
            break
        if (out / 'ckpt.pt').exists():  # whatever the moment of the kill, the checkpoint is whole
            torch.load(out / 'ckpt.pt', weights_only=True)
    assert p.returncode == 0 and kills == 5
    a, b = records(tmp_path / 'straight', 'eval')[-1], records(out, 'eval')[-1]
    assert a['iter'] == b['iter'] == 40 and abs(a['val_loss'] - b['val_loss']) < 1e-5


def test_vocabulary_too_large_for_uint16_is_rejected(tmp_path):
    path = tmp_path / 'wide.txt'
    path.write_text(''.join(chr(0x10000 + i) for i in range(70000)), encoding='utf-8')
    with pytest.raises(prepare_data.DataError, match='do not fit the uint16'):
        prepare_data.prepare(str(path), 'char')


def test_shipped_corpus_is_the_canonical_tinyshakespeare():
    assert prepare_data.sha256_of(prepare_data.DEFAULT_INPUT) == \
        '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'


def test_ddp_process_count_must_divide_gradient_accumulation(corpus, tmp_path):
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        os.path.join(REPO, 'train.py'), *TINY, f'--input_file={corpus}', f'--out_dir={tmp_path}',
                        '--gradient_accumulation_steps=3'], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert p.returncode != 0 and 'gradient_accumulation_steps=3 is not divisible by the 2 DDP processes' in p.stderr
    assert not os.path.exists(tmp_path / 'log.jsonl')


def test_experiment_runner_skips_finished_runs_and_resumes_unfinished_ones(corpus, tmp_path):
    """experiments/lib.sh's train_all: one run per line, two at a time; rerun, it skips a run whose log has its
    summary and resumes one that has only a checkpoint (as a killed or Ctrl-C'd run leaves it)."""
    common = ' '.join([*TINY, f'--input_file={corpus}', '--mode=nfw', '--max_iters=6', '--eval_interval=3'])
    jobs = f"{tmp_path}/a {common}\n\n{tmp_path}/b {common} --seed=2 --keep_last=1 \n"  # a trailing blank: no join

    def train_all():
        p = subprocess.run(['bash', '-c', 'source experiments/lib.sh && train_all'], input=jobs, cwd=REPO, text=True,
                           capture_output=True, timeout=300, env=dict(os.environ, JOBS='2', PYTHON=sys.executable))
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    out = train_all()
    assert out.count('step 6: train loss') == 2, out
    assert [r['seed'] for r in records(tmp_path / 'b', 'config')] == [2]
    log_b = tmp_path / 'b' / 'log.jsonl'  # b, as a kill after its step-3 checkpoint leaves it
    log_b.write_text(''.join(line for line in log_b.read_text().splitlines(True) if '"summary"' not in line))
    os.replace(tmp_path / 'b' / 'ckpt.1.pt', tmp_path / 'b' / 'ckpt.pt')
    out = train_all()
    assert f'already done: {tmp_path}/a' in out and 'step 6: train loss' in out, out
    assert [r['iter'] for r in records(tmp_path / 'b', 'config')] == [0, 3]  # resumed at its checkpoint
    assert len(records(tmp_path / 'b', 'summary')) == 1


def test_a_signal_to_one_ddp_process_stops_every_process_at_the_same_step(corpus, tmp_path):
    """torchrun passes a Ctrl-C to its processes one by one: a process that stopped alone would leave the others
    waiting forever in the next gradient all-reduce. Here only process 1 (not the one that checkpoints) gets it."""
    import signal
    import torch
    procs = launch_ddp(*TINY, f'--input_file={corpus}', f'--out_dir={tmp_path}', '--mode=spectron',
                       '--max_iters=100000', '--eval_interval=100000', '--gradient_accumulation_steps=2')
    for line in procs[0].stdout:  # training is under way
        if line.startswith('iter 5:'):
            break
    procs[1].send_signal(signal.SIGINT)
    outs = finish(procs, timeout=60)
    assert [p.returncode for p in procs] == [0, 0], outs
    assert 'checkpoint saved' in outs[0][0]
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] >= 6


def test_first_ddp_run_tokenises_once_while_the_other_process_waits(tmp_path):
    """Two processes start on a corpus that has not been tokenised: one writes the files, the other reads them only
    once whole (a 1 MB corpus, so that two processes racing would both tokenise it)."""
    corpus = tmp_path / 'shakespeare.txt'
    corpus.write_text(open(os.path.join(REPO, 'data', 'tinyshakespeare.txt')).read())
    outs = run_ddp(*TINY, f'--input_file={corpus}', f'--out_dir={tmp_path / "out"}', '--max_iters=2',
                   '--eval_interval=2', '--gradient_accumulation_steps=2')
    assert sum(out.count('preparing') for out, _ in outs) == 1, outs
    assert sorted(os.listdir(tmp_path / 'shakespeare_char')) == ['meta.json', 'train.bin', 'val.bin']  # no temporaries
    assert records(tmp_path / 'out', 'eval')[-1]['iter'] == 2


def test_ddp_resume_with_dropout_continues_each_process_rng(corpus, tmp_path):
    """Each process draws its own dropout masks (seed + rank) and the checkpoint keeps every process' RNG state, so
    a resumed two-process run with dropout repeats the uninterrupted one exactly."""
    import torch
    common = [*TINY, f'--input_file={corpus}', '--mode=nfw', '--dropout=0.2', '--gradient_accumulation_steps=2',
              '--eval_interval=6', '--spectra_interval=0']
    run_ddp(*common, f'--out_dir={tmp_path / "straight"}', '--max_iters=12')
    run_ddp(*common, f'--out_dir={tmp_path / "resumed"}', '--max_iters=6')
    rng = torch.load(tmp_path / 'resumed' / 'ckpt.pt', weights_only=True)['rng']
    assert len(rng) == 2 and not torch.equal(rng[0]['cpu'], rng[1]['cpu'])  # the two processes' masks differ
    run_ddp(*common, f'--out_dir={tmp_path / "resumed"}', '--max_iters=12', '--init_from=resume')
    a, b = records(tmp_path / 'straight', 'train'), records(tmp_path / 'resumed', 'train')
    assert [r['iter'] for r in a] == [r['iter'] for r in b] == list(range(12))
    assert [r['loss'] for r in a] == [r['loss'] for r in b]


def test_flops_follow_tsvd_truncation_and_lr_decays_over_max_iters(corpus, tmp_path):
    """FLOP/s is computed from the model's FLOPs at each step, so it falls when TSVD truncates; and with
    lr_decay_iters unset the cosine ends at max_iters, so a short run still decays to min_lr."""
    train(corpus, tmp_path, '--mode=tsvd', '--max_iters=8', '--eval_interval=4', '--rank_warmup=5',
          '--rank_interval=5', '--energy=0.8')
    tokens = 8 * 16  # batch_size × block_size
    evals, steps = records(tmp_path, 'eval'), records(tmp_path, 'train')
    before, after = evals[0]['flops_per_token'], evals[-1]['flops_per_token']
    assert after < before  # truncated at step 5 (in step 4's after_step)
    for r in steps:
        want = before if r['iter'] <= 4 else after
        assert r['flops_per_s'] * r['ms'] / 1e3 == pytest.approx(want * tokens, rel=1e-9), r['iter']
    # training FLOPs so far, credited for the shrink: steps 0-4 at the first rank, 5-7 at the truncated one
    assert [e['train_flops'] for e in evals] == [0, 4 * before * tokens, (5 * before + 3 * after) * tokens]
    # cosine from warmup_iters = 5 to max_iters = 8, down to min_lr / learning_rate = 0.1 (decaying over 2000: ≈ 1)
    assert steps[-1]['lr_factor'] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * (7 - 5) / (8 - 5))) * 0.9)


def test_resuming_a_checkpoint_saved_with_fused_adamw_uses_this_devices_kernel(corpus, tmp_path):
    """A checkpoint carries its AdamW's `fused` flag; resuming loads the state but keeps the kernel this device
    chose (fused on CUDA, the plain loop on CPU), so a GPU checkpoint resumed on CPU repeats a CPU run exactly."""
    import torch
    common = ['--mode=nfw', '--eval_interval=5']
    train(corpus, tmp_path / 'straight', *common, '--max_iters=10')
    train(corpus, tmp_path / 'resumed', *common, '--max_iters=5')
    path = tmp_path / 'resumed' / 'ckpt.pt'
    ckpt = torch.load(path, weights_only=True)
    for state in ckpt['optimizers']:  # as a CUDA run would have saved it
        for group in state['param_groups']:
            group['fused'] = True
    torch.save(ckpt, path)
    train(corpus, tmp_path / 'resumed', *common, '--max_iters=10', '--init_from=resume')
    groups = torch.load(path, weights_only=True)['optimizers'][0]['param_groups']
    assert [g['fused'] for g in groups] == [False] * len(groups)
    a, b = records(tmp_path / 'straight', 'train'), records(tmp_path / 'resumed', 'train')
    assert [r['loss'] for r in a] == [r['loss'] for r in b]


@pytest.mark.parametrize('mode', [m for m in MODES if lowrank.MODES[m].bounded or is_tsvd(m)])
def test_bf16_autocast_on_cpu_trains_with_fp32_math_and_the_bound(corpus, tmp_path, mode):
    """The GPU default (bf16 autocast) run on the CPU: the loss falls, parameters and optimizer state stay float32,
    TSVD's factors stay orthonormal to fp32 precision and Spectron's step stays within its bound."""
    import torch
    train(corpus, tmp_path, f'--mode={mode}', '--dtype=bfloat16', '--max_iters=50', '--eval_interval=50',
          '--learning_rate=3e-3', '--rank_warmup=20', '--rank_interval=10', '--energy=0.8')
    evals = records(tmp_path, 'eval')
    assert evals[-1]['val_loss'] < 0.8 * evals[0]['val_loss'] and records(tmp_path, 'config')[0]['dtype'] == 'bfloat16'
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)
    state = [v for opt in ckpt['optimizers'] for s in opt['state'].values() for k, v in s.items() if k != 'step']
    assert all(v.dtype == torch.float32 for v in [*ckpt['model'].values(), *state] if v.is_floating_point())
    if lowrank.MODES[mode].bounded:  # the code guarantees < 1.3 η, η the step size at the schedule's peak
        eta = records(tmp_path, 'config')[0][lowrank.MODES[mode].step_size]
        for r in records(tmp_path, 'train'):
            assert r['max_dW'] <= 1.3 * eta * r['lr_factor'], r
    else:
        assert max(evals[-1]['ranks'].values()) < 8  # truncated
        for name, U in ckpt['model'].items():
            if name.endswith('.U') or name.endswith('.V'):
                assert torch.allclose(U.T @ U, torch.eye(U.shape[1]), atol=1e-5), name


def test_a_live_run_keeps_its_out_dir_and_a_killed_one_does_not(corpus, tmp_path):
    """A second run into the out_dir of a live run is refused (one line, exit 2, the owner's pid); after kill -9 of
    the live run, a new run starts without any cleanup."""
    import signal
    live = start(*TINY, f'--input_file={corpus}', f'--out_dir={tmp_path}', '--max_iters=100000',
                 '--eval_interval=100000')
    try:
        for line in live.stdout:
            if line.startswith('iter 1:'):
                break
        p = train(corpus, tmp_path, '--max_iters=2', check=False)
        assert p.returncode == 2 and f'in use by a running train.py (pid {live.pid})' in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        p = train(corpus, tmp_path, '--max_iters=2', '--init_from=resume', check=False)  # not resume either
        assert p.returncode == 2
    finally:
        live.send_signal(signal.SIGKILL)
        live.communicate(timeout=60)
    train(corpus, tmp_path, '--max_iters=2', '--eval_interval=2')
    assert records(tmp_path, 'eval')[-1]['iter'] == 2


def test_a_fresh_run_refuses_to_replace_a_checkpoint_unless_told(corpus, tmp_path):
    import torch
    train(corpus, tmp_path, '--max_iters=4', '--eval_interval=2', '--keep_last=1')
    p = train(corpus, tmp_path, '--max_iters=2', check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert all(way in p.stderr for way in ('--init_from=resume', '--out_dir', '--overwrite=True'))
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == 4  # untouched
    train(corpus, tmp_path, '--max_iters=2', '--eval_interval=2', '--overwrite=True')
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == 2
    assert not os.path.exists(tmp_path / 'ckpt.1.pt')  # the old run's older checkpoint went with it
    assert len(records(tmp_path, 'config')) == 1


def test_tokenised_own_corpus_is_ignored_by_git(tmp_path):
    """A user's corpus in the repo is tokenised beside it, into NAME_char/ or NAME_gpt2/, which git ignores."""
    import shutil
    if not shutil.which('git') or not os.path.exists(os.path.join(REPO, '.git')):
        pytest.skip('not a git checkout')
    for path in ('my_corpus_char/train.bin', 'my_corpus_gpt2/meta.json', 'notes/essays_char/val.bin'):
        p = subprocess.run(['git', 'check-ignore', '-q', path], cwd=REPO)
        assert p.returncode == 0, f'{path} is not ignored'


@pytest.mark.parametrize('device,message', [('cuda:1', 'not UTF-8'), ('cuda:2', 'this machine has 2 CUDA GPU(s)'),
                                            ('cuda:x', 'this machine has 2 CUDA GPU(s)')])
def test_cuda_device_and_dtype_choice_on_an_emulated_two_gpu_machine(tmp_path, capsys, monkeypatch, device, message):
    """Without a GPU, torch.cuda stands in for two GPUs that only emulate bf16 (V100, T4): dtype=auto must pick
    float32 (no bf16 autocast), and --device=cuda:1 must become the current device (what RNG state, synchronize and
    SDPA use). A corpus that is not UTF-8 stops the run right after those choices, before any CUDA work."""
    import runpy
    import torch
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda d: calls.append(('set_device', d)))
    monkeypatch.setattr(torch.amp, 'autocast', lambda *a, **k: calls.append(('autocast', k.get('dtype'))))
    corpus = tmp_path / 'latin1.txt'
    corpus.write_bytes('caf\xe9 '.encode('latin-1') * 100)
    monkeypatch.setattr(sys, 'argv', ['train.py', f'--input_file={corpus}', f'--out_dir={tmp_path}',
                                      f'--device={device}'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(os.path.join(REPO, 'train.py'), run_name='__main__')
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert calls == ([('set_device', 'cuda:1')] if device == 'cuda:1' else [])


# -----------------------------------------------------------------------------
# faults and newcomers' surprises (issue 23, items 4 and 5)

def test_a_full_disk_at_a_checkpoint_is_one_line_keeps_the_last_one_and_no_tmp(corpus, tmp_path):
    """A file-size limit smaller than a checkpoint (EFBIG, as a full disk gives ENOSPC: Python ignores SIGXFSZ, so the
    write fails with an OSError) hits the resumed run's first checkpoint: one line naming the file and the reason,
    exit 1, no temporary file left, and the checkpoint before it still loads."""
    import resource
    import torch
    train(corpus, tmp_path, '--mode=nfw', '--max_iters=2', '--eval_interval=2', '--spectra_interval=0')
    limit = os.path.getsize(tmp_path / 'ckpt.pt') // 2  # the log (a few kB) fits, a checkpoint does not
    p = subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), *TINY, f'--input_file={corpus}',
                        f'--out_dir={tmp_path}', '--mode=nfw', '--max_iters=4', '--eval_interval=2',
                        '--spectra_interval=0', '--init_from=resume'], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS='1'),
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert p.returncode == 1, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and 'Traceback' not in p.stderr, p.stderr
    assert f'{tmp_path / "ckpt.pt"}' in p.stderr and 'File too large' in p.stderr, p.stderr
    assert not list(tmp_path.glob('*.tmp'))
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == 2


def test_atomic_save_on_a_full_disk_removes_its_tmp_and_keeps_the_old_file(tmp_path, capsys):
    import errno
    import outdir
    path = tmp_path / 'ckpt.pt'
    path.write_bytes(b'the last good one')

    def full_disk(obj, f):
        f.write(b'half of it')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(SystemExit) as exit_:
        outdir.atomic_save(None, str(path), full_disk)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and len(err.strip().splitlines()) == 1
    assert str(path) in err and 'No space left on device' in err
    assert path.read_bytes() == b'the last good one' and os.listdir(tmp_path) == ['ckpt.pt']


@pytest.fixture(scope='module')
def sample_run(corpus, tmp_path_factory):
    """A one-step checkpoint to sample from."""
    out = tmp_path_factory.mktemp('sample_run')
    train(corpus, out, '--mode=nfw', '--max_iters=1', '--eval_interval=1')
    return out


BAD_SAMPLE_ARGS = [
    (['--out_dir={empty}'], 'no checkpoint at'),
    (['--out_dir={garbage}'], 'not a readable nanoLowRank checkpoint'),
    (['--start=FILE:/nonexistent.txt'], 'cannot read the prompt file /nonexistent.txt'),
    (['--start=FILE:{empty}'], 'cannot read the prompt file'),  # a directory
    (['--start=FILE:{latin1}'], 'is not UTF-8'),
    (['--start=héllo~'], "'~é'"),
    (['--start='], 'the prompt is empty'),
    (['--num_samples=0'], 'num_samples must be >= 1'),
    (['--num_samples=two'], 'num_samples must be int'),
    (['--max_new_tokens=-1'], 'max_new_tokens must be >= 0'),
    (['--temperature=0'], 'temperature must be > 0'),
    (['--top_k=0'], 'top_k must be >= 1'),
    (['--device=tpu'], 'device must be'),
    (['--device=cuda:7'], 'CUDA'),
    (['--tempreature=1'], "did you mean 'temperature'"),
]


@pytest.mark.parametrize('args,message', BAD_SAMPLE_ARGS, ids=[' '.join(a) for a, _ in BAD_SAMPLE_ARGS])
def test_bad_sample_input_is_one_line_and_exit_2(sample_run, tmp_path, args, message, capsys):
    import sample
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'garbage').mkdir()
    (tmp_path / 'garbage' / 'ckpt.pt').write_bytes(b'not a checkpoint')
    (tmp_path / 'latin1.txt').write_bytes('caf\xe9'.encode('latin-1'))
    paths = dict(empty=tmp_path / 'empty', garbage=tmp_path / 'garbage', latin1=tmp_path / 'latin1.txt')
    with pytest.raises(SystemExit) as exit_:
        sample.main([f'--out_dir={sample_run}', '--device=cpu', *(a.format(**paths) for a in args)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_spectra_always_record_the_final_step_once(corpus, tmp_path):
    import numpy as np
    for max_iters, want in ((12, [0, 5, 10, 12]), (10, [0, 5, 10])):
        train(corpus, tmp_path / str(max_iters), '--mode=nfw', f'--max_iters={max_iters}', '--eval_interval=100',
              '--spectra_interval=5')
        with np.load(tmp_path / str(max_iters) / 'spectra.npz') as z:
            assert list(z['steps']) == want


def test_resuming_a_finished_run_says_how_to_continue_and_rewrites_nothing(corpus, tmp_path):
    common = ['--mode=nfw', '--max_iters=2', '--eval_interval=2']
    train(corpus, tmp_path, *common)
    files = {name: (tmp_path / name).read_bytes() for name in ('ckpt.pt', 'log.jsonl', 'spectra.npz')}
    p = train(corpus, tmp_path, *common, '--init_from=resume')
    assert 'already at max_iters=2' in p.stdout and '--max_iters=' in p.stdout and 'LR' in p.stdout, p.stdout
    assert 'train loss' not in p.stdout and 'done' not in p.stdout
    assert files == {name: (tmp_path / name).read_bytes() for name in files}
    # a run killed between its last checkpoint and its summary gets the summary, so experiments/lib.sh skips it
    log = tmp_path / 'log.jsonl'
    log.write_text(''.join(line for line in log.read_text().splitlines(True) if '"summary"' not in line))
    train(corpus, tmp_path, *common, '--init_from=resume')
    assert [r['iter'] for r in records(tmp_path, 'summary')] == [2] and len(records(tmp_path, 'config')) == 1


def test_training_lines_name_the_step_size_and_short_runs_warn(corpus, tmp_path):
    """The training line shows the mode's step size under its config key (scheduled); ranks at evals whenever a mode
    changes them; a warning when the run ends inside its warmup or before TSVD's first rank choice."""
    p = train(corpus, tmp_path / 'spectron', '--mode=spectron', '--max_iters=3', '--eval_interval=3')
    config, steps = records(tmp_path / 'spectron', 'config')[0], records(tmp_path / 'spectron', 'train')
    lines = [line for line in p.stdout.splitlines() if line.startswith('iter ')]
    assert all(f"spectron_lr {r['lr_factor'] * config['spectron_lr']:.2e}," in line for r, line in zip(steps, lines))
    assert not any(', lr ' in line for line in lines)
    assert 'ends inside its LR warmup' in p.stdout + p.stderr and 'ranks' not in p.stdout
    p = train(corpus, tmp_path / 'tsvd', '--mode=tsvd', '--max_iters=6', '--eval_interval=6', '--rank_warmup=4',
              '--rank_interval=7')  # warmup done at 5; rank choices at steps 7, 14, ...: none by 6
    assert 'learning_rate ' in p.stdout and 'ranks 8-8' in p.stdout
    assert 'LR warmup' not in p.stdout + p.stderr and 'first rank choice' in p.stdout + p.stderr
    p = train(corpus, tmp_path / 'tsvd7', '--mode=tsvd', '--max_iters=7', '--eval_interval=7', '--rank_warmup=4',
              '--rank_interval=7', '--energy=0.5')
    assert 'first rank choice' not in p.stdout + p.stderr


def test_help_gives_each_keys_meaning_and_each_modes_step_size():
    import lowrank
    help_text = run('train.py', '--help').stdout
    import re
    with open(os.path.join(REPO, 'train.py')) as f:  # every `key = value  # meaning` line of the defaults
        defaults = f.read().split('# default config')[1].split('DEFAULTS = ')[0]
    meanings = dict(m.groups() for m in re.finditer(r'^([a-z_0-9]+) = .*?  # (.*)$', defaults, re.M))
    assert len(meanings) > 40
    lines = help_text.splitlines()
    for key, meaning in meanings.items():
        assert any(line.strip().startswith(f'--{key}=') and line.endswith(meaning) for line in lines), key
    for name, m in lowrank.MODES.items():
        line = next(line for line in lines if line.strip().startswith(f'{name}:'))
        assert f'{m.step_size}=' in line and all(f"{k}={v:g}" in line for k, v in m.defaults.items()), line
    assert 'spectron learning_rate' not in help_text


def test_help_into_a_closed_pipe_exits_quietly():
    """`train.py --help | head`: a reader that closes the pipe before the help is all written is no error (exit 0,
    nothing on stderr; it was a BrokenPipeError traceback and exit 1)."""
    p = start('--help')
    p.stdout.close()  # before train.py, still importing torch, writes its first line
    stderr = p.stderr.read()
    assert p.wait(timeout=300) == 0 and stderr == '', stderr


# a folder corpus (the complete works): val = whole held-out works, never windows cut from the training text

def works_folder(path, works, held_out):
    """A folder corpus of works {name: text}, holding out the names in held_out (and a README, which is no work)."""
    path.mkdir()
    for name, text in works.items():
        (path / name).write_text(text)
    (path / 'README.md').write_text('not a work\n')
    (path / prepare_data.VAL_FILES).write_text('\n'.join(held_out) + '\n')
    return str(path)


def decoded(data_dir, split):
    import numpy as np
    codec = prepare_data.Codec(prepare_data.load_meta(data_dir))
    return codec.decode(np.fromfile(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16).tolist())


def test_a_folder_corpus_holds_out_whole_works_and_is_remade_when_they_change(tmp_path, capsys, monkeypatch):
    works = {f'{w}.txt': f"THE {w.upper()}\n" + ''.join(f"{w}{w}: line {i} of {w}.\n" for i in range(60))
             for w in 'abcde'}
    folder = works_folder(tmp_path / 'works', works, ['d.txt', 'b.txt'])
    out = prepare_data.ensure_prepared(folder + '/', 'char', min_tokens=17)  # a trailing slash names the same corpus
    assert out == str(tmp_path / 'works_char')
    join = lambda names: prepare_data.SEPARATOR.join(works[n] for n in names)
    train_text, val_text = decoded(out, 'train'), decoded(out, 'val')
    assert train_text == join(['a.txt', 'c.txt', 'e.txt'])  # every training window lies in training works
    assert val_text == join(['b.txt', 'd.txt'])
    assert 'bb:' not in train_text and 'dd:' not in train_text and 'not a work' not in train_text + val_text
    # a new held-out list, or an edited work, is a new corpus: tokenised again
    (tmp_path / 'works' / prepare_data.VAL_FILES).write_text('e.txt\n')
    assert decoded(prepare_data.ensure_prepared(folder, 'char', 17), 'val') == works['e.txt']
    (tmp_path / 'works' / 'e.txt').write_text(works['e.txt'] + 'an epilogue.')
    assert decoded(prepare_data.ensure_prepared(folder, 'char', 17), 'val').endswith('an epilogue.')
    train(folder, tmp_path / 'run', '--max_iters=2', '--eval_interval=2')  # train.py takes the folder as input_file
    assert records(tmp_path / 'run', 'eval')[-1]['iter'] == 2
    for i, (held_out, message) in enumerate(((['a.txt', 'z.txt'], 'must name some, not all, of the *.txt files in'),
                                             (['z.txt'], 'not there: z.txt'), (list(works), 'must name some, not all'),
                                             (None, 'has no val_files file naming its held-out works'))):
        folder = works_folder(tmp_path / f'bad{i}', works, held_out or [])
        if held_out is None:
            os.remove(os.path.join(folder, prepare_data.VAL_FILES))
        refused(capsys, monkeypatch, tmp_path / f'bad_run{i}', message, *TINY, f'--input_file={folder}')


def test_the_complete_works_hold_out_four_whole_plays_a_tenth_of_the_corpus(tmp_path):
    """The shipped folder, prepared as train.py would: train is the 38 other works, val the 4 held-out plays, no
    200-character stretch of which is anywhere in train."""
    import shutil
    src = os.path.join(REPO, 'data', 'shakespeare_complete')
    works = sorted(n for n in os.listdir(src) if n.endswith('.txt'))
    held_out = open(os.path.join(src, prepare_data.VAL_FILES)).read().split()
    assert len(works) == 42 and held_out == ['hamlet.txt', 'macbeth.txt', 'midsummer_nights_dream.txt',
                                             'twelfth_night.txt']
    readme = open(os.path.join(src, 'README.md')).read()
    assert 'CC-BY 2.5' in readme and 'Project Gutenberg' in readme and all(
        w in readme for w in ('Hamlet', 'Macbeth', "A Midsummer Night's Dream", 'Twelfth Night'))
    text = {n: open(os.path.join(src, n)).read() for n in works}
    assert sum(map(len, text.values())) == 5_057_198 and len(set(''.join(text.values()))) == 84
    out = prepare_data.prepare(shutil.copytree(src, tmp_path / 'shakespeare_complete'), 'char')
    train_text, val_text = decoded(out, 'train'), decoded(out, 'val')
    assert train_text == prepare_data.SEPARATOR.join(text[n] for n in works if n not in held_out)
    assert val_text == prepare_data.SEPARATOR.join(text[n] for n in held_out)
    assert 0.09 < len(val_text) / (len(train_text) + len(val_text)) < 0.11
    for n in held_out:
        play = text[n]
        assert all(play[i:i + 200] not in train_text for i in range(0, len(play) - 200, len(play) // 20)), n


# -----------------------------------------------------------------------------
# warmup-stable-decay, and cooldown branches from a long run's stable phase

@pytest.mark.parametrize('mode', ['dense', 'spectron', 'muon'])  # AdamW alone, Spectron + AdamW, Muon + AdamW
def test_wsd_scales_every_optimizer_group_by_its_formula(corpus, tmp_path, mode):
    bases = {'dense': [2e-3] * 2, 'spectron': [0.04] + [2e-3] * 2, 'muon': [0.03] + [2e-3] * 2}[mode]
    for shape in ('linear', 'sqrt'):
        train(corpus, tmp_path / shape, f'--mode={mode}', '--lr_schedule=wsd', f'--decay_shape={shape}',
              '--decay_frac=0.3', '--max_iters=20', '--eval_interval=20', '--learning_rate=2e-3', '--min_lr=5e-4',
              '--spectron_lr=0.04', '--muon_lr=0.03')

        def factor(it):  # warmup_iters 5 (TINY); the decay: the last round(0.3 × 20) = 6 steps, to 5e-4 / 2e-3
            if it < 5:
                return (it + 1) / 6
            progress = max(0, it - 14) / 6
            return 1 - 0.75 * (progress if shape == 'linear' else math.sqrt(progress))
        steps = records(tmp_path / shape, 'train')
        assert [r['iter'] for r in steps] == list(range(20))
        for r in steps:
            assert r['lr_factor'] == pytest.approx(factor(r['iter']), rel=1e-12, abs=1e-15), (shape, r['iter'])
            assert r['lr'] == pytest.approx([b * factor(r['iter']) for b in bases], rel=1e-12), (shape, r['iter'])
        assert [r['lr_factor'] for r in steps[5:15]] == [1.0] * 10 and steps[-1]['lr_factor'] < 0.5


WSD = ['--lr_schedule=wsd', '--eval_interval=5', '--dropout=0.1', '--rank_warmup=5', '--rank_interval=5',
       '--energy=0.9', '--min_rank=2']


@pytest.mark.parametrize('mode', MODES + ['spectron --decay_shape=sqrt'])
def test_a_cooldown_branch_is_the_straight_wsd_run_to_the_digit(corpus, tmp_path, mode):
    """A 40-step wsd run keeps its step-10 checkpoint; a branch from it to 20 steps decays from step 16, as a
    straight 20-step run does, and logs the same losses, LRs, gradient norms and spectra exactly (==)."""
    import numpy as np
    common = [*f'--mode={mode}'.split(), *WSD]
    train(corpus, tmp_path / 'straight', *common, '--max_iters=20')
    train(corpus, tmp_path / 'long', *common, '--max_iters=40', '--save_at=10,30')
    assert os.path.isfile(tmp_path / 'long' / 'ckpt_30.pt')
    # the branch names only what is its own: the rest (model, data, optimizers, dropout's RNG) is the checkpoint's
    run('train.py', '--init_from=branch', f'--branch_from={tmp_path / "long" / "ckpt_10.pt"}', '--max_iters=20',
        f'--out_dir={tmp_path / "branch"}', '--device=cpu')
    for kind, keys in (('train', ('iter', 'loss', 'lr_factor', 'lr', 'grad_norm', 'max_dW')),
                       ('eval', ('iter', 'train_loss', 'val_loss', 'ranks', 'params', 'train_flops'))):
        a, b = ([[r[k] for k in keys] for r in records(tmp_path / d, kind)] for d in ('straight', 'branch'))
        assert a == b, kind
    assert [r['iter'] for r in records(tmp_path / 'branch', 'eval')] == [0, 5, 10, 15, 20]
    assert records(tmp_path / 'branch', 'train')[-1]['lr_factor'] < records(tmp_path / 'long', 'train')[19]['lr_factor']
    with np.load(tmp_path / 'straight' / 'spectra.npz') as a, np.load(tmp_path / 'branch' / 'spectra.npz') as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a.files)


@pytest.fixture(scope='module')
def wsd_runs(corpus, tmp_path_factory):
    """A 40-step wsd run (decay from step 32) that kept its step-10 checkpoint, and a 10-step cosine run."""
    root = tmp_path_factory.mktemp('wsd')
    train(corpus, root / 'long', '--mode=nfw', '--lr_schedule=wsd', '--max_iters=40', '--eval_interval=20',
          '--save_at=10')
    train(corpus, root / 'cosine', '--mode=nfw', '--max_iters=10', '--eval_interval=10')
    return root


def test_bad_schedules_and_branches_are_one_line_and_exit_2(corpus, tmp_path, wsd_runs, capsys, monkeypatch):
    import shutil
    stable, decayed = wsd_runs / 'long' / 'ckpt_10.pt', wsd_runs / 'long' / 'ckpt.pt'
    (tmp_path / 'resume').mkdir()
    shutil.copy(decayed, tmp_path / 'resume' / 'ckpt.pt')  # a resume of the long run, without its log
    branch = ['--init_from=branch', '--device=cpu']
    for args, message in (
            (['--lr_schedule=step'], "unknown lr_schedule 'step': cosine or wsd"),
            (['--decay_frac=0'], 'decay_frac must be in (0, 1], got 0.0'),
            (['--decay_frac=1.5'], 'decay_frac must be in (0, 1], got 1.5'),
            (['--decay_shape=cubic'], "unknown decay_shape 'cubic': linear or sqrt"),
            (['--lr_schedule=wsd', '--lr_decay_iters=100'], "lr_decay_iters is the cosine's"),
            (['--lr_schedule=wsd', '--max_iters=5'], 'the decay would start at step 4, inside the 5-step warmup'),
            (['--save_at=100'], 'save_at keeps branch points of a wsd run'),
            (['--lr_schedule=wsd', '--save_at=1601'], 'save_at step 1601 is not in the stable phase (steps 1 to 1600)'),
            (['--lr_schedule=wsd', '--save_at=16OO'], 'save_at must be steps separated by commas'),
            (branch, 'init_from=branch needs --branch_from'),
            ([*branch, '--branch_from=/nonexistent/ckpt_10.pt'], 'no checkpoint at /nonexistent/ckpt_10.pt'),
            ([*branch, f'--branch_from={wsd_runs / "cosine" / "ckpt.pt"}'], 'from a lr_schedule=cosine run'),
            ([*branch, f'--branch_from={stable}', '--max_iters=8'], "at step 10, past the branch's end max_iters=8"),
            ([*branch, f'--branch_from={stable}', '--max_iters=11'], 'starts the decay at step 9, before'),
            ([*branch, f'--branch_from={decayed}', '--max_iters=50'], "at step 40, in its run's decay (from step 32)"),
            ([*branch, f'--branch_from={stable}', '--max_iters=20', '--batch_size=4'],
             'has batch_size=8; cannot branch from it with batch_size=4'),
            (['--init_from=resume', '--lr_schedule=cosine'], "has lr_schedule='wsd'; cannot resume it with"),
            (['--init_from=resume', '--decay_frac=0.5'], 'has decay_frac=0.2; cannot resume it with decay_frac=0.5'),
            (['--init_from=resume', '--decay_shape=sqrt'], "has decay_shape='linear'; cannot resume"),
            (['--init_from=resume', '--max_iters=60'], "at step 40, in its run's decay (from step 32)")):
        out = tmp_path / 'resume' if '--init_from=resume' in args else tmp_path / 'out'
        refused(capsys, monkeypatch, out, message, *TINY, f'--input_file={corpus}', '--mode=nfw', *args)
