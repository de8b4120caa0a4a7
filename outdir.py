"""
What train.py writes into out_dir, written so that nothing is half-written, silently overwritten or interleaved:
a lock held by the live run, atomic files, and the keep_last checkpoint rotation.
A file that cannot be written (a full disk, a file-size limit) ends the run with one line naming it, exit status 1:
the file it was to replace stays whole and its temporary file goes.
"""
import contextlib
import fcntl
import glob
import json
import os

import numpy as np

from configurator import die


def cannot_write(path, error, note=''):
    """A write that failed for want of space (or any OS reason): one line naming the file, exit status 1."""
    die(f"cannot write {path}: {error.strerror or error}{note}", status=1)


def atomic_save(obj, path, saver):
    """Write to a temporary file, fsync, then rename: a crash, or a reader in another process, finds either the old
    file or the new, never half. The temporary name is the writer's own, so concurrent writers cannot mix."""
    tmp = f'{path}.{os.getpid()}.tmp'
    try:
        with open(tmp, 'wb') as f:
            saver(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:  # torch.save reports a failed write as a RuntimeError raised while handling the OSError
        with contextlib.suppress(OSError):
            os.remove(tmp)
        os_error = next((x for x in (e, e.__cause__, e.__context__) if isinstance(x, OSError)), None)
        if os_error is None:
            raise
        cannot_write(path, os_error, f"; the previous {os.path.basename(path)} is kept" if os.path.exists(path) else '')


def append_line(path, text):
    """One log line, appended; a failed write ends the run as atomic_save's do."""
    try:
        with open(path, 'a') as f:
            f.write(text + '\n')
    except OSError as e:
        cannot_write(path, e)


def add_summary(out_dir, ckpt):
    """A run killed between its last checkpoint and its summary line gets the summary, from the checkpoint, so that
    experiments/lib.sh counts it as done. (A log that has its summary, or no log at all, is left as it is.)"""
    log_path = os.path.join(out_dir, 'log.jsonl')
    if not os.path.exists(log_path):
        return
    with open(log_path) as f:
        lines = [line for line in f if line.endswith('\n')]  # a line cut short by the kill goes
    if any(json.loads(line)['kind'] == 'summary' for line in lines):
        return
    summary = dict(kind='summary', iter=ckpt['iter_num'], seconds=ckpt.get('seconds', 0.0),
                   spectra_seconds=ckpt.get('spectra_seconds', 0.0), skipped=ckpt['skipped'])
    atomic_save(''.join(lines) + json.dumps(summary) + '\n', log_path, lambda text, f: f.write(text.encode()))


def claim(out_dir, fresh, overwrite):
    """Before any work: out_dir must be writable, not in use by a live run, and (fresh: init_from=scratch) hold no
    checkpoint that the run would silently replace unless overwrite. Returns the lock, to be kept open for the whole
    run. The lock is the kernel's (flock), so it goes with its process however that ends, kill -9 included."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        lock = open(os.path.join(out_dir, 'lock'), 'a+')
    except OSError as e:
        die(f"cannot write to out_dir {out_dir}: {e.strerror or e}")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        die(f"out_dir {out_dir} is in use by a running train.py (pid {lock.read().strip() or '?'}); "
            f"wait for it to end or choose another --out_dir")
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    for tmp in glob.glob(os.path.join(out_dir, '*.tmp')):  # a killed run's unfinished writes: no one else's now
        os.remove(tmp)
    ckpt_path = os.path.join(out_dir, 'ckpt.pt')
    if fresh and os.path.exists(ckpt_path):
        if not overwrite:
            die(f"{ckpt_path} exists: continue it with --init_from=resume, keep it with another --out_dir, "
                f"or replace it with --overwrite=True")
        for old in glob.glob(os.path.join(out_dir, 'ckpt*.pt')):  # keep_last's too: they belong to the old run
            os.remove(old)
    return lock


def rotate(out_dir, keep_last):
    """keep_last: shift ckpt.1.pt -> ckpt.2.pt ..., then hard-link the current ckpt.pt as ckpt.1.pt, so that a
    ckpt.pt exists at every moment; the caller's atomic rename then replaces it."""
    ckpt_path = os.path.join(out_dir, 'ckpt.pt')
    older = lambda k: os.path.join(out_dir, f'ckpt.{k}.pt')
    if keep_last and os.path.exists(ckpt_path):
        for k in range(keep_last, 1, -1):
            if os.path.exists(older(k - 1)):
                os.replace(older(k - 1), older(k))
        if os.path.exists(older(1)):
            os.remove(older(1))
        os.link(ckpt_path, older(1))


def save_spectra(spectra, path):
    """spectra.npz from {'steps': [step, ...], name: [its singular values at each step, ...]}, every row padded with
    NaN to the widest (TSVD layers shrink)."""
    width = max(len(s) for k, rows in spectra.items() if k != 'steps' for s in rows)
    pad = lambda rows: np.stack([np.pad(s, (0, width - len(s)), constant_values=np.nan) for s in rows])
    arrays = {k: np.array(v) if k == 'steps' else pad(v).astype(np.float32) for k, v in spectra.items()}
    atomic_save(arrays, path, lambda a, f: np.savez(f, **a))


def logs_before(out_dir, iter_num):
    """What a resumed run keeps of out_dir's log.jsonl lines and spectra.npz rows: those before its checkpoint's
    step (the rest is redone). A line cut short by a kill has no newline yet: it goes too."""
    keep, spectra = [], {}
    log_path, spectra_path = os.path.join(out_dir, 'log.jsonl'), os.path.join(out_dir, 'spectra.npz')
    if os.path.exists(log_path):
        with open(log_path) as f:
            keep = [line for line in f if line.endswith('\n') and json.loads(line).get('iter', 0) < iter_num]
    if os.path.exists(spectra_path):
        with np.load(spectra_path) as z:
            spectra = {k: list(z[k][z['steps'] < iter_num]) for k in z.files}
    return keep, spectra
