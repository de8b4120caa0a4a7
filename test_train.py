"""train.py, sample.py and prepare_data.py end to end, as a user runs them: in this process where a process adds
nothing (conftest.in_process: no torch import per run), in subprocesses for signals, kill -9, DDP, a full disk and a
closed pipe, and for one command-line error per script."""
import errno
import fcntl
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tiktoken
import torch

import configurator
import lowrank
import model
import prepare_data
from conftest import ENV, REPO, assert_refused, in_process, records, train_in_process

TINY = ['--n_layer=1', '--n_head=2', '--n_embd=32', '--block_size=16', '--batch_size=8', '--eval_iters=2',
        '--log_interval=1', '--spectra_interval=0', '--device=cpu', '--warmup_iters=5']
MODES = list(lowrank.MODES)  # every mode, one added to the registry too


def layers(mode):
    """the classes a mode builds its linear layers from (one, or one per part of a block)"""
    layer = lowrank.MODES[mode].layer
    return set(layer.values()) if isinstance(layer, dict) else {layer}


FACTORIZED = [m for m in MODES if layers(m) != {lowrank.DenseLinear}]
SVD_SPLIT = [m for m in FACTORIZED  # the modes whose layers an SVD init fills (CoLA's, not linear, refuses)
             if all(issubclass(c, (lowrank.FactorizedLinear, lowrank.TSVDLinear)) for c in layers(m))]
SPECTRON_ABLATIONS = ['spectron --spectron_ortho=False', 'spectron --spectron_renorm=False',
                      'spectron --spectron_ortho=False --spectron_renorm=False']  # the paper's ablation's variants
TSVD = dict(rank=8, rank_warmup=5, rank_interval=5, energy=0.9, min_rank=2)  # truncates within a few steps
R = '--rank=8'  # a rank that fits TINY's n_embd 32 (the default, 64, does not)


def is_tsvd(mode):
    return lowrank.TSVDLinear in layers(mode)


def own(mode, **values):
    """--mode=NAME (and the flags after its name) and those of values that the mode reads: a flag it would ignore is
    refused, so a table of runs over modes passes each only its own."""
    name, *extra = mode.split()
    return [f'--mode={name}', *extra, *(f'--{k}={v}' for k, v in values.items() if k in lowrank.MODES[name].keys)]


def train(corpus, out_dir, *args, check=True):
    """A TINY run in this process: (exit status, stdout, stderr); check: it must exit 0."""
    code, out, err = train_in_process(*TINY, f'--input_file={corpus}', f'--out_dir={out_dir}', *args)
    assert not check or code == 0, f'exit {code}\n{out}\n{err}'
    return code, out, err


def continue_run(out_dir, *args):
    """A resume (or, with --init_from=branch, a branch) that names nothing but what is its own: everything else
    comes from the checkpoint."""
    code, out, err = train_in_process(f'--out_dir={out_dir}', '--device=cpu', *args)
    assert code == 0, f'exit {code}\n{out}\n{err}'
    return out


def files(folder):
    """Every file in folder with its bytes: what a refused run must leave as it was."""
    if not os.path.isdir(folder):
        return None
    paths = {n: os.path.join(folder, n) for n in sorted(os.listdir(folder))}
    return {n: open(p, 'rb').read() for n, p in paths.items() if os.path.isfile(p)}


def ctrl_c_at_step(monkeypatch, n, sig=signal.SIGINT):
    """Deliver sig (Ctrl-C) to this process while the n-th training step of the coming run clips its gradients: the
    in-process run then stops as a signalled process does."""
    calls, clip = [], torch.nn.utils.clip_grad_norm_

    def clip_and_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            signal.raise_signal(sig)
        return clip(*args, **kwargs)
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', clip_and_signal)


def start(*args, **env):
    """train.py in the background (text pipes, unbuffered, one thread; env added), for tests that signal or kill it."""
    return subprocess.Popen([sys.executable, os.path.join(REPO, 'train.py'), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(ENV, **env))


def launch_ddp(*args, n=2):
    """n train.py processes of one gloo DDP job, with the environment torchrun gives them, started directly so that a
    test can signal each one. Returns the Popen objects."""
    while True:  # a free port below the ephemeral range (whose ports the OS hands to any new socket meanwhile)
        port = random.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
                break
            except OSError:
                continue
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
    assert [p.returncode for p in procs] == [0] * len(procs), [err for _, err in outs]
    return outs


def wait_for(proc, prefix):
    """Read proc's stdout until a line starting with prefix (training is under way); returns what it read."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return ''.join(lines)
    raise AssertionError(f"no line {prefix!r}: {''.join(lines)}{proc.communicate()}")


@pytest.fixture(scope='module')
def runs(corpus, tmp_path_factory):
    """Finished runs that tests read and continue from, never change: a dense run with biases (which an SVD init must
    take), an nfw run, a 40-step wsd run (decay from step 32) that kept its step-10 checkpoint, a 10-step cosine run."""
    root = tmp_path_factory.mktemp('runs')
    for name, args in (('dense', '--mode=dense --bias=True --max_iters=4 --eval_interval=4'),
                       ('nfw', '--mode=nfw --rank=8 --max_iters=4 --eval_interval=2'),
                       ('long', '--mode=nfw --rank=8 --lr_schedule=wsd --max_iters=40 --eval_interval=20 --save_at=10'),
                       ('cosine', '--mode=nfw --rank=8 --max_iters=10 --eval_interval=10')):
        train(corpus, root / name, *args.split())
    return root


# -----------------------------------------------------------------------------
# training: every mode learns, and a run stopped anywhere continues exactly

@pytest.mark.parametrize('mode', MODES)
def test_fifty_steps_lower_the_loss(corpus, tmp_path, mode):
    train(corpus, tmp_path, *own(mode, rank=8, spectron_lr=0.1, rank_warmup=20, rank_interval=10, energy=0.8),
          '--max_iters=50', '--eval_interval=50', '--learning_rate=3e-3', '--spectra_interval=25')
    evals = records(tmp_path, 'eval')
    assert [e['iter'] for e in evals] == [0, 50]
    assert evals[-1]['val_loss'] < 0.8 * evals[0]['val_loss']
    assert os.path.isfile(tmp_path / 'ckpt.pt') and os.path.isfile(tmp_path / 'spectra.npz')
    steps = records(tmp_path, 'train')
    assert [r['iter'] for r in steps] == list(range(50))
    assert set(steps[0]) == {'kind', 'iter', 'loss', 'lr_factor', 'ms', 'max_dW', 'grad_norm', 'skipped', 'lr'}
    if is_tsvd(mode):  # truncation really happened, and the parameter count fell with it
        assert max(evals[-1]['ranks'].values()) < 8 and evals[-1]['params'] < evals[0]['params']


@pytest.mark.parametrize('mode', [m for m in MODES if lowrank.MODES[m].bounded or is_tsvd(m)])
def test_bf16_autocast_on_cpu_trains_with_fp32_math_and_the_bound(corpus, tmp_path, mode):
    """The GPU default (bf16 autocast) run on the CPU: the loss falls, parameters and optimizer state stay float32,
    TSVD's factors stay orthonormal to fp32 precision and Spectron's step stays within its bound."""
    train(corpus, tmp_path, *own(mode, rank=8, rank_warmup=20, rank_interval=10, energy=0.8), '--dtype=bfloat16',
          '--max_iters=50', '--eval_interval=50', '--learning_rate=3e-3')
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


@pytest.mark.parametrize('mode', MODES + SPECTRON_ABLATIONS)
def test_resume_continues_the_same_loss_curve(corpus, tmp_path, mode):
    """A run stopped at step 10 and resumed (naming nothing but max_iters: the rest is the checkpoint's) logs what the
    straight run logs, dropout's masks and TSVD's truncations included."""
    common = [*own(mode, **TSVD), '--eval_interval=10', '--lr_decay_iters=20', '--dropout=0.1']
    train(corpus, tmp_path / 'straight', *common, '--max_iters=20')
    train(corpus, tmp_path / 'resumed', *common, '--max_iters=10')
    out = continue_run(tmp_path / 'resumed', '--init_from=resume', '--max_iters=20')
    assert f"continuing {tmp_path / 'resumed' / 'ckpt.pt'} from step 10" in out
    a, b = records(tmp_path / 'straight', 'train'), records(tmp_path / 'resumed', 'train')
    assert [r['iter'] for r in a] == [r['iter'] for r in b] == list(range(20))
    for ra, rb in zip(a, b):
        assert abs(ra['loss'] - rb['loss']) < 1e-5, (ra['iter'], ra['loss'], rb['loss'])
    ea, eb = records(tmp_path / 'straight', 'eval')[-1], records(tmp_path / 'resumed', 'eval')[-1]
    assert abs(ea['val_loss'] - eb['val_loss']) < 1e-5 and ea['ranks'] == eb['ranks']
    assert ea['train_flops'] == eb['train_flops'] > 0  # the count survives the resume
    mine = ('out_dir', 'init_from', 'iter')  # the config the resume logs is the checkpoint's, but for these
    a, b = records(tmp_path / 'straight', 'config')[0], records(tmp_path / 'resumed', 'config')[-1]
    assert {k: v for k, v in a.items() if k not in mine} == {k: v for k, v in b.items() if k not in mine}


def test_ctrl_c_finishes_the_step_checkpoints_and_resumes(corpus, tmp_path):
    p = start(*TINY, f'--input_file={corpus}', f'--out_dir={tmp_path}', '--mode=spectron', '--rank=8',
              '--max_iters=100000', '--eval_interval=100000')
    wait_for(p, 'iter 5:')
    time.sleep(1)  # trains on meanwhile: the resumed run's "done" line must count this second too
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert 'checkpoint saved' in out and '--init_from=resume' in out
    stopped_at = torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num']
    assert stopped_at >= 6
    assert records(tmp_path, 'summary') == []  # only a finished run has one (experiments/lib.sh skips those)
    out = continue_run(tmp_path, '--init_from=resume', f'--max_iters={stopped_at + 3}')
    summary = records(tmp_path, 'summary')
    assert [r['iter'] for r in summary] == [stopped_at + 3] and summary[0]['seconds'] > 1
    assert re.search(rf"done at step {stopped_at + 3}: \d+ s \(\d+ s from step {stopped_at}\)", out), out
    assert [r['iter'] for r in records(tmp_path, 'train')][-4:] == [stopped_at - 1, stopped_at, stopped_at + 1,
                                                                     stopped_at + 2]


def test_sigkill_at_random_moments_then_resume_reaches_the_same_loss(corpus, tmp_path):
    """Kill -9 the run at random moments (checkpoint writes included: one every 2 steps), resume each time; the
    last checkpoint must load, the lock must go with the killed process, and the final loss must equal an
    uninterrupted run's."""
    common = [*TINY, f'--input_file={corpus}', '--mode=spectron', '--rank=8', '--max_iters=40', '--eval_interval=2',
              '--spectra_interval=2']
    out, rng, kills = tmp_path / 'killed', random.Random(0), 0
    for attempt in range(4):
        resume = ['--init_from=resume'] if (out / 'ckpt.pt').exists() else []
        p = start(*common, f'--out_dir={out}', *resume)
        if attempt < 3:
            wait_for(p, 'iter')  # training is under way: now kill it at a random moment
            time.sleep(rng.uniform(0, 0.03))  # short: the kills must land before the 40 steps are done
            p.send_signal(signal.SIGKILL)
        else:  # meanwhile, the uninterrupted run, in this process
            assert train_in_process(*common, f'--out_dir={tmp_path / "straight"}')[0] == 0
        _, err = p.communicate(timeout=120)
        assert p.returncode in (0, -signal.SIGKILL), err
        kills += p.returncode == -signal.SIGKILL  # a kill that lands after a clean exit does not count
        if (out / 'ckpt.pt').exists():  # whatever the moment of the kill, the checkpoint is whole
            torch.load(out / 'ckpt.pt', weights_only=True)
    assert p.returncode == 0 and kills == 3
    a, b = records(tmp_path / 'straight', 'eval')[-1], records(out, 'eval')[-1]
    assert a['iter'] == b['iter'] == 40 and abs(a['val_loss'] - b['val_loss']) < 1e-5
    assert not [n for n in os.listdir(out) if n.endswith('.tmp') or n == 'lock']


def test_resuming_a_finished_run_says_how_to_continue_and_rewrites_nothing(corpus, tmp_path):
    train(corpus, tmp_path, '--mode=nfw', '--rank=8', '--max_iters=2', '--eval_interval=2', '--spectra_interval=1')
    before = files(tmp_path)
    out = continue_run(tmp_path, '--init_from=resume')
    assert 'nothing to train' in out and '--max_iters=4' in out and 'LR' in out, out
    assert 'train loss' not in out and 'done' not in out
    assert files(tmp_path) == before
    # a run killed between its last checkpoint and its summary gets the summary, so experiments/lib.sh skips it
    log = tmp_path / 'log.jsonl'
    log.write_text(''.join(line for line in log.read_text().splitlines(True) if '"summary"' not in line))
    continue_run(tmp_path, '--init_from=resume')
    assert [r['iter'] for r in records(tmp_path, 'summary')] == [2] and len(records(tmp_path, 'config')) == 1


def test_nonfinite_gradients_are_skipped_and_counted_or_stop_the_run(corpus, tmp_path):
    """A learning rate of 1e30 blows the weights up after one step, so every later gradient is NaN."""
    blowup = ['--mode=nfw', '--rank=8', '--learning_rate=1e30', '--warmup_iters=0', '--max_iters=4',
              '--eval_interval=4']
    train(corpus, tmp_path / 'skip', *blowup)
    assert records(tmp_path / 'skip', 'train')[-1]['skipped'] == 3
    assert not (tmp_path / 'skip' / 'ckpt.pt').exists()  # its one eval after step 0 is NaN: that model is not saved
    code, out, err = train(corpus, tmp_path / 'stop', *blowup, '--skip_nonfinite=False', check=False)
    assert code == 1 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert 'stopping at step 1: non-finite gradient' in err
    assert 'Intel' not in err + out  # no LAPACK noise from logging a diverged model


def test_a_run_whose_loss_turns_non_finite_keeps_its_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    """Outputs that overflow while the weights stay finite: every later step is skipped, and the evals after it
    (val loss NaN) must not save that model over the last good checkpoint (here step 2's)"""
    save, cross_entropy, broken = torch.save, torch.nn.functional.cross_entropy, []
    monkeypatch.setattr(torch, 'save', lambda *a, **k: (save(*a, **k), broken.append(True)))  # broken after a save
    monkeypatch.setattr(torch.nn.functional, 'cross_entropy',
                        lambda *a, **k: cross_entropy(*a, **k) * (float('nan') if broken else 1))
    train(corpus, tmp_path / 'run', '--mode=nfw', '--rank=8', '--max_iters=6', '--eval_interval=2')
    assert records(tmp_path / 'run', 'train')[-1]['skipped'] == 4  # steps 2-5
    assert torch.load(tmp_path / 'run' / 'ckpt.pt', weights_only=True)['iter_num'] == 2


def test_a_gradient_norm_that_overflows_while_each_gradient_is_finite_is_skipped_or_stops_the_run(
        corpus, tmp_path, monkeypatch):
    """Weights grown huge (a diverging run) give finite gradients whose norm overflows float32: the step is skipped
    as a non-finite one, or the run stops with one line, never a traceback"""
    clip = torch.nn.utils.clip_grad_norm_
    calls = iter(range(10**6))
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda *a, **k: clip(*a, **k) * (
        float('inf') if next(calls) == 1 else 1))  # step 1's norm overflows
    short = ['--mode=nfw', '--rank=8', '--max_iters=3', '--eval_interval=3']
    train(corpus, tmp_path / 'skip', *short)
    assert records(tmp_path / 'skip', 'train')[-1]['skipped'] == 1
    calls = iter(range(10**6))
    code, out, err = train(corpus, tmp_path / 'stop', *short, '--skip_nonfinite=False', check=False)
    assert code == 1 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert 'stopping at step 1: non-finite gradient' in err


def test_resuming_a_checkpoint_saved_with_fused_adamw_uses_this_devices_kernel(corpus, tmp_path):
    """A checkpoint carries its AdamW's `fused` flag; resuming loads the state but keeps the kernel this device
    chose (fused on CUDA, the plain loop on CPU), so a GPU checkpoint resumed on CPU repeats a CPU run exactly."""
    common = ['--mode=nfw', '--rank=8', '--eval_interval=5', '--lr_decay_iters=10']
    train(corpus, tmp_path / 'straight', *common, '--max_iters=10')
    train(corpus, tmp_path / 'resumed', *common, '--max_iters=5')
    path = tmp_path / 'resumed' / 'ckpt.pt'
    ckpt = torch.load(path, weights_only=True)
    for state in ckpt['optimizers']:  # as a CUDA run would have saved it
        for group in state['param_groups']:
            group['fused'] = True
    torch.save(ckpt, path)
    continue_run(tmp_path / 'resumed', '--init_from=resume', '--max_iters=10')
    groups = torch.load(path, weights_only=True)['optimizers'][0]['param_groups']
    assert [g['fused'] for g in groups] == [False] * len(groups)
    a, b = records(tmp_path / 'straight', 'train'), records(tmp_path / 'resumed', 'train')
    assert [r['loss'] for r in a] == [r['loss'] for r in b]


def test_resume_keeps_the_spectron_variant_of_its_checkpoint(corpus, tmp_path):
    """spectron_ortho and spectron_renorm change the optimizer, so a resume takes them from the checkpoint (a flag
    that contradicts it is refused: the table of bad continuations), and a checkpoint from before the switches
    resumes with both on."""
    train(corpus, tmp_path, '--mode=spectron', '--rank=8', '--spectron_renorm=False', '--max_iters=2',
          '--eval_interval=2')
    continue_run(tmp_path, '--init_from=resume', '--max_iters=4')
    assert records(tmp_path, 'config')[-1]['spectron_renorm'] is False
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)  # made old: no switches in its config or optimizer
    del ckpt['config']['spectron_ortho'], ckpt['config']['spectron_renorm']
    for group in ckpt['optimizers'][0]['param_groups']:
        del group['ortho'], group['renorm']
    torch.save(ckpt, tmp_path / 'ckpt.pt')
    continue_run(tmp_path, '--init_from=resume', '--max_iters=6')
    config = records(tmp_path, 'config')[-1]
    assert config['spectron_ortho'] is True and config['spectron_renorm'] is True
    assert records(tmp_path, 'eval')[-1]['iter'] == 6


# -----------------------------------------------------------------------------
# what a run takes from its config, its checkpoint and its flags

def test_each_mode_trains_with_its_own_defaults_unless_given(corpus, tmp_path):
    for mode, args in (('dense', []), ('nfw', [R]), ('tsvd', []), ('tsvd', ['--learning_rate=0.007', '--rank=16'])):
        out = tmp_path / f'{mode}{len(args)}'  # tsvd's own rank, a fraction, unless given
        train(corpus, out, f'--mode={mode}', '--max_iters=1', '--eval_interval=1', *args)
        config = records(out, 'config')[0]
        want = {**lowrank.MODES[mode].defaults, **dict(a[2:].split('=') for a in args)}
        assert all(config[k] == type(config[k])(v) for k, v in want.items()), (want, config)
        assert config['min_lr'] == config['learning_rate'] / 10
    # Spectron's default η follows the width as 1/√n_embd (tuned at 256); a given η is taken as it is
    for args, eta in (([], 0.02 * math.sqrt(256 / 32)), (['--spectron_lr=0.05'], 0.05)):
        train(corpus, tmp_path / f'spectron{len(args)}', '--mode=spectron', '--rank=8', '--max_iters=1', *args)
        assert records(tmp_path / f'spectron{len(args)}', 'config')[0]['spectron_lr'] == pytest.approx(eta, rel=1e-12)
    train(corpus, tmp_path / 'floor', '--mode=dense', '--max_iters=1', '--min_lr=0')  # a set floor stays set
    assert records(tmp_path / 'floor', 'config')[0]['min_lr'] == 0
    # a resumed run keeps its own values, not the mode's defaults (nor a min_lr of the default LR)
    train(corpus, tmp_path / 'resumed', '--mode=tsvd', '--rank=16', '--energy=0.8', '--learning_rate=0.007',
          '--max_iters=2', '--eval_interval=1')
    continue_run(tmp_path / 'resumed', '--init_from=resume', '--max_iters=3')
    first, config = records(tmp_path / 'resumed', 'config')
    assert (config['rank'], config['energy'], config['learning_rate'], config['min_lr']) == (16, 0.8, 0.007, 0.0007)
    assert config == {**first, 'max_iters': 3, 'iter': 2, 'init_from': 'resume'}
    # muon, like dense, trains full W: the same parameters
    train(corpus, tmp_path / 'muon', '--mode=muon', '--max_iters=1')
    assert records(tmp_path / 'muon', 'eval')[-1]['params'] == records(tmp_path / 'dense0', 'eval')[-1]['params']


def test_a_config_file_may_set_keys_its_mode_does_not_use(corpus, tmp_path):
    """A flag the mode ignores is refused (the bad-input table), but a shared config file sets keys for all modes."""
    (tmp_path / 'cfg.py').write_text("rank = 8\nenergy = 0.5\nmuon_lr = 0.02\n")
    for mode in ('dense', 'nfw'):
        train(corpus, tmp_path / mode, str(tmp_path / 'cfg.py'), f'--mode={mode}', '--max_iters=1')
        assert records(tmp_path / mode, 'config')[0]['rank'] == 8


def test_a_continuation_may_change_only_where_the_run_ends_and_what_it_reports(corpus, tmp_path):
    """configurator.MAY_CHANGE flags may differ from the checkpoint's values; any other is refused (the table of bad
    continuations); flags equal to the checkpoint's are fine (experiments/lib.sh resumes with the run's own line)."""
    common = ['--mode=nfw', '--rank=8', '--eval_interval=2', '--learning_rate=3e-3']
    train(corpus, tmp_path, *common, '--max_iters=2')
    train(corpus, tmp_path, *common, '--max_iters=4', '--init_from=resume')  # the same flags again
    continue_run(tmp_path, '--init_from=resume', '--max_iters=8', '--eval_interval=3', '--log_interval=2',
                 '--eval_iters=1', '--spectra_interval=3', '--dtype=float32', '--skip_nonfinite=False')
    config = records(tmp_path, 'config')[-1]
    assert (config['max_iters'], config['eval_interval'], config['log_interval'], config['skip_nonfinite'],
            config['learning_rate'], config['batch_size']) == (8, 3, 2, False, 3e-3, 8)
    assert [r['iter'] for r in records(tmp_path, 'eval')][-2:] == [6, 8]
    assert [r['iter'] for r in records(tmp_path, 'train')] == [0, 1, 2, 3, 4, 6]


def test_training_lines_name_the_step_size_and_short_runs_warn(corpus, tmp_path):
    """The header names the rank only for a mode that has one; a training line shows the mode's step size under its
    config key (scheduled); eval lines give bits per character; ranks appear whenever a mode changes them; warnings
    when a run has more parameters than dense, ends inside its warmup or before TSVD's first rank choice."""
    _, out, _ = train(corpus, tmp_path / 'spectron', '--mode=spectron', '--rank=8', '--max_iters=3',
                      '--eval_interval=3')
    config, steps = records(tmp_path / 'spectron', 'config')[0], records(tmp_path / 'spectron', 'train')
    lines = [line for line in out.splitlines() if line.startswith('iter ')]
    assert len(lines) == 3 and all(f"spectron_lr {r['lr_factor'] * config['spectron_lr']:.2e}," in line
                                   for r, line in zip(steps, lines))
    assert not any(', lr ' in line for line in lines)
    assert out.startswith('mode spectron, rank 8: ') and 'ranks' not in out
    evals = records(tmp_path / 'spectron', 'eval')
    assert f"val loss {evals[-1]['val_loss']:.4f} ({evals[-1]['val_loss'] / math.log(2):.3f} bits/char)" in out
    assert 'warning: max_iters=3 ends inside the warmup' in out and 'more parameters' not in out
    _, out, _ = train(corpus, tmp_path / 'dense', '--mode=dense', '--max_iters=6', '--eval_interval=6')
    assert out.startswith('mode dense: ') and 'rank' not in out.splitlines()[0] and 'warning' not in out
    _, out, _ = train(corpus, tmp_path / 'full', '--mode=nfw', '--rank=32', '--max_iters=6', '--eval_interval=6')
    assert 'warning: rank 32 at n_embd 32 has more parameters than dense' in out
    _, out, _ = train(corpus, tmp_path / 'tsvd', '--mode=tsvd', '--rank=8', '--max_iters=6', '--eval_interval=6',
                      '--rank_warmup=4', '--rank_interval=7')  # warmup done at 5; rank choices at 7, 14, ...
    assert 'learning_rate ' in out and 'ranks 8-8' in out
    assert 'warmup' not in out and 'warning: max_iters=6 ends before TSVD' in out
    _, out, _ = train(corpus, tmp_path / 'tsvd7', '--mode=tsvd', '--rank=8', '--max_iters=7', '--eval_interval=7',
                      '--rank_warmup=4', '--rank_interval=7', '--energy=0.5')
    assert 'warning' not in out


def test_spectra_are_recorded_at_their_interval_every_tenth_step_early_and_at_the_end(corpus, tmp_path):
    """spectra_interval, plus every 10th step before spectra_early, plus the final step, once."""
    for interval, early, max_iters, want in ((5, 0, 12, [0, 5, 10, 12]), (5, 0, 10, [0, 5, 10]),
                                             (15, 25, 30, [0, 10, 15, 20, 30]), (0, 25, 30, [0, 10, 20])):
        out = tmp_path / f'{interval}_{early}_{max_iters}'
        train(corpus, out, '--mode=dense', f'--max_iters={max_iters}', '--eval_interval=100',
              f'--spectra_interval={interval}', f'--spectra_early={early}')
        with np.load(out / 'spectra.npz') as z:
            assert list(z['steps']) == want and len(z['blocks.0.attn.q']) == len(want)


def test_flops_follow_tsvd_truncation_and_lr_decays_over_max_iters(corpus, tmp_path):
    """Training FLOPs are counted from the model's FLOPs at each step, so they fall when TSVD truncates; and with
    lr_decay_iters unset the cosine ends at max_iters, so a short run still decays to min_lr."""
    train(corpus, tmp_path, '--mode=tsvd', '--rank=8', '--max_iters=8', '--eval_interval=4', '--rank_warmup=5',
          '--rank_interval=5', '--energy=0.8')
    tokens = 8 * 16  # batch_size × block_size
    evals, steps = records(tmp_path, 'eval'), records(tmp_path, 'train')
    before, after = evals[0]['flops_per_token'], evals[-1]['flops_per_token']
    assert after < before  # truncated at step 5 (in step 4's after_step)
    # training FLOPs so far, credited for the shrink: steps 0-4 at the first rank, 5-7 at the truncated one
    assert [e['train_flops'] for e in evals] == [0, 4 * before * tokens, (5 * before + 3 * after) * tokens]
    # cosine from warmup_iters = 5 to max_iters = 8, down to min_lr / learning_rate = 0.1 (decaying over 2000: ≈ 1)
    assert steps[-1]['lr_factor'] == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi * (7 - 5) / (8 - 5))) * 0.9)


def test_train_tokens_trains_on_a_prefix_and_leaves_val_alone(tmp_path, monkeypatch):
    """A corpus of distinct characters in code-point order, so that every token's id is its position. With
    --train_tokens=17 (block_size + 1: one window) the model must train, and measure its train loss, on positions
    0-16 alone; the val batches must be those of a run on the whole training split."""
    corpus = tmp_path / 'positions.txt'
    corpus.write_text(''.join(chr(0x4e00 + i) for i in range(4000)))  # train: positions 0-3599, val: 3600-3999
    seen, forward = [], model.GPT.forward

    def spy(self, idx, targets=None):  # every batch the model sees, and whether it trains on it
        seen.append((self.training, idx.clone(), targets.clone()))
        return forward(self, idx, targets)
    monkeypatch.setattr(model.GPT, 'forward', spy)

    def batches(out_dir, *args):
        seen.clear()
        train(corpus, out_dir, '--mode=dense', '--max_iters=10', '--eval_interval=10', *args)
        return list(seen)

    prefix, full = batches(tmp_path / 'prefix', '--train_tokens=17'), batches(tmp_path / 'full')
    window = torch.arange(17)
    trained = [(x, y) for training, x, y in prefix if training or x.max() < 3600]  # eval's train split too
    assert len(trained) == 10 + 2 * 2  # 10 steps, 2 evals of eval_iters = 2 batches
    assert all((x == window[:-1]).all() and (y == window[1:]).all() for x, y in trained)
    assert max(y.max() for training, x, y in full if training) > 17  # the whole split, without the option
    val = lambda seen: [(x, y) for training, x, y in seen if not training and x.min() >= 3600]
    assert len(val(prefix)) == 4 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                         for a, b in zip(val(prefix), val(full)))
    assert records(tmp_path / 'prefix', 'config')[0]['train_tokens'] == 17
    assert torch.load(tmp_path / 'prefix' / 'ckpt.pt', weights_only=True)['config']['train_tokens'] == 17


def test_an_eval_only_run_evaluates_step_0(corpus, tmp_path, runs):
    _, out, _ = train(corpus, tmp_path, '--mode=spectron', '--rank=1.0', '--init_from=svd',
                      f'--svd_from={runs / "dense"}', '--max_iters=0')
    assert 'None' not in out and [r['iter'] for r in records(tmp_path, 'eval')] == [0]


# -----------------------------------------------------------------------------
# SVD init: a dense run's weights, factorized

def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize('mode', SVD_SPLIT)  # the layers a dense W's SVD splits into W = V Uᵀ (or U diag(s) Vᵀ)
def test_svd_init_factorizes_every_dense_layer(corpus, tmp_path, runs, mode):
    """One step at a step size of 1e-12 (which changes nothing at 1e-5), so that a checkpoint holds the SVD init:
    every layer is its dense weight's rank-8 truncation (NFW's factors balanced, TSVD's U, V orthonormal), the rest
    is the dense model's, the model's shape is the dense run's, and iterations and optimizer state start afresh."""
    _, out, _ = train(corpus, tmp_path, *own(mode, rank=8, spectron_lr=1e-12), '--init_from=svd',
                      f'--svd_from={runs / "dense"}', '--max_iters=1', '--eval_interval=1', '--learning_rate=1e-12')
    assert f'init from the SVD of {runs / "dense"}/ckpt.pt (dense, step 4): rank 8 keeps' in out
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
          '--max_iters=1')
    dense, factorized = records(runs / 'dense', 'eval')[-1], records(tmp_path, 'eval')[0]
    assert factorized['iter'] == 0 and abs(factorized['val_loss'] - dense['val_loss']) < 1e-4
    assert abs(factorized['train_loss'] - dense['train_loss']) < 1e-4


# -----------------------------------------------------------------------------
# warmup-stable-decay, and cooldown branches from a long run's stable phase

@pytest.mark.parametrize('mode', ['dense', 'spectron', 'muon'])  # AdamW alone, Spectron + AdamW, Muon + AdamW
def test_wsd_scales_every_optimizer_group_by_its_formula(corpus, tmp_path, mode):
    bases = {'dense': [2e-3] * 2, 'spectron': [0.04] + [2e-3] * 2, 'muon': [0.03] + [2e-3] * 2}[mode]
    for shape in ('linear', 'sqrt'):
        train(corpus, tmp_path / shape, *own(mode, rank=8, spectron_lr=0.04, muon_lr=0.03), '--lr_schedule=wsd',
              f'--decay_shape={shape}', '--decay_frac=0.3', '--max_iters=20', '--eval_interval=20',
              '--learning_rate=2e-3', '--min_lr=5e-4')

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


@pytest.mark.parametrize('mode', MODES + ['spectron --decay_shape=sqrt'])
def test_a_cooldown_branch_is_the_straight_wsd_run_to_the_digit(corpus, tmp_path, monkeypatch, mode):
    """A 30-step wsd run keeps its step-10 checkpoint; a branch from it to 20 steps decays from step 16, as a
    straight 20-step run does, and logs the same losses, LRs, gradient norms and spectra exactly (==). A branch
    stopped by Ctrl-C and resumed naming only its out_dir continues with its parent's config and ends the same."""
    common = [*own(mode, **TSVD), '--lr_schedule=wsd', '--eval_interval=5', '--dropout=0.1', '--spectra_interval=5']
    train(corpus, tmp_path / 'straight', *common, '--max_iters=20')
    train(corpus, tmp_path / 'long', *common, '--max_iters=30', '--save_at=10,20')
    assert os.path.isfile(tmp_path / 'long' / 'ckpt_20.pt')
    # the branch names only what is its own: the rest (model, data, optimizers, dropout's RNG) is the checkpoint's
    branch = ['--init_from=branch', f'--branch_from={tmp_path / "long" / "ckpt_10.pt"}', '--max_iters=20']
    continue_run(tmp_path / 'branch', *branch)
    ctrl_c_at_step(monkeypatch, 3)  # the branch's third step, step 12
    out = continue_run(tmp_path / 'stopped', *branch)
    assert 'stopped by a signal after step 13' in out and records(tmp_path / 'stopped', 'summary') == []
    continue_run(tmp_path / 'stopped', '--init_from=resume')
    for kind, keys in (('train', ('iter', 'loss', 'lr_factor', 'lr', 'grad_norm', 'max_dW')),
                       ('eval', ('iter', 'train_loss', 'val_loss', 'ranks', 'params', 'train_flops'))):
        a, b, c = ([[r[k] for k in keys] for r in records(tmp_path / d, kind)] for d in ('straight', 'branch',
                                                                                          'stopped'))
        assert a == b == c, kind
    assert [r['iter'] for r in records(tmp_path / 'branch', 'eval')] == [0, 5, 10, 15, 20]
    assert records(tmp_path / 'branch', 'train')[-1]['lr_factor'] < records(tmp_path / 'long', 'train')[19]['lr_factor']
    for d in ('branch', 'stopped'):
        with np.load(tmp_path / 'straight' / 'spectra.npz') as a, np.load(tmp_path / d / 'spectra.npz') as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a.files)


# -----------------------------------------------------------------------------
# out_dir: one run at a time, a checkpoint replaced only when told, nothing written by a refused or interrupted set-up

def test_a_live_run_locks_its_out_dir_without_a_lock_file(corpus, tmp_path, monkeypatch):
    """flock on the out_dir folder itself: held while the run trains (no `lock` file), released when it ends; a run
    into an out_dir another holds is refused, fresh or resume (the lock goes with a process however it ends: the
    kill -9 test resumes without any cleanup)."""
    held, clip = [], torch.nn.utils.clip_grad_norm_

    def probe(*args, **kwargs):  # during the run: is the folder locked, and by a file?
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)
        held.append(sorted(os.listdir(tmp_path)))
        return clip(*args, **kwargs)
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', probe)
    train(corpus, tmp_path, '--mode=dense', '--max_iters=1')
    assert held == [True, ['log.jsonl']], held
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'log.jsonl']
    monkeypatch.undo()
    fd = os.open(tmp_path, os.O_RDONLY)  # another run holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = files(tmp_path)
        for args in (['--max_iters=2', '--overwrite=True'], ['--max_iters=2', '--init_from=resume']):
            code, _, err = train(corpus, tmp_path, '--mode=dense', *args, check=False)
            assert_refused(code, err, 'in use')
        assert files(tmp_path) == before
    finally:
        os.close(fd)
    train(corpus, tmp_path, '--mode=dense', '--max_iters=2', '--init_from=resume')
    assert records(tmp_path, 'eval')[-1]['iter'] == 2


@pytest.mark.parametrize('existing', ['ckpt.pt', 'ckpt_10.pt'])
def test_a_fresh_run_refuses_to_replace_a_checkpoint_unless_told(corpus, tmp_path, existing):
    """Any checkpoint (the last one, or only a branch point) stops a fresh run; --overwrite=True replaces them all."""
    train(corpus, tmp_path, '--mode=nfw', '--rank=8', '--lr_schedule=wsd', '--max_iters=20', '--eval_interval=10',
          '--save_at=10')
    for name in os.listdir(tmp_path):
        if name != existing:
            os.remove(tmp_path / name)
    before = files(tmp_path)
    code, _, err = train(corpus, tmp_path, '--mode=dense', '--max_iters=2', check=False)
    assert_refused(code, err, 'overwrite')
    assert '--init_from=resume' in err and files(tmp_path) == before
    train(corpus, tmp_path, '--mode=dense', '--max_iters=2', '--eval_interval=2', '--overwrite=True')
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'log.jsonl']  # the old run's checkpoints went with it
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == 2
    assert len(records(tmp_path, 'config')) == 1


@pytest.mark.parametrize('resume', [False, True], ids=['fresh', 'resume'])
def test_ctrl_c_during_set_up_is_exit_130_and_writes_nothing(corpus, tmp_path, monkeypatch, resume):
    """A KeyboardInterrupt before training starts (here as the model counts its parameters, just before out_dir is
    made): one line, exit 130, out_dir as it was (not even made, for a fresh run)."""
    if resume:
        train(corpus, tmp_path, '--mode=nfw', '--rank=8', '--max_iters=2', '--eval_interval=2')
    before = files(tmp_path / 'out' if not resume else tmp_path)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(model.GPT, 'num_params', interrupted)
    code, _, err = train(corpus, tmp_path if resume else tmp_path / 'out', '--mode=nfw', '--rank=8', '--max_iters=4',
                         *['--init_from=resume'] * resume, check=False)
    assert code == 130 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert files(tmp_path / 'out' if not resume else tmp_path) == before


def test_a_full_disk_at_a_checkpoint_is_one_line_keeps_the_last_one_and_no_tmp(corpus, tmp_path):
    """A file-size limit smaller than a checkpoint (EFBIG, as a full disk gives ENOSPC: Python ignores SIGXFSZ, so the
    write fails with an OSError) hits the resumed run's first checkpoint: one line giving the reason, exit 1, no
    temporary file left, and the checkpoint before it still loads (that the line names the file: below)."""
    train(corpus, tmp_path, '--mode=nfw', '--rank=8', '--max_iters=2', '--eval_interval=2')
    limit = os.path.getsize(tmp_path / 'ckpt.pt') // 2  # the log (a few kB) fits, a checkpoint does not
    p = subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), f'--out_dir={tmp_path}', '--device=cpu',
                        '--max_iters=4', '--init_from=resume'], capture_output=True, text=True, timeout=300, env=ENV,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert p.returncode == 1, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and 'Traceback' not in p.stderr, p.stderr
    assert 'File too large' in p.stderr, p.stderr
    assert not list(tmp_path.glob('*.tmp'))
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == 2


def full_disk(f):
    """A write into a full disk: part of it lands, then ENOSPC (which, as any failed write, names no file)."""
    f.write(b'half of it')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_on_a_full_disk_removes_its_tmp_and_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    """prepare_data.atomic_write: the error goes on (train.py's hook makes it one line, exit 1), the old file stays,
    and no temporary file is left."""
    path = tmp_path / 'ckpt.pt'
    path.write_bytes(b'the last good one')
    with pytest.raises(OSError) as error:
        prepare_data.atomic_write(str(path), full_disk)
    assert path.read_bytes() == b'the last good one' and os.listdir(tmp_path) == ['ckpt.pt']
    monkeypatch.setattr(configurator, 'setting_up', False, raising=False)  # a run under way: what the hook makes of it
    with pytest.raises(SystemExit) as exit_:
        configurator.one_line_errors(OSError, error.value, None)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and len(err.strip().splitlines()) == 1 and 'No space left on device' in err, err


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, capsys, monkeypatch):
    path = tmp_path / 'ckpt.pt'
    with pytest.raises(OSError) as error:
        prepare_data.atomic_write(str(path), full_disk)
    monkeypatch.setattr(configurator, 'setting_up', False, raising=False)
    with pytest.raises(SystemExit):
        configurator.one_line_errors(OSError, error.value, None)
    assert str(path) in capsys.readouterr().err


# -----------------------------------------------------------------------------
# bad input: one line on stderr, exit status 2, before any work

BAD_TRAIN_ARGS = [  # (arguments, a key word of the one-line error)
    (['--mode=foo'], "'foo'"),
    (['--mode=spectrom'], "'spectron'"),
    (['--n_embed=64'], "'n_embd'"),
    (['--max_iters=ten'], 'max_iters'),
    (['--dropout=True'], 'dropout'),
    (['--dropout=1.0'], 'dropout'),
    (['--learning_rate=-1'], 'learning_rate'),
    (['--weight_decay=-1'], 'weight_decay'),  # AdamW checks only its default's, not a group's
    ([R, '--spectron_wd=-1'], 'spectron_wd'),
    (['--compile=1'], 'compile'),
    (['--spectron_ortho=maybe'], 'spectron_ortho'),
    (['--spectron_renorm=1'], 'spectron_renorm'),
    (['--rank=9999'], 'fit'),
    (['--rank=0'], 'fit'),
    (['--rank=1.5'], 'fractional'),
    (['--mode=tsvd', '--rank=0.0'], 'fractional'),
    (['--mode=dense', '--n_embd=30', '--n_head=4'], 'divisible'),
    ([R, '--spectron_lr=0'], 'lr'),
    ([R, '--spectron_lr=-0.1'], 'lr'),
    ([R, '--spectron_beta=1.0'], 'momentum'),
    ([R, '--spectron_power_iters=0'], 'power_iters'),
    ([R, '--ns_steps=0'], 'ns_steps'),
    (['--mode=muon', '--muon_lr=0'], 'lr'),
    (['--mode=muon', '--muon_beta=1.0'], 'momentum'),
    (['--mode=muon', '--muon_lr=fast'], 'muon_lr'),
    (['--mode=muon', '--ns_steps=0'], 'ns_steps'),
    (['--mode=tsvd', '--energy=1.5'], 'energy'),
    (['--mode=tsvd', '--energy=0'], 'energy'),
    (['--mode=tsvd', '--min_rank=0'], 'min_rank'),
    (['--mode=tsvd', '--rank=8', '--min_rank=16'], 'min_rank=16'),
    (['--mode=tsvd', '--rank_interval=0'], 'rank_interval'),
    # a flag the mode does not use
    (['--mode=dense', '--rank=8'], '--rank'),
    (['--mode=muon', '--rank=8'], '--rank'),
    (['--mode=nfw', '--muon_lr=0.1'], '--muon_lr'),
    (['--mode=nfw', '--energy=0.5'], '--energy'),
    ([R, '--rank_warmup=5'], '--rank_warmup'),
    ([R, '--energy=1.5'], '--energy'),
    ([R, '--energy=0'], '--energy'),
    ([R, '--min_rank=0'], '--min_rank'),
    ([R, '--rank_interval=0'], '--rank_interval'),
    (['--mode=tsvd', '--ns_steps=3'], '--ns_steps'),
    (['--mode=dense', '--spectron_lr=0.1'], '--spectron_lr'),
    # counts and sizes
    (['--mode=dense', '--batch_size=0'], 'batch_size'),
    (['--mode=dense', '--n_layer=0'], 'n_layer'),
    (['--mode=dense', '--eval_interval=0'], 'eval_interval'),
    (['--mode=dense', '--gradient_accumulation_steps=0'], 'gradient_accumulation_steps'),
    (['--mode=dense', '--warmup_iters=-1'], 'warmup_iters'),
    (['--mode=dense', '--grad_clip=-1'], 'grad_clip'),
    (['--mode=dense', '--min_lr=-1'], 'min_lr'),
    (['--mode=dense', '--lr_decay_iters=-1'], 'lr_decay_iters'),
    (['--mode=dense', '--spectra_early=-10'], 'spectra_early'),
    (['--spectra_early=0.5'], 'spectra_early'),
    (['--mode=dense', '--train_tokens=-1'], 'train_tokens'),
    (['--train_tokens=1e4'], 'train_tokens'),
    (['--mode=dense', '--train_tokens=16'], 'train_tokens=16'),  # block_size + 1 = 17 tokens are one window
    (['--mode=dense', '--train_tokens=10000000'], 'train_tokens=10,000,000'),  # of 36,000 tokens
    # device, files and the command line
    (['--mode=dense', '--dtype=float64'], 'dtype'),
    (['--mode=dense', '--device=tpu'], 'tpu'),
    (['--mode=dense', '--device=cuda:x'], 'cuda:x'),
    (['--mode=dense', '--device=cuda'], 'cuda'),  # skipped where there is a GPU
    (['--mode=dense', '--device=cuda:2'], 'cuda'),  # skipped where there are 3
    (['--mode=dense', '--tokenizer=bpe'], 'tokenizer'),
    (['--mode=dense', '--input_file=/nonexistent/corpus.txt'], 'not found'),
    (['--mode=dense', '--out_dir=/dev/null/out'], '/dev/null/out'),  # as root too: /dev/null is no folder
    (['--mode=dense', '--out_dir={corpus}'], 'file'),  # the corpus file: a file, not a folder
    (['no_such_config.py'], 'no_such_config.py'),
    (['--max_iters'], '--key=value'),
    (['--init_from=gpt2'], 'init_from'),
    (['--init_from=resume'], 'no checkpoint'),
    (['--init_from=svd'], '--svd_from'),
    (['--svd_from=/x'], '--svd_from'),
    (['--mode=nfw', R, '--init_from=svd', '--svd_from=/nonexistent/run'], '/nonexistent/run/ckpt.pt'),
    (['--init_from=branch'], '--branch_from'),
    (['--branch_from=/x/ckpt_10.pt'], '--branch_from'),
    (['--init_from=branch', '--branch_from=/nonexistent/ckpt_10.pt'], '/nonexistent/ckpt_10.pt'),
    # schedules
    (['--mode=dense', '--lr_schedule=step'], 'lr_schedule'),
    (['--mode=dense', '--decay_frac=0'], 'decay_frac'),
    (['--mode=dense', '--decay_frac=1.5'], 'decay_frac'),
    (['--mode=dense', '--decay_shape=cubic'], 'decay_shape'),
    (['--mode=dense', '--lr_schedule=wsd', '--lr_decay_iters=100'], 'lr_decay_iters'),
    (['--mode=dense', '--lr_schedule=wsd', '--max_iters=5'], 'warmup'),
    (['--mode=dense', '--save_at=100'], 'save_at'),
    (['--mode=dense', '--lr_schedule=wsd', '--save_at=1601'], 'save_at'),
    (['--mode=dense', '--lr_schedule=wsd', '--save_at=16OO'], '16OO'),
]


@pytest.mark.parametrize('args,word', BAD_TRAIN_ARGS, ids=[' '.join(a) for a, _ in BAD_TRAIN_ARGS])
def test_bad_train_input_is_one_line_and_exit_2(corpus, tmp_path, args, word):
    if word == 'cuda' and torch.cuda.device_count() > int(args[-1].partition(':')[2] or 0):
        pytest.skip('this machine has that GPU')
    code, _, err = train(corpus, tmp_path / 'out', *(a.format(corpus=corpus) for a in args), check=False)
    assert_refused(code, err, word)
    assert not os.path.exists(tmp_path / 'out')  # nothing started


def test_bad_input_on_a_command_line_is_one_line_and_exit_2(tmp_path):
    """The same errors reach a real command line, of every script (the tables run them in this process); the three
    run side by side."""
    (tmp_path / 'latin1.txt').write_bytes('caf\xe9 '.encode('latin-1') * 100)
    cases = ((['train.py', '--mode=spectrom', f'--out_dir={tmp_path / "out"}'], "'spectron'"),
             (['sample.py', f'--out_dir={tmp_path / "nowhere"}'], 'no checkpoint'),
             (['prepare_data.py', f'--input={tmp_path / "latin1.txt"}'], 'UTF-8'))
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, script), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for (script, *args), _ in cases]
    for p, (out, err), (_, word) in zip(procs, finish(procs), cases):
        assert_refused(p.returncode, err, word)
    assert not os.path.exists(tmp_path / 'out')


def test_ddp_process_count_must_divide_gradient_accumulation(corpus, tmp_path, monkeypatch):
    """Refused before the processes meet (no process group yet): process 1 of 2, in this process."""
    for key, value in dict(RANK='1', LOCAL_RANK='1', WORLD_SIZE='2', LOCAL_WORLD_SIZE='2').items():
        monkeypatch.setenv(key, value)
    code, _, err = train(corpus, tmp_path / 'out', '--mode=dense', '--gradient_accumulation_steps=3', check=False)
    assert_refused(code, err, 'gradient_accumulation_steps=3')
    assert not os.path.exists(tmp_path / 'out')


BAD_FILES = [  # (file name, its bytes, a key word of the error): a corpus, or a config file (*.py)
    ('empty.txt', b'', 'characters'),
    ('small.txt', b'too small', 'characters'),
    ('latin1.txt', 'caf\xe9 '.encode('latin-1') * 100, 'UTF-8'),
    ('typo.py', b"n_layers = 3\n", "'n_layer'"),
    ('type.py', b"max_iters = 'ten'\n", 'max_iters'),
    ('broken.py', b"max_iters = (\n", 'does not run'),
]


@pytest.mark.parametrize('name,content,word', BAD_FILES, ids=[n for n, _, _ in BAD_FILES])
def test_bad_corpora_and_config_files_are_one_line_and_exit_2(corpus, tmp_path, name, content, word):
    (tmp_path / name).write_bytes(content)
    args = [str(tmp_path / name)] if name.endswith('.py') else [f'--input_file={tmp_path / name}']
    code, _, err = train_in_process('--mode=dense', f'--out_dir={tmp_path / "out"}', *args)
    assert_refused(code, err, word)
    assert not os.path.exists(tmp_path / 'out')


BAD_CONTINUATIONS = [  # (arguments, a key word): {run} is a finished run of the `runs` fixture
    # a resume (the run's own out_dir) with a value of its own that differs from the checkpoint's
    (['--out_dir={nfw}', '--init_from=resume', '--mode=dense'], 'mode'),
    (['--out_dir={nfw}', '--init_from=resume', '--mode=tsvd'], 'mode'),
    (['--out_dir={nfw}', '--init_from=resume', '--mode=muon'], 'mode'),
    (['--out_dir={nfw}', '--init_from=resume', '--n_embd=64'], 'n_embd'),
    (['--out_dir={nfw}', '--init_from=resume', '--train_tokens=1000'], 'train_tokens'),
    (['--out_dir={nfw}', '--init_from=resume', '--learning_rate=0.1'], 'learning_rate'),
    (['--out_dir={nfw}', '--init_from=resume', '--rank=4'], 'rank'),
    (['--out_dir={nfw}', '--init_from=resume', '--seed=2'], 'seed'),
    (['--out_dir={nfw}', '--init_from=resume', '--energy=0.5'], 'energy'),
    (['--out_dir={spectron}', '--init_from=resume', '--spectron_renorm=True'], 'spectron_renorm'),
    (['--out_dir={spectron}', '--init_from=resume', '--spectron_ortho=False'], 'spectron_ortho'),
    (['--out_dir={long}', '--init_from=resume', '--lr_schedule=cosine'], 'lr_schedule'),
    (['--out_dir={long}', '--init_from=resume', '--decay_frac=0.5'], 'decay_frac'),
    (['--out_dir={long}', '--init_from=resume', '--decay_shape=sqrt'], 'decay_shape'),
    (['--out_dir={long}', '--init_from=resume', '--max_iters=60'], 'stable phase'),  # at step 40, decayed from 32
    # a branch (into its own out_dir)
    (['--init_from=branch', '--branch_from={cosine}/ckpt.pt'], 'wsd'),
    (['--init_from=branch', '--branch_from={long}/ckpt_10.pt', '--max_iters=8'], 'max_iters=8'),
    (['--init_from=branch', '--branch_from={long}/ckpt_10.pt', '--max_iters=11'], 'stable phase'),  # decays from 9
    (['--init_from=branch', '--branch_from={long}/ckpt.pt', '--max_iters=50'], 'stable phase'),
    (['--init_from=branch', '--branch_from={long}/ckpt_10.pt', '--max_iters=20', '--batch_size=4'], 'batch_size'),
    (['--init_from=branch', '--branch_from={long}/ckpt_10.pt', '--max_iters=20', '--mode=dense'], 'mode'),
    # an SVD init
    (['--mode=nfw', R, '--init_from=svd', '--svd_from={nfw}'], 'mode=nfw'),
    (['--mode=spectron', '--rank=64', '--init_from=svd', '--svd_from={dense}'], 'fit'),  # n_embd 32, the dense run's
    (['--mode=spectron', R, '--n_embd=64', '--init_from=svd', '--svd_from={dense}'], 'n_embd'),
    *((own(m, rank=8) + ['--init_from=svd', '--svd_from={dense}'], 'svd') for m in FACTORIZED if m not in SVD_SPLIT),
    (['--mode=dense', '--init_from=svd', '--svd_from={dense}'], 'dense'),
    (['--mode=muon', '--init_from=svd', '--svd_from={dense}'], 'muon'),
]


def ids(table):
    return [' '.join(getattr(case, 'values', case)[0]).replace('{', '').replace('}', '') for case in table]


@pytest.fixture(scope='module')
def spectron_run(corpus, tmp_path_factory):
    """A finished spectron run with the ablation's renorm switched off."""
    out = tmp_path_factory.mktemp('spectron')
    train(corpus, out, '--mode=spectron', R, '--spectron_renorm=False', '--max_iters=2', '--eval_interval=2')
    return out


@pytest.mark.parametrize('args,word', BAD_CONTINUATIONS, ids=ids(BAD_CONTINUATIONS))
def test_bad_continuations_are_one_line_and_exit_2(corpus, tmp_path, runs, spectron_run, args, word):
    paths = {name: runs / name for name in ('nfw', 'long', 'cosine', 'dense')}
    args = [a.format(**paths, spectron=spectron_run) for a in args]
    out_dir = next((a[len('--out_dir='):] for a in args if a.startswith('--out_dir=')), str(tmp_path / 'out'))
    before = files(out_dir)
    code, _, err = train_in_process(*TINY, f'--input_file={corpus}', f'--out_dir={out_dir}', *args)
    assert_refused(code, err, word)
    assert files(out_dir) == before  # nothing written, nothing made


@pytest.mark.parametrize('damage', ['corpus changed', 'checkpoint torn'])
def test_a_changed_corpus_or_a_torn_checkpoint_stops_a_resume(corpus, tmp_path, damage):
    """The corpus' sha256 is in the checkpoint: a resume on other text is refused; so is a checkpoint cut short."""
    text = tmp_path / 'corpus.txt'
    shutil.copy(corpus, text)
    train(text, tmp_path / 'run', '--mode=nfw', R, '--max_iters=2', '--eval_interval=2')
    ckpt = tmp_path / 'run' / 'ckpt.pt'
    if damage == 'corpus changed':
        with open(text, 'a') as f:
            f.write('An epilogue.\n')
    else:
        ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a torn write
    before = files(tmp_path / 'run')
    code, _, err = train(text, tmp_path / 'run', '--init_from=resume', '--max_iters=4', check=False)
    assert_refused(code, err, 'changed' if damage == 'corpus changed' else 'not a readable')
    assert str(ckpt) in err and files(tmp_path / 'run') == before


@pytest.mark.parametrize('folder,held_out,word', [
    ('unknown', ['a.txt', 'z.txt'], 'z.txt'), ('only_unknown', ['z.txt'], 'z.txt'),
    ('all', ['a.txt', 'b.txt', 'c.txt'], 'not all'), ('none', None, 'val_files')])
def test_bad_folder_corpora_are_one_line_and_exit_2(tmp_path, folder, held_out, word):
    works = {f'{w}.txt': f"THE {w.upper()}\n" * 30 for w in 'abc'}
    path = works_folder(tmp_path / folder, works, held_out or [])
    if held_out is None:
        os.remove(os.path.join(path, prepare_data.VAL_FILES))
    code, _, err = train_in_process(*TINY, '--mode=dense', f'--input_file={path}', f'--out_dir={tmp_path / "out"}')
    assert_refused(code, err, word)


@pytest.mark.parametrize('device,bf16', [('cuda:1', False), ('cuda', False), ('cuda', True)])
def test_cuda_device_and_dtype_choice_on_an_emulated_two_gpu_machine(tmp_path, monkeypatch, device, bf16):
    """Without a GPU, torch.cuda stands in for two GPUs: dtype=auto must pick float32 where bf16 is only emulated
    (V100, T4) and bf16 autocast where it is native, and --device=cuda:1 must become the current device (what RNG
    state, synchronize and SDPA use). A corpus that is not UTF-8 stops the run right after those choices."""
    calls, zeros = [], torch.zeros
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch, 'zeros', lambda *a, device=None, **k: zeros(*a, **k))  # "the device exists"
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: bf16 or including_emulation)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda d: calls.append(('set_device', d)))
    monkeypatch.setattr(torch.amp, 'autocast', lambda *a, **k: calls.append(('autocast', k.get('dtype'))))
    corpus = tmp_path / 'latin1.txt'
    corpus.write_bytes('caf\xe9 '.encode('latin-1') * 100)
    code, _, err = train_in_process(f'--input_file={corpus}', f'--out_dir={tmp_path}', f'--device={device}')
    assert_refused(code, err, 'UTF-8')
    assert calls == [('set_device', 'cuda:1')] * (device == 'cuda:1') + [('autocast', torch.bfloat16)] * bf16


# -----------------------------------------------------------------------------
# sample.py

def test_sample_from_a_checkpoint(corpus, tmp_path):
    train(corpus, tmp_path, *own('tsvd', **TSVD), '--max_iters=10', '--eval_interval=10')
    code, out, err = in_process('sample.py', f'--out_dir={tmp_path}', '--start=ROMEO:', '--num_samples=2',
                                '--max_new_tokens=30', '--device=cpu')
    samples = out.split('---------------\n')[:2]
    assert code == 0 and len(samples) == 2, err
    assert all(s.startswith('ROMEO:') and len(s) == len('ROMEO:') + 30 + 1 for s in samples)


BAD_SAMPLE_ARGS = [
    (['--out_dir={empty}'], 'no checkpoint'),
    (['--out_dir={garbage}'], 'not a readable'),
    (['--start=FILE:/nonexistent.txt'], '/nonexistent.txt'),
    (['--start=FILE:{empty}'], 'directory'),
    (['--start=FILE:{latin1}'], 'UTF-8'),
    (['--start=héllo~'], "'~é'"),
    (['--start='], 'empty'),
    (['--num_samples=0'], 'num_samples'),
    (['--num_samples=two'], 'num_samples'),
    (['--max_new_tokens=-1'], 'max_new_tokens'),
    (['--temperature=0'], 'temperature'),
    (['--top_k=0'], 'top_k'),
    (['--device=tpu'], 'tpu'),
    (['--device=cuda:7'], 'cuda'),
    (['--tempreature=1'], "'temperature'"),
]


@pytest.mark.parametrize('args,word', BAD_SAMPLE_ARGS, ids=ids(BAD_SAMPLE_ARGS))
def test_bad_sample_input_is_one_line_and_exit_2(runs, tmp_path, args, word):
    if args == ['--device=cuda:7'] and torch.cuda.device_count() > 7:
        pytest.skip('this machine has that GPU')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'garbage').mkdir()
    (tmp_path / 'garbage' / 'ckpt.pt').write_bytes(b'not a checkpoint')
    (tmp_path / 'latin1.txt').write_bytes('caf\xe9'.encode('latin-1'))
    paths = dict(empty=tmp_path / 'empty', garbage=tmp_path / 'garbage', latin1=tmp_path / 'latin1.txt')
    code, out, err = in_process('sample.py', f'--out_dir={runs / "nfw"}', '--device=cpu',
                                *(a.format(**paths) for a in args))
    assert_refused(code, err, word)
    assert out == ''


# -----------------------------------------------------------------------------
# --help

def config_block(script):
    """A script's config block, as its source has it: `key = default  # meaning` lines and comments."""
    with open(os.path.join(REPO, script)) as f:
        source = f.read().splitlines()
    key_line = re.compile(r'^([a-z_0-9]+) = .*  # ')
    first = last = next(i for i, line in enumerate(source) if key_line.match(line))
    for i in range(first, len(source)):  # up to its last key line
        if key_line.match(source[i]):
            last = i
        elif not source[i].startswith('#'):
            break
    return '\n'.join(source[first:last + 1])


@pytest.mark.parametrize('script', ['train.py', 'sample.py'])
def test_help_lists_the_modes_then_the_config_block_verbatim(script):
    code, out, err = in_process(script, '--help')
    block = config_block(script)
    assert code == 0 and err == '' and out.startswith(f'usage: python {script}') and block in out, out
    assert len(re.findall(r'^([a-z_0-9]+) = .*  # ', block, re.M)) > (40 if script == 'train.py' else 7)
    if script == 'train.py':  # the modes first, each with its step size, its defaults and its own keys
        modes = out[:out.index(block)]
        for name, m in lowrank.MODES.items():
            line = next(line for line in modes.splitlines() if line.strip().startswith(f'{name}:'))
            assert m.step_size in line and all(f"{k}={v:g}" in line for k, v in m.defaults.items()), line
            assert all(k in line for k in m.keys), line


@pytest.mark.parametrize('script', ['train.py', 'sample.py'])
def test_help_ends_with_the_config_block(script):
    _, out, _ = in_process(script, '--help')
    assert out.rstrip('\n').endswith(config_block(script))


def test_help_into_a_closed_pipe_exits_quietly():
    """`train.py --help | head`: a reader that closes the pipe before the help is all written is no error (exit 0,
    nothing on stderr)."""
    p = start('--help')
    p.stdout.close()  # before train.py, still importing torch, writes its first line
    stderr = p.stderr.read()
    assert p.wait(timeout=300) == 0 and stderr == '', stderr


# -----------------------------------------------------------------------------
# DDP: two CPU processes (gloo) are one process with the same global batch

def test_ddp_two_processes_match_one_stop_together_and_tokenise_once(tmp_path, monkeypatch):
    """Two processes, each taking half of every global batch, train the model one process trains doing both halves
    by gradient accumulation (TSVD: its truncations rebuild the DDP wrapper). torchrun passes a signal to its
    processes one by one, and a process that stopped alone would leave the other waiting forever in the next
    all-reduce: here only process 1 (not the one that checkpoints) gets SIGTERM, and both stop after the same step.
    They start on a corpus not yet tokenised (1 MB, so that two racing processes would both tokenise it): one
    writes the files, the other reads them only once whole."""
    corpus = tmp_path / 'shakespeare.txt'
    shutil.copy(os.path.join(REPO, 'data', 'tinyshakespeare.txt'), corpus)
    args = [*TINY, f'--input_file={corpus}', *own('tsvd', **TSVD), '--max_iters=100000', '--eval_interval=100000',
            '--gradient_accumulation_steps=2']
    procs = launch_ddp(*args, f'--out_dir={tmp_path / "two"}')
    first = wait_for(procs[0], 'iter 5:')
    procs[1].send_signal(signal.SIGTERM)
    (out, err), (out1, err1) = finish(procs, timeout=60)
    assert [p.returncode for p in procs] == [0, 0], (err, err1)
    out = first + out
    assert 'checkpoint saved' in out and ', 2 processes' in out and out1 == ''  # process 0 alone prints
    assert out.count('preparing') == 1
    assert sorted(os.listdir(tmp_path / 'shakespeare_char')) == ['meta.json', 'train.bin', 'val.bin']  # no temporaries
    two = torch.load(tmp_path / 'two' / 'ckpt.pt', weights_only=True)
    stopped_at = two['iter_num']
    assert stopped_at >= 6
    ctrl_c_at_step(monkeypatch, stopped_at)  # one process, stopped after the same step
    _, out, _ = train_in_process(*args, f'--out_dir={tmp_path / "one"}')
    assert 'preparing' not in out  # the files the two processes made
    one = torch.load(tmp_path / 'one' / 'ckpt.pt', weights_only=True)
    assert one['iter_num'] == stopped_at and one['model'].keys() == two['model'].keys()
    assert all(one['model'][k].shape == two['model'][k].shape for k in one['model'])  # the same truncations
    assert max((one['model'][k] - two['model'][k]).abs().max().item() for k in one['model']) < 1e-4
    for a, b in zip(records(tmp_path / 'one', 'train'), records(tmp_path / 'two', 'train'), strict=True):
        assert abs(a['loss'] - b['loss']) < 1e-4


def test_ddp_resume_with_dropout_continues_each_process_rng(corpus, tmp_path):
    """Each process draws its own dropout masks (seed + rank) and the checkpoint keeps every process' RNG state, so
    a two-process Spectron run with dropout resumed from its step-4 checkpoint (a branch point, copied as the
    ckpt.pt of another out_dir) repeats the uninterrupted run exactly."""
    common = [*TINY, f'--input_file={corpus}', '--mode=spectron', R, '--dropout=0.2', '--gradient_accumulation_steps=2',
              '--lr_schedule=wsd', '--max_iters=10', '--eval_interval=10']
    run_ddp(*common, f'--out_dir={tmp_path / "straight"}', '--save_at=4')
    rng = torch.load(tmp_path / 'straight' / 'ckpt_4.pt', weights_only=True)['rng']
    assert len(rng) == 2 and not torch.equal(rng[0]['cpu'], rng[1]['cpu'])  # the two processes' masks differ
    os.mkdir(tmp_path / 'resumed')
    shutil.copy(tmp_path / 'straight' / 'ckpt_4.pt', tmp_path / 'resumed' / 'ckpt.pt')
    run_ddp(f'--out_dir={tmp_path / "resumed"}', '--device=cpu', '--init_from=resume')
    a, b = records(tmp_path / 'straight', 'train')[4:], records(tmp_path / 'resumed', 'train')
    assert [r['iter'] for r in a] == [r['iter'] for r in b] == list(range(4, 10))
    assert [r['loss'] for r in a] == [r['loss'] for r in b]
    assert records(tmp_path / 'straight', 'eval')[-1] == records(tmp_path / 'resumed', 'eval')[-1]


# -----------------------------------------------------------------------------
# the experiment runner

def test_experiment_runner_resumes_an_unfinished_run_and_skips_a_finished_one(corpus, tmp_path, monkeypatch):
    """experiments/lib.sh's train_all: one run per line (blank lines and trailing blanks are no runs); it resumes a
    run that has only a checkpoint (as Ctrl-C leaves it), passing the run's own line again (flags equal to the
    checkpoint's: allowed), and rerun, it skips a run whose log has its summary. A run's line says how many of those
    left to do are done."""
    args = [*TINY, f'--input_file={corpus}', '--mode=nfw', R, '--max_iters=6', '--eval_interval=3', '--seed=2']
    jobs = f"\n{tmp_path}/b {' '.join(args)} \n\n"
    ctrl_c_at_step(monkeypatch, 3)
    assert 'stopped by a signal after step 3' in continue_run(tmp_path / 'b', *args)

    def train_all():
        p = subprocess.run(['bash', '-c', 'source experiments/lib.sh && train_all'], input=jobs, cwd=REPO, text=True,
                           capture_output=True, timeout=300, env=dict(ENV, JOBS='2', PYTHON=sys.executable))
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    out = train_all()
    assert out.count('step 6: train loss') == 1 and '[1 of 1 done, ETA 0:00]' in out, out
    assert [(r['iter'], r['seed']) for r in records(tmp_path / 'b', 'config')] == [(0, 2), (3, 2)]  # resumed at 3
    assert len(records(tmp_path / 'b', 'summary')) == 1
    assert train_all().strip() == f'already done: {tmp_path}/b'


def test_experiment_runner_resumes_an_interrupted_branch_as_the_straight_branch(corpus, tmp_path, monkeypatch):
    """A branch stopped by Ctrl-C has a checkpoint of its own: train_all resumes it from that, without its line's
    --init_from=branch and --branch_from (train.py refuses a resume that names a source), and it ends where the
    branch run through in one go ends."""
    wsd = ['--mode=nfw', R, '--lr_schedule=wsd', '--eval_interval=3', '--seed=2']
    train(corpus, tmp_path / 'long', *wsd, '--max_iters=10', '--save_at=4')
    line = [*TINY, f'--input_file={corpus}', *wsd, '--max_iters=7', '--init_from=branch',
            f'--branch_from={tmp_path / "long" / "ckpt_4.pt"}']
    train(corpus, tmp_path / 'straight', *line)
    ctrl_c_at_step(monkeypatch, 1)
    assert 'stopped by a signal after step 5' in continue_run(tmp_path / 'b', *line)
    p = subprocess.run(['bash', '-c', 'source experiments/lib.sh && train_all'], input=f"{tmp_path}/b {' '.join(line)}",
                       cwd=REPO, text=True, capture_output=True, timeout=300, env=dict(ENV, PYTHON=sys.executable))
    assert p.returncode == 0 and 'FAILED' not in p.stdout, p.stdout + p.stderr
    assert [r['init_from'] for r in records(tmp_path / 'b', 'config')] == ['scratch', 'branch', 'resume']
    assert records(tmp_path / 'b', 'eval')[-1] == records(tmp_path / 'straight', 'eval')[-1]


# -----------------------------------------------------------------------------
# prepare_data.py: corpora, tokenizers and folders of works

def test_char_and_bpe_preparation_round_trip(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    path = tmp_path / 'c.txt'
    path.write_text(text)
    for tokenizer in ('char', 'gpt2'):
        out = prepare_data.prepare(str(path), tokenizer)
        codec = prepare_data.Codec(prepare_data.load_meta(out))
        assert codec.decode(codec.encode(text)) == text
        tokens = np.concatenate([np.fromfile(os.path.join(out, f'{s}.bin'), dtype=np.uint16) for s in ('train', 'val')])
        assert codec.decode(tokens.tolist()) == text  # the files hold the whole corpus, in order
    assert codec.meta['vocab_size'] == 50257 and len(codec.encode(text)) < len(text) / 2  # BPE really merged


def test_offline_bpe_failure_is_one_clear_line(monkeypatch):
    def offline(name):
        raise ConnectionError("no network")
    monkeypatch.setattr(tiktoken, 'get_encoding', offline)
    with pytest.raises(prepare_data.DataError, match='TIKTOKEN_CACHE_DIR.*--tokenizer=char'):
        prepare_data.gpt2_encoding()


def test_vocabulary_too_large_for_uint16_is_rejected(tmp_path):
    path = tmp_path / 'wide.txt'
    path.write_text(''.join(chr(0x10000 + i) for i in range(70000)), encoding='utf-8')
    with pytest.raises(prepare_data.DataError, match='do not fit the uint16'):
        prepare_data.prepare(str(path), 'char')


def test_shipped_corpus_is_the_canonical_tinyshakespeare():
    assert prepare_data.sha256_of(prepare_data.DEFAULT_INPUT) == \
        '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'


def test_tokenised_own_corpus_is_ignored_by_git(tmp_path):
    """A user's corpus in the repo is tokenised beside it, into NAME_char/ or NAME_gpt2/, which git ignores."""
    if not shutil.which('git') or not os.path.exists(os.path.join(REPO, '.git')):
        pytest.skip('not a git checkout')
    for path in ('my_corpus_char/train.bin', 'my_corpus_gpt2/meta.json', 'notes/essays_char/val.bin'):
        p = subprocess.run(['git', 'check-ignore', '-q', path], cwd=REPO)
        assert p.returncode == 0, f'{path} is not ignored'


def works_folder(path, works, held_out):
    """A folder corpus of works {name: text}, holding out the names in held_out (and a README, which is no work)."""
    path.mkdir()
    for name, text in works.items():
        (path / name).write_text(text)
    (path / 'README.md').write_text('not a work\n')
    (path / prepare_data.VAL_FILES).write_text('\n'.join(held_out) + '\n')
    return str(path)


def decoded(data_dir, split):
    codec = prepare_data.Codec(prepare_data.load_meta(data_dir))
    return codec.decode(np.fromfile(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16).tolist())


def test_a_folder_corpus_holds_out_whole_works_and_is_remade_when_they_change(tmp_path):
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
    train(folder, tmp_path / 'run', '--mode=dense', '--max_iters=2', '--eval_interval=2')  # train.py takes a folder
    assert records(tmp_path / 'run', 'eval')[-1]['iter'] == 2


def test_the_complete_works_hold_out_four_whole_plays_a_tenth_of_the_corpus(tmp_path):
    """The shipped folder, prepared as train.py would: train is the 38 other works, val the 4 held-out plays, no
    200-character stretch of which is anywhere in train."""
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
