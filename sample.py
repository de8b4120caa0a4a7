"""
Sample text from a trained checkpoint.

    python sample.py --out_dir=out --start="ROMEO:" --num_samples=2 --max_new_tokens=300
    python sample.py --start=FILE:prompt.txt     # the prompt from a file
"""
import os
import sys

import torch

import lowrank
from configurator import die, parse_args
from model import GPT, GPTConfig
from prepare_data import Codec, DataError

out_dir = 'out'  # where ckpt.pt is
start = '\n'  # the prompt, or FILE:path to read it from a file
num_samples = 3
max_new_tokens = 500
temperature = 0.8  # < 1: more conservative, > 1: more random
top_k = 200  # sample among the k most likely tokens only
seed = 1337
device = 'cuda' if torch.cuda.is_available() else 'cpu'
DEFAULTS = {k: v for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, str))}


def parse_sample_args(argv):
    cfg = {**DEFAULTS, **parse_args(DEFAULTS, argv)}
    if cfg['temperature'] <= 0 or cfg['num_samples'] < 1 or cfg['max_new_tokens'] < 0 or cfg['top_k'] < 1:
        die("need temperature > 0, num_samples >= 1, max_new_tokens >= 0, top_k >= 1")
    return cfg


def load_model(ckpt_path, device):
    """The model of a checkpoint, rebuilt with its saved shapes (TSVD ranks included), and its codec."""
    if not os.path.isfile(ckpt_path):
        die(f"no checkpoint at {ckpt_path} (train one first: python train.py --out_dir={os.path.dirname(ckpt_path)})")
    try:
        ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
        c, meta = ckpt['config'], ckpt['meta']
    except Exception as e:
        die(f"{ckpt_path} is not a readable nanoLowRank checkpoint (truncated or foreign?): {type(e).__name__}")
    model = GPT(GPTConfig.from_run_config(dict(c, dropout=0.0), meta['vocab_size']))
    lowrank.match_shapes(model, ckpt['model'])
    model.load_state_dict(ckpt['model'])
    return model.eval().to(device), Codec(meta)


def main(argv):
    cfg = parse_sample_args(argv)
    model, codec = load_model(os.path.join(cfg['out_dir'], 'ckpt.pt'), cfg['device'])
    prompt = cfg['start']
    if prompt.startswith('FILE:'):
        with open(prompt[5:], encoding='utf-8') as f:
            prompt = f.read()
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
