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

import lowrank
from configurator import check_device, die, parse_args
from model import GPT, GPTConfig
from prepare_data import Codec, DataError

out_dir = 'out'  # where ckpt.pt is
start = '\n'  # the prompt, or FILE:path to read it from a file
num_samples = 3  # samples, drawn as one batch
max_new_tokens = 500  # tokens generated after the prompt
temperature = 0.8  # < 1: more conservative, > 1: more random
top_k = 200  # sample among the k most likely tokens only
seed = 1337  # the sampling RNG's seed
device = 'auto'  # auto (CUDA if there is a GPU) | cpu | cuda | cuda:N | mps
DEFAULTS = {k: v for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, str))}


def parse_sample_args(argv):
    cfg = {**DEFAULTS, **parse_args(DEFAULTS, argv, source=__file__)}
    for key, least in (('num_samples', 1), ('max_new_tokens', 0), ('top_k', 1)):
        if cfg[key] < least:
            die(f"{key} must be >= {least}, got {cfg[key]}")
    if cfg['temperature'] <= 0:
        die(f"temperature must be > 0, got {cfg['temperature']}")
    cfg['device'] = check_device(cfg['device'])
    return cfg


def read_prompt(start):
    """--start, or the text of the file that FILE:path names."""
    if not start.startswith('FILE:'):
        return start
    try:
        with open(start[5:], encoding='utf-8') as f:
            return f.read()
    except UnicodeDecodeError:
        die(f"the prompt file {start[5:]} is not UTF-8 text")
    except OSError as e:
        die(f"cannot read the prompt file {start[5:]}: {e.strerror or e}")


def load_model(ckpt_path, device):
    """The model of a checkpoint, rebuilt with its saved shapes (TSVD ranks included), and its codec."""
    if not os.path.isfile(ckpt_path):
        die(f"no checkpoint at {ckpt_path} (train one first: python train.py --out_dir={os.path.dirname(ckpt_path)})")
    try:  # a foreign or damaged file fails anywhere from the unpickling to the weights' shapes
        ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
        meta = ckpt['meta']
        model = GPT(GPTConfig.from_run_config(dict(ckpt['config'], dropout=0.0), meta['vocab_size']))
        lowrank.match_shapes(model, ckpt['model'])
        model.load_state_dict(ckpt['model'])
    except Exception as e:
        die(f"{ckpt_path} is not a readable nanoLowRank checkpoint (truncated or foreign?): {type(e).__name__}")
    return model.eval().to(device), Codec(meta)


def main(argv):
    cfg = parse_sample_args(argv)
    prompt = read_prompt(cfg['start'])
    model, codec = load_model(os.path.join(cfg['out_dir'], 'ckpt.pt'), cfg['device'])
    try:
        ids = codec.encode(prompt)
    except DataError as e:
        die(f"the prompt has {e}")
    if not ids:
        die("the prompt is empty after encoding; give at least one token with --start=")
    torch.manual_seed(cfg['seed'])
    x = torch.tensor([ids] * cfg['num_samples'], dtype=torch.long, device=cfg['device'])
    y = model.generate(x, cfg['max_new_tokens'], temperature=cfg['temperature'], top_k=cfg['top_k'])
    for row in y.tolist():
        print(codec.decode(row))
        print('---------------')


if __name__ == '__main__':
    main(sys.argv[1:])
