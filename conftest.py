"""What every test file shares: the repo's path, a tiny corpus, scripts run as a user runs them, and the one check
that bad input is refused as the repo promises (exit 2, one line on stderr, no traceback)."""
import contextlib
import io
import json
import os
import runpy
import signal
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(REPO, 'experiments'))  # ladder.py, table.py, compress.py ... import as modules
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')  # one thread: tests run beside each other
torch.set_num_threads(1)  # in this process too: a run in_process computes what one in a subprocess does, to the bit


def run(script, *args, check=True, timeout=300):
    """A repo script (path relative to the repo) in a subprocess, as on a command line; check: it must exit 0."""
    p = subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], capture_output=True, text=True,
                       env=ENV, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def assert_refused(returncode, stderr, word=''):
    """Bad input: exit status 2, one line on stderr naming `word` (a key word, not the wording), no traceback."""
    assert returncode == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and 'Traceback' not in stderr, stderr
    assert word.lower() in stderr.lower(), stderr


def records(out_dir, kind):
    """The log.jsonl records of one kind ('config', 'train', 'eval', 'summary') of a run."""
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['kind'] == kind]


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """The first 40k characters of TinyShakespeare: enough to learn something in 50 steps."""
    path = tmp_path_factory.mktemp('corpus') / 'tiny.txt'
    with open(os.path.join(REPO, 'data', 'tinyshakespeare.txt')) as f:
        path.write_text(f.read()[:40000])
    return str(path)


def open_fds():
    """{fd: what it points to} of this process (listing /proc/self/fd opens one more fd, which comes and goes)."""
    found = {}
    for fd in os.listdir('/proc/self/fd'):
        try:
            found[int(fd)] = os.readlink(f'/proc/self/fd/{fd}')
        except OSError:
            pass
    return found


def in_process(script, *args):
    """(exit status, stdout, stderr) of a repo script run as __main__ in this process, with args as its command line:
    no interpreter and torch import per run. It ends as a process would: an error nothing caught goes to
    sys.excepthook (the scripts' one-line errors), and the status after a traceback is 1. sys.argv, sys.excepthook,
    the SIGINT/SIGTERM handlers and any folder left open (train.py's out_dir lock, which a process' end releases)
    are restored afterwards."""
    argv, hook = sys.argv, sys.excepthook
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    fds, out, err, code = open_fds(), io.StringIO(), io.StringIO(), 0
    sys.argv = [script, *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                try:
                    runpy.run_path(os.path.join(REPO, script), run_name='__main__')
                except SystemExit:
                    raise
                except BaseException as e:  # what Python does with an error nothing caught
                    sys.excepthook(type(e), e, e.__traceback__)
                    code = 1
            except SystemExit as e:  # sys.exit('message'): Python prints it, status 1
                code = 0 if e.code is None else e.code if isinstance(e.code, int) else print(e.code, file=err) or 1
    finally:
        sys.argv, sys.excepthook = argv, hook
        for s, h in handlers.items():
            signal.signal(s, h)
        for fd, target in open_fds().items():
            if fds.get(fd) != target and os.path.isdir(target):
                os.close(fd)
    return code, out.getvalue(), err.getvalue()


def train_in_process(*args):
    """train.py with these arguments, in this process: (exit status, stdout, stderr)."""
    return in_process('train.py', *args)
