"""
Config files and --key=value overrides in nanoGPT's style (python train.py config/x.py --batch_size=32 --rank=0.25),
applied in order: a config file is Python that assigns keys, a value a Python literal (a string may be bare); a key
must be the script's and keep its type. Also the one place where the scripts' errors become one line, and the checks
that make them: need, at_least, inherit (the values a continued run takes from its saved config), check (train.py's).
"""
import ast
import difflib
import glob
import os
import sys


def die(msg, status=2):
    """Bad input: one line on stderr and exit status 2 (1: a failure while running, such as a full disk)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(status)


def need(ok, msg):
    """Bad input unless ok: msg as the one line (die)."""
    if not ok:
        die(msg)


def at_least(least, values, *keys):
    """Bad input unless values[key] >= least for each key (values: the script's globals())."""
    for key in keys:
        need(values[key] >= least, f"{key} must be >= {least}, got {values[key]}")


# a resume or a branch continues the run its checkpoint holds: each key is that run's unless given, and a flag may
# differ from it only for these, which decide where the run ends and what it reports (any other would change the run)
MAY_CHANGE = ('max_iters', 'eval_interval', 'log_interval', 'eval_iters', 'spectra_interval', 'spectra_early',
              'device', 'dtype', 'compile', 'skip_nonfinite')
OWN = ('out_dir', 'init_from', 'branch_from', 'svd_from', 'overwrite')  # a continuation's own: never inherited
SVD_KEYS = ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'input_file', 'tokenizer')  # init_from=svd's


def inherit(saved, given, config_keys, init_from, source):
    """The values a run takes from a saved config (source's): a resume or branch every key but its own (a branch
    picks its own save_at), svd the model's shape and corpus. Given ones may differ only for MAY_CHANGE's keys in a
    continuation, not at all for svd, since any other would make it another run."""
    continuing = init_from in ('resume', 'branch')
    own = OWN + ('save_at',) * (init_from == 'branch')
    keys = [k for k in saved if k in config_keys and k not in own] if continuing else SVD_KEYS
    for key in keys:
        need(key not in given or given[key] == saved[key] or continuing and key in MAY_CHANGE,
             f"{source} has {key}={saved[key]!r}; cannot {init_from} it with {key}={given.get(key)!r}")
    return {key: given.get(key, saved[key]) for key in keys}


def stable_steps(n, decay_frac):
    """wsd: an n-step run's decay starts here. It depends on n alone, so runs of any length share a stable phase."""
    return n - max(1, round(decay_frac * n))


def check(c, checkpoint=None, source=None):
    """Bad input in train.py's resolved config c (a continuation's: and the checkpoint it continues, source's): each
    value's own check, then whether the schedule admits them. Returns the wsd decay start and save_at's steps."""
    need(all(s.strip().isdigit() for s in c['save_at'].split(',') if s.strip()),
         f"save_at takes steps (1600,3200): {c['save_at']!r}")
    save_steps = sorted(int(s) for s in c['save_at'].split(',') if s.strip())  # wsd branch points
    need(c['learning_rate'] > 0, f"learning_rate must be > 0, got {c['learning_rate']}")
    need(0 <= c['dropout'] < 1, f"dropout must be in [0, 1), got {c['dropout']}")
    at_least(1, c, 'batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'eval_interval', 'log_interval',
             'eval_iters', 'gradient_accumulation_steps')
    at_least(0, c, 'max_iters', 'warmup_iters', 'lr_decay_iters', 'spectra_interval', 'spectra_early', 'min_lr',
             'grad_clip', 'train_tokens', 'weight_decay', 'spectron_wd')  # (AdamW checks only its default's decay)
    need(c['lr_schedule'] in ('cosine', 'wsd') and c['decay_shape'] in ('linear', 'sqrt') and 0 < c['decay_frac'] <= 1,
         "lr_schedule must be cosine|wsd, decay_shape linear|sqrt, decay_frac in (0, 1]")
    wsd, max_iters = c['lr_schedule'] == 'wsd', c['max_iters']
    decay_start = stable_steps(max_iters, c['decay_frac'])
    need(not wsd or not c['lr_decay_iters'] and (decay_start >= c['warmup_iters'] or not c['decay_lr']),
         "wsd decays over the last decay_frac of max_iters: no lr_decay_iters, and not inside the warmup")
    need(not save_steps or wsd and 0 < save_steps[0] <= save_steps[-1] <= decay_start,
         f"save_at keeps branch points in the stable phase of a wsd run (steps 1..{decay_start})")
    if checkpoint:  # a continuation of a wsd run must be the straight run from its step k on
        saved, k = checkpoint['config'], checkpoint['iter_num']
        need(c['init_from'] == 'resume' or wsd and k <= max_iters, f"{source} (step {k}): a branch continues a wsd "
             f"run from a step in its stable phase, up to max_iters={max_iters}")
        need(not wsd or max_iters == saved['max_iters'] or k <= min(stable_steps(saved['max_iters'], c['decay_frac']),
                                                                    decay_start),
             f"{source} is at step {k}, past the stable phase its run shares with max_iters={max_iters}: continue it "
             f"with max_iters={saved['max_iters']}, or branch from an earlier checkpoint")
    need(not os.path.isfile(c['out_dir']), f"out_dir {c['out_dir']} is a file, not a folder")
    need(checkpoint or c['overwrite'] or not glob.glob(os.path.join(c['out_dir'], 'ckpt*.pt')),
         f"{c['out_dir']} holds checkpoints: continue with --init_from=resume, or replace them with --overwrite=True")
    return decay_start, save_steps


def catch_setup_errors():
    """From here until the script sets setting_up = False, an uncaught error is bad input (one_line_errors)."""
    global setting_up
    setting_up, sys.excepthook = True, one_line_errors


def one_line_errors(kind, error, traceback):
    """sys.excepthook, for an error nothing caught: during set-up, bad input (one line, exit 2; Ctrl-C 130); later, a
    file that cannot be written (a full disk: one line, exit 1, the last good one kept). Else a bug: its traceback."""
    cause = next((e for e in (error, error.__cause__, error.__context__) if isinstance(e, OSError)), None)
    if setting_up and isinstance(error, (ValueError, RuntimeError, OSError, AssertionError, KeyboardInterrupt)):
        die(f"{cause.strerror}: {cause.filename}" if cause and cause.filename else str(error).strip().split('\n')[0]
            or f"{kind.__name__} during set-up; nothing was written", 130 if kind is KeyboardInterrupt else 2)
    if cause is not None:
        die(f"cannot write {cause.filename or 'its output'}: {cause.strerror}; the last good checkpoint is kept", 1)
    sys.__excepthook__(kind, error, traceback)


def coerce(defaults, key, value, int_or_float):
    """value, checked against the type of defaults[key]; keys in int_or_float take either (rank: 64 or 0.25)."""
    if key not in defaults:
        match = difflib.get_close_matches(key, defaults, n=1)
        die(f"unknown config key {key!r}" + (f" (did you mean {match[0]!r}?)" if match else ''))
    want = type(defaults[key])
    ok = (int, float) if key in int_or_float else (float, int) if want is float else (want,)
    if not isinstance(value, ok) or (want is not bool and isinstance(value, bool)):
        die(f"{key} must be {' or '.join(t.__name__ for t in ok)}, got {value!r}")
    return float(value) if want is float and key not in int_or_float else value  # a rank of 64 stays a count


def print_help(defaults, notes, source):
    """notes first (so that `--help | head` shows them), then the script's config lines: key = default  # meaning."""
    print(f"usage: python {os.path.basename(source)} [config_file.py ...] [--key=value ...]\n{notes}".rstrip())
    lines = open(source, encoding='utf-8').read().splitlines()
    block = []
    for line in lines:  # the first run of key lines and comments
        if line.split(' = ')[0] in defaults or block and line.startswith('#'):
            block.append(line)
        elif block:
            break
    while block and block[-1].startswith('#'):  # not the comments after its last key
        block.pop()
    print('\n'.join(block) or '\n'.join(f"{k} = {v!r}" for k, v in defaults.items()))


def parse_args(defaults, argv, int_or_float=(), notes='', source=None):
    """The overrides that config files and --key=value arguments make to defaults, as a dict; --help: print_help."""
    overrides = {}
    for arg in argv:
        if arg in ('-h', '--help'):
            try:
                print_help(defaults, notes, source or sys.modules['__main__'].__file__)
                sys.stdout.flush()  # here, not at exit, so that a closed pipe raises inside the try
            except BrokenPipeError:  # `--help | head` read what it wanted: no error (Python's docs, "SIGPIPE")
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        namespace, (key, eq, text) = {}, arg[2:].partition('=')
        if not arg.startswith('--'):  # a config file
            try:
                exec(open(arg).read(), namespace)
            except OSError:
                die(f"config file not found: {arg}")
            except Exception as e:
                die(f"config file {arg} does not run: {type(e).__name__}: {e}")
        elif not eq:
            die(f"expected --key=value, got {arg!r}")
        else:
            try:
                namespace[key] = text if isinstance(defaults.get(key), str) else ast.literal_eval(text)
            except (ValueError, SyntaxError):
                namespace[key] = text  # a bare word: a string, which coerce accepts only where one is expected
        overrides.update({k: coerce(defaults, k, v, int_or_float) for k, v in namespace.items() if k[:2] != '__'})
    return overrides
