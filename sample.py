"""
Sample text from a trained checkpoint.

    python sample.py --out_dir=out --start="ROMEO:" --num_samples=2 --max_new_tokens=300
    python sample.py --start=FILE:prompt.txt     # the prompt from a file

Any bad input (a missing or unreadable checkpoint or prompt file, a prompt with characters the model's vocabulary
lacks, a value out of range, a device this machine lacks) is one line on stderr and exit status 2; --help lists
every key.
"""
import os
import sys

import torch

import configurator
from model import GPT, load_checkpoint
from prepare_data import Codec

out_dir = 'out'  # where ckpt.pt is
start = '\n'  # the prompt, or FILE:path to read it from a file
num_samples = 3  # samples, drawn as one batch
max_new_tokens = 500  # tokens generated after the prompt
temperature = 0.8  # < 1: more conservative, > 1: more random
top_k = 200  # sample among the k most likely tokens only
seed = 1337  # the sampling RNG's seed
device = 'auto'  # auto (CUDA if there is a GPU) | cpu | cuda | cuda:N | mps
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, str))]
configurator.catch_setup_errors()  # until the sampling starts, an error is bad input: one line, exit 2
globals().update(configurator.parse_args({k: globals()[k] for k in config_keys}, sys.argv[1:]))
for key, least in (('num_samples', 1), ('max_new_tokens', 0), ('top_k', 1), ('temperature', 1e-9)):
    if globals()[key] < least:
        raise ValueError(f"{key} must be >= {least:g}, got {globals()[key]}")
device = ('cuda' if torch.cuda.is_available() else 'cpu') if device == 'auto' else device
torch.zeros(1, device=device)  # a device this machine lacks: torch's own one-line error
if start.startswith('FILE:'):
    try:
        with open(start[5:], encoding='utf-8') as f:
            start = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"the prompt file {start[5:]} is not UTF-8 text") from None
ckpt = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'))
model = GPT.from_checkpoint(ckpt, dropout=0.0).eval().to(device)
codec = Codec(ckpt['meta'])
ids = codec.encode(start)  # characters the vocabulary lacks: a DataError naming them
if not ids:
    raise ValueError("the prompt is empty after encoding; give at least one token with --start=")
configurator.setting_up = False

torch.manual_seed(seed)
x = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
for row in model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k).tolist():
    print(codec.decode(row))
    print('---------------')
