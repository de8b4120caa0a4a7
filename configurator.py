"""
The run's configuration, before any work starts: config files and --key=value overrides in nanoGPT's style
(parse_args, shared by train.py, sample.py and bench.py), and the checks of train.py's config.

    python train.py config/shakespeare_char_cpu.py --batch_size=32 --rank=0.25

Arguments apply in order. A config file is Python that assigns keys; a --key=value value is a Python literal
(strings may be bare). Every key must be one of the script's defaults and keep its type (an int passes for a
float); anything else is a one-line error with exit status 2. train.py's config then goes through load_checkpoint
(the keys a checkpoint fixes, on resume or init_from=svd) and validate (ranges and combinations), which fail the
same way, and with_mode_defaults (each mode's tuned LR), all through train_config. What needs the data or the DDP
processes, train.py checks.
"""
import ast
import difflib
import io
import math
import os
import sys
import tokenize

import torch

import lowrank


def die(msg, status=2):
    """Bad input: one line on stderr, exit status 2 (status 1: a failure while running, such as a full disk)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(status)


def closest(word, choices):
    match = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def coerce(defaults, key, value, int_or_float=()):
    """value, checked against the type of defaults[key]; keys in int_or_float take either (rank: 64 or 0.25)."""
    if key not in defaults:
        die(f"unknown config key {key!r}{closest(key, defaults)}")
    want = type(defaults[key])
    ok = (int, float) if key in int_or_float else (float, int) if want is float else (want,)
    if not isinstance(value, ok) or (want is not bool and isinstance(value, bool)):
        die(f"{key} must be {' or '.join(t.__name__ for t in ok)}, got {value!r}")
    return float(value) if want is float and key not in int_or_float else value  # a rank of 64 stays a count


def key_comments(path):
    """{key: (meaning, heading)} of a script's top-level `key = value  # meaning` lines, heading being the whole-line
    comments just above the key (its group's title, '' if none). Read with tokenize: a '#' in a string is no comment."""
    try:
        with open(path, 'rb') as f:
            tokens = [t for t in tokenize.tokenize(f.readline) if t.type not in (tokenize.NL, tokenize.ENCODING)]
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):  # no source (None), or none we can read: no help
        return {}
    found, heading = {}, []
    for i, t in enumerate(tokens):
        if t.type == tokenize.COMMENT and t.start[1] == 0:
            heading += [t.string.lstrip('# ')] if t.string.strip('# -') else []
        elif t.type == tokenize.NAME and t.start[1] == 0 and tokens[i + 1].string == '=':
            line = [u for u in tokens[i:] if u.start[0] == t.start[0]]
            meaning = next((u.string.lstrip('# ') for u in line if u.type == tokenize.COMMENT), '')
            found.setdefault(t.string, (meaning, '; '.join(heading)))  # the first: a default, not a reuse
            heading = []
        elif t.type != tokenize.COMMENT:
            heading = []
    return found


def print_help(defaults, usage, notes, source):
    """Each key with its default and its meaning (source's trailing comment), under its group's heading."""
    print(f"usage: python {os.path.basename(sys.argv[0])} {usage}; keys, defaults and meanings:")
    comments = key_comments(source)
    for key, value in defaults.items():
        meaning, heading = comments.get(key, ('', ''))
        if heading:
            print(f"# {heading}")
        print(f"  {f'--{key}={value!r}':<30} {meaning}".rstrip())
    if notes:
        print(notes)


def parse_args(defaults, argv, int_or_float=(), notes='', usage='[config_file.py ...] [--key=value ...]', source=None):
    """The overrides that config files and --key=value arguments make to defaults, as a dict. --help lists the keys
    with the comments of source (default: the script run), then notes."""
    overrides = {}
    for arg in argv:
        if arg in ('-h', '--help'):
            try:
                print_help(defaults, usage, notes, source or getattr(sys.modules['__main__'], '__file__', None))
                sys.stdout.flush()  # here, not at exit, so that a closed pipe raises inside the try
            except BrokenPipeError:  # `--help | head` read what it wanted: no error (Python's docs, "SIGPIPE")
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush fails no more
            sys.exit(0)
        if not arg.startswith('--'):
            namespace = {}
            try:
                with open(arg) as f:
                    exec(f.read(), namespace)
            except OSError:
                die(f"config file not found: {arg}")
            except Exception as e:
                die(f"config file {arg} does not run: {type(e).__name__}: {e}")
            for key, value in namespace.items():
                if not key.startswith('__'):
                    overrides[key] = coerce(defaults, key, value, int_or_float)
            continue
        key, eq, text = arg[2:].partition('=')
        if not eq:
            die(f"expected --key=value, got {arg!r}")
        try:
            value = text if isinstance(defaults.get(key), str) else ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word: a string, which coerce accepts only where a string is expected
        overrides[key] = coerce(defaults, key, value, int_or_float)
    return overrides


# -----------------------------------------------------------------------------
# train.py's config, checked before any work: a checkpoint's keys, ranges and combinations, the mode's LR

MODEL_KEYS = ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'input_file', 'tokenizer')  # shape and corpus
RESUME_KEYS = ('mode', 'rank', *MODEL_KEYS, 'train_tokens', 'spectron_ortho', 'spectron_renorm', 'lr_schedule',
               'decay_frac', 'decay_shape')  # a resume goes on as saved (max_iters may move: check_continuation)
BRANCH_OWN = ('out_dir', 'init_from', 'branch_from', 'max_iters', 'overwrite', 'save_at', 'keep_last', 'device',
              'dtype', 'compile')  # all a branch may choose; everything else is its checkpoint's


def train_config(defaults, overrides):
    """(cfg, checkpoint, dense): train.py's whole config, checked; the checkpoint that init_from=resume or branch
    continues (a resume: the optimizer state depends on RESUME_KEYS); the dense one init_from=svd factorizes (its
    shape and corpus; mode and rank are the run's)."""
    cfg, checkpoint, dense = {**defaults, **overrides}, None, None
    if cfg['init_from'] == 'resume':
        checkpoint = load_checkpoint(os.path.join(cfg['out_dir'], 'ckpt.pt'), RESUME_KEYS, 'resume', cfg, overrides,
                                     defaults)
    elif cfg['init_from'] == 'branch' and cfg['branch_from']:  # the whole config but the branch's own end and outputs
        checkpoint = load_checkpoint(cfg['branch_from'], [k for k in defaults if k not in BRANCH_OWN], 'branch from',
                                     cfg, overrides, defaults)
    elif cfg['init_from'] == 'svd' and cfg['svd_from']:
        dense = load_checkpoint(os.path.join(cfg['svd_from'], 'ckpt.pt'), MODEL_KEYS, 'factorize', cfg, overrides,
                                defaults)
    cfg = validate(with_mode_defaults(cfg, overrides, checkpoint and checkpoint['config']), checkpoint)
    return cfg, checkpoint, dense


def read_checkpoint(path):
    """(checkpoint, the layer class of its mode) from a nanoLowRank ckpt.pt, or one line and exit 2"""
    if not os.path.isfile(path):
        die(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
        return ckpt, lowrank.MODES[ckpt['config']['mode']].layer
    except Exception as e:
        die(f"{path} is not a readable nanoLowRank checkpoint (truncated or foreign?): {type(e).__name__}")


def load_checkpoint(path, keys, verb, cfg, overrides, defaults):
    """A checkpoint whose config keys the run takes into cfg (before validate, so that a rank is checked against the
    saved n_embd); a conflicting flag is a mistake, not a wish. Checkpoints older than a key have its default."""
    if not os.path.isfile(path):
        die(f"init_from={cfg['init_from']} but there is no checkpoint at {path}")
    ckpt, layer = read_checkpoint(path)
    saved = ckpt['config']
    if cfg['init_from'] == 'svd' and layer is not lowrank.DenseLinear:
        die(f"{path} is from a mode={saved['mode']} run; init_from=svd factorizes a dense (or muon) one")
    for k in keys:
        was = saved.get(k, defaults[k])
        if k in overrides and overrides[k] != was:
            die(f"checkpoint {path} has {k}={was!r}; cannot {verb} it with {k}={overrides[k]!r}")
        cfg[k] = was
    return ckpt


def decay_start(c):
    """wsd: the step its decay starts, max_iters − round(decay_frac · max_iters) (Python's round; at least 1 step
    of decay). It depends on max_iters alone, so that runs of any length share their stable phase."""
    return c['max_iters'] - max(1, round(c['decay_frac'] * c['max_iters']))


def steps_to_save(c):
    """save_at's steps, as a set: wsd branch points, each in the stable phase (a branch from one can decay anew)."""
    try:
        steps = {int(s) for s in c['save_at'].split(',') if s.strip()}
    except ValueError:
        die(f"save_at must be steps separated by commas ('1600,3200'), got {c['save_at']!r}")
    if steps and c['lr_schedule'] != 'wsd':
        die("save_at keeps branch points of a wsd run: add --lr_schedule=wsd")
    for step in sorted(steps):
        if not 0 < step <= decay_start(c):
            die(f"save_at step {step} is not in the stable phase (steps 1 to {decay_start(c)}) of this "
                f"{c['max_iters']}-step run")
    return steps


def check_continuation(ckpt, c):
    """A resume or branch of a wsd run continues its LR schedule exactly: at the checkpoint's step k and after, the
    factors must be those of the run it was saved from. With max_iters unchanged they are; with another max_iters
    (a branch), k must be in the stable phase of both runs. A branch continues wsd runs only."""
    saved, k = ckpt['config'], ckpt['iter_num']
    path = c['branch_from'] if c['init_from'] == 'branch' else os.path.join(c['out_dir'], 'ckpt.pt')
    if c['init_from'] == 'branch':
        if saved.get('lr_schedule', 'cosine') != 'wsd':
            die(f"{path} is from a lr_schedule={saved.get('lr_schedule', 'cosine')} run; a branch continues a wsd run")
        if k > c['max_iters']:
            die(f"{path} is at step {k}, past the branch's end max_iters={c['max_iters']}")
    if c['lr_schedule'] != 'wsd' or c['max_iters'] == saved['max_iters']:
        return
    if k > decay_start(saved):
        die(f"{path} is at step {k}, in its run's decay (from step {decay_start(saved)}): continue it only with "
            f"max_iters={saved['max_iters']}, or branch from a stable-phase checkpoint")
    if k > decay_start(c):
        die(f"max_iters={c['max_iters']} starts the decay at step {decay_start(c)}, before {path}'s step {k}: "
            f"a run from it could not be the straight run")


def validate(c, ckpt=None):
    """train.py's ranges and combinations, checked in one place before anything is built (and, given the checkpoint
    of a resume or branch, that the LR schedule goes on as saved)."""
    def need(cond, msg):
        if not cond:
            die(msg)
    need(c['mode'] in lowrank.MODES, f"unknown mode {c['mode']!r}{closest(c['mode'], lowrank.MODES)}; "
                                     f"known modes: {', '.join(lowrank.MODES)}")
    for k in ('batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'eval_interval', 'log_interval',
              'eval_iters', 'gradient_accumulation_steps', 'ns_steps', 'spectron_power_iters', 'rank_interval'):
        need(c[k] >= 1, f"{k} must be >= 1, got {c[k]}")
    for k in ('max_iters', 'warmup_iters', 'lr_decay_iters', 'keep_last', 'spectra_interval', 'spectra_early',
              'min_lr', 'weight_decay', 'grad_clip', 'spectron_wd', 'train_tokens'):
        need(c[k] >= 0, f"{k} must be >= 0, got {c[k]}")
    need(c['train_tokens'] == 0 or c['train_tokens'] > c['block_size'], f"train_tokens={c['train_tokens']} holds "
         f"no training window: one is block_size + 1 = {c['block_size'] + 1} tokens")
    need(c['lr_schedule'] in ('cosine', 'wsd'), f"unknown lr_schedule {c['lr_schedule']!r}: cosine or wsd")
    need(0 < c['decay_frac'] <= 1, f"decay_frac must be in (0, 1], got {c['decay_frac']}")
    need(c['decay_shape'] in ('linear', 'sqrt'), f"unknown decay_shape {c['decay_shape']!r}: linear or sqrt")
    if c['lr_schedule'] == 'wsd':  # its decay ends at max_iters, so that a branch can move it
        need(c['lr_decay_iters'] == 0, "lr_decay_iters is the cosine's: wsd decays over the last decay_frac of "
                                       "max_iters")
        need(decay_start(c) >= c['warmup_iters'] or not c['decay_lr'], f"wsd: the decay would start at step "
             f"{decay_start(c)}, inside the {c['warmup_iters']}-step warmup")
    else:
        c['lr_decay_iters'] = c['lr_decay_iters'] or c['max_iters']  # a short run still decays
    steps_to_save(c)  # save_at's steps, checked
    need(c['n_embd'] % c['n_head'] == 0, f"n_embd={c['n_embd']} is not divisible by n_head={c['n_head']}")
    need(0 <= c['dropout'] < 1, f"dropout must be in [0, 1), got {c['dropout']}")
    for k in ('learning_rate', 'spectron_lr', 'muon_lr'):  # step sizes
        need(c[k] > 0, f"{k} must be > 0, got {c[k]}")
    for k in ('spectron_beta', 'muon_beta'):  # momenta
        need(0 <= c[k] < 1, f"{k} must be in [0, 1), got {c[k]}")
    need(0 < c['energy'] <= 1, f"energy (τ) must be in (0, 1], got {c['energy']}")
    need(c['min_rank'] >= 1, f"min_rank must be >= 1, got {c['min_rank']}")
    layer = lowrank.MODES[c['mode']].layer
    if layer is not lowrank.DenseLinear:  # dense and muon ignore rank, as nanoGPT would
        # every layer's smaller side is n_embd (d×d attention, d×4d MLP)
        try:
            r = lowrank.resolve_rank(c['rank'], c['n_embd'], 4 * c['n_embd'])
        except ValueError as e:
            die(str(e))
        need(not issubclass(layer, lowrank.TSVDLinear) or c['min_rank'] <= r,  # TSVD's truncation floor
             f"min_rank={c['min_rank']} is larger than rank={r}")
    need(c['init_from'] in ('scratch', 'resume', 'svd', 'branch'),
         f"unknown init_from {c['init_from']!r}: scratch, resume, svd or branch")
    need(c['init_from'] != 'branch' or c['branch_from'], "init_from=branch needs --branch_from=OUT_DIR/ckpt_<step>.pt")
    need(c['init_from'] != 'svd' or c['svd_from'], "init_from=svd needs --svd_from=OUT_DIR of the dense run")
    factorized = [m for m, mode in lowrank.MODES.items() if mode.layer is not lowrank.DenseLinear]
    need(c['init_from'] != 'svd' or layer is not lowrank.DenseLinear,
         f"init_from=svd with mode={c['mode']}: a dense model has nothing to factorize (choose {', '.join(factorized)})")
    need(c['tokenizer'] in ('char', 'gpt2'), f"tokenizer must be 'char' or 'gpt2', got {c['tokenizer']!r}")
    need(os.path.exists(c['input_file']), f"corpus not found: {c['input_file']}")  # a file, or a folder of works
    need(c['dtype'] in ('auto', 'float32', 'bfloat16'), f"dtype must be auto, float32 or bfloat16, got {c['dtype']!r}")
    c['device'] = check_device(c['device'])
    if c['compile']:  # inductor needs dynamo support and, on CPU, a C++ compiler
        import shutil
        from torch import _dynamo
        need(_dynamo.is_dynamo_supported(), "compile=True but torch.compile is not supported here")
        need(c['device'] != 'cpu' or any(map(shutil.which, ('g++', 'c++', 'clang++'))),
             "compile=True on CPU needs a C++ compiler (g++ or clang++) on PATH")
    if c['dtype'] == 'auto':  # V100 and T4 emulate bf16 slowly: float32 there
        bf16 = c['device'].startswith('cuda') and torch.cuda.is_bf16_supported(including_emulation=False)
        c['dtype'] = 'bfloat16' if bf16 else 'float32'
    if ckpt is not None:
        check_continuation(ckpt, c)
    return c


def check_device(device):
    """device ('auto': CUDA if there is a GPU, else the CPU), or one line and exit 2 if this machine has none such."""
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.split(':')[0] not in ('cpu', 'cuda', 'mps'):
        die(f"device must be auto, cpu, cuda[:N] or mps, got {device!r}")
    if device.startswith('cuda') and not torch.cuda.is_available():
        die("device=cuda but no CUDA GPU is available")
    if device.startswith('cuda:') and not (device[5:].isdigit() and int(device[5:]) < torch.cuda.device_count()):
        die(f"device={device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device == 'mps' and not torch.backends.mps.is_available():
        die("device=mps but MPS is not available here")
    return device


def short_run_warnings(c):
    """What a valid config may not mean to do: end inside the LR warmup, or a TSVD run end before its first rank
    choice (after_step is called with k = 1 ... max_iters; it truncates at k >= rank_warmup, k % rank_interval == 0)."""
    out = []
    if c['decay_lr'] and 0 < c['max_iters'] <= c['warmup_iters']:
        out.append(f"warning: max_iters={c['max_iters']} <= warmup_iters={c['warmup_iters']}: the run ends inside its "
                   f"LR warmup and never reaches its peak {lowrank.MODES[c['mode']].step_size}")
    first = -(-max(1, c['rank_warmup']) // c['rank_interval']) * c['rank_interval']
    if issubclass(lowrank.MODES[c['mode']].layer, lowrank.TSVDLinear) and 0 < c['max_iters'] < first:
        out.append(f"warning: mode={c['mode']} makes its first rank choice at step {first} (rank_warmup="
                   f"{c['rank_warmup']}, rank_interval={c['rank_interval']}), after max_iters={c['max_iters']}: "
                   f"this run never truncates")
    return out


SPECTRON_WIDTH = 256  # the n_embd at which train.py's spectron_lr was tuned (experiments/tune.sh)


def with_mode_defaults(c, overrides, saved=None):
    """Each mode trains with its own defaults (lowrank.MODES: its tuned LR; TSVD's start rank and τ) unless a value
    is given; a resumed run keeps its checkpoint's (saved). min_lr follows the LR (nanoGPT's LR / 10). The default η
    is scaled to the width, η·√(256/n_embd): the 1000-step η grids of experiments/eta_transfer.sh put the best η
    at about the same value for ranks d/8 to d/2 but ×0.65-0.68 from n_embd 128 to 256, near 1/√2."""
    saved = saved or {}
    if 'spectron_lr' not in overrides:  # Spectron's best η moves with width as about 1/√n_embd, not with rank
        c['spectron_lr'] = saved.get('spectron_lr', c['spectron_lr'] * math.sqrt(SPECTRON_WIDTH / c['n_embd']))
    for k, v in getattr(lowrank.MODES.get(c['mode']), 'defaults', {}).items():  # an unknown mode: validate says so
        if k not in overrides:
            c[k] = saved.get(k, v)
    if 'min_lr' not in overrides:
        keep = 'min_lr' in saved and 'learning_rate' not in overrides
        c['min_lr'] = saved['min_lr'] if keep else c['learning_rate'] / 10
    return c


def modes_help(defaults):
    """--help's list of modes: each one's step size under its one config key, and its other defaults."""
    lines = ["modes (--mode=NAME), each with its step size and the defaults it sets unless given:"]
    for name, m in lowrank.MODES.items():
        values = {**defaults, **m.defaults}
        step = f"{m.step_size}={values[m.step_size]:g}" + (f" × √({SPECTRON_WIDTH}/n_embd)" if m.step_size ==
                                                           'spectron_lr' else '')
        adamw = ("(AdamW, every parameter)" if m.step_size == 'learning_rate' else f"({name.capitalize()}'s peak); "
                 f"learning_rate={values['learning_rate']:g} (AdamW: embeddings, head, norms, biases)")
        rest = ' '.join(f"{k}={v:g}" for k, v in m.defaults.items() if k not in (m.step_size, 'learning_rate'))
        lines.append(f"  {name}: {step} {adamw}{'; ' + rest if rest else ''}")
    return '\n'.join(lines + ["the schedule takes every step size down to min_lr / learning_rate of its peak "
                              "(min_lr: learning_rate / 10 unless set)"])
