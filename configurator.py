"""
Config overrides in nanoGPT's style, shared by train.py, sample.py and bench.py:

    python train.py config/shakespeare_char_cpu.py --batch_size=32 --rank=0.25

Arguments apply in order. A config file is Python that assigns keys; a --key=value value is a Python literal
(strings may be bare). Every key must be one of the script's defaults and keep its type (an int passes for a
float); anything else is a one-line error with exit status 2, before any work starts.
"""
import ast
import difflib
import sys


def die(msg):
    """Bad input: one line on stderr, exit status 2."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


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
    return float(value) if want is float else value


def parse_args(defaults, argv, int_or_float=(), notes=''):
    """The overrides that config files and --key=value arguments make to defaults, as a dict (--help: notes last)."""
    overrides = {}
    for arg in argv:
        if arg in ('-h', '--help'):
            print(f"usage: python {sys.argv[0]} [config_file.py ...] [--key=value ...]; keys and defaults:")
            print('\n'.join(f"  --{key}={value!r}" for key, value in defaults.items()))
            if notes:
                print(notes)
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
