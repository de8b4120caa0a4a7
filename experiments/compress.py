"""
Compress a trained dense model without training: replace a budget of its weight matrices by their truncated SVD,
chosen by a spectral score or by the "last N layers" heuristic, and compare what each choice costs in val loss.

    python experiments/compress.py out-dense --budgets=1,2,3,6,12 --csv=compress.csv --png=compress.png

Each chosen W (m×n) becomes its best rank-k approximation P_k S_k Q_kᵀ (Eckart–Young), k = --rank (a count, or a
fraction of the matrix's smaller side, as train.py's --rank; 0.25 is the factorized modes' default), which a
factorized layer stores in k (m + n) numbers instead of m n: the difference is the parameters removed. Matrices
are truncated, never dropped (the lifecycle paper prunes whole layers; a truncation is this repo's compression).
A budget is a number of matrices, and the two rules pick that many:
  last-N    the last block first, and within a block the reverse of the forward order (mlp.down, mlp.up, attn.o,
            attn.v, attn.k, attn.q);
  spectral  those losing the smallest fraction of their spectral energy at rank k, Σ_{i>k} s_i² / Σ_i s_i²,
            as many of each shape as last-N picks: so both rules remove exactly the same number of parameters.
Val loss is measured on the run's own eval batches (train.py's estimate_loss: its generator seed, batch_size windows
of block_size, eval_iters batches, from the checkpoint's config; --eval_iters=N for more), in float32, so the loss
before compression is the run's last logged val loss (up to autocast, for a run trained in bf16).
"""
import csv as csvlib
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import lowrank  # noqa: E402
from configurator import die, parse_args  # noqa: E402
from model import GPT, load_checkpoint  # noqa: E402
from plot_spectra import save_png, unwritable  # noqa: E402
from prepare_data import DataError, ensure_prepared  # noqa: E402

budgets = '1,2,3,6,12'  # comma-separated budgets: how many matrices each rule truncates
rank = 0.25  # the rank a truncated matrix keeps: a count, or a fraction of its smaller side
eval_iters = 0  # val batches (0: the checkpoint's eval_iters, the batches its logged val losses used)
device = 'cpu'  # cpu | cuda
csv = ''  # also write one row per (budget, rule) here
png = ''  # also draw the val-loss increase against parameters removed, both rules, here
DEFAULTS = {k: v for k, v in globals().items() if k.islower() and not k.startswith('_')
            and isinstance(v, (int, float, str))}
USAGE = "usage: python experiments/compress.py CKPT_DIR [--key=value ...] (--help lists the keys)"


def load(ckpt_dir):
    """(model in eval mode, the run's config, its step) from a dense (or muon: a dense W too) checkpoint"""
    path = os.path.join(ckpt_dir, 'ckpt.pt')
    try:
        ckpt = load_checkpoint(path)
    except ValueError as e:
        die(str(e))
    c = ckpt['config']
    if lowrank.MODES[c['mode']].layer is not lowrank.DenseLinear:
        die(f"{path} is from a mode={c['mode']} run; compress.py truncates the W of a dense (or muon) one")
    return GPT.from_checkpoint(ckpt, dropout=0.0).eval(), c, ckpt['iter_num']


def val_batches(c, n):
    """The first n batches of train.py's estimate_loss on the val split: the same generator, seed and windows."""
    try:
        data_dir = ensure_prepared(c['input_file'], c['tokenizer'], min_tokens=c['block_size'] + 2)
    except DataError as e:
        die(str(e))
    d, T = np.memmap(os.path.join(data_dir, 'val.bin'), dtype=np.uint16, mode='r'), c['block_size']
    gen, batches = torch.Generator().manual_seed(c['seed'] + 1), []
    for _ in range(n):
        ix = torch.randint(len(d) - T - 1, (c['batch_size'],), generator=gen).tolist()
        x, y = (torch.from_numpy(np.stack([d[i + o:i + o + T] for i in ix]).astype(np.int64)) for o in (0, 1))
        batches.append((x, y))
    return batches


@torch.no_grad()
def val_loss(model, batches):
    dev = next(model.parameters()).device
    return sum(model(x.to(dev), y.to(dev))[1].item() for x, y in batches) / len(batches)


def truncated(svd, k):
    """P_k S_k Q_kᵀ: the best rank-k approximation of W = P S Qᵀ"""
    P, s, Qh = svd
    return (P[:, :k] * s[:k]) @ Qh[:k]


def compressed_state(state, svds, names, ranks):
    """state with W of every named matrix replaced by its rank-ranks[name] truncation (a new dict; state unchanged)"""
    return {**state, **{f'{n}.weight': truncated(svds[n], ranks[n]).to(state[f'{n}.weight']) for n in names}}


def choose(shapes, lost, budget):
    """(spectral, last_n) picks of budget matrices each. shapes: {name: sorted shape} in forward order; lost: {name:
    fraction of energy lost}. Spectral matches last-N's count of each shape, so the parameters removed match."""
    last_n = list(shapes)[::-1][:budget]
    spectral = []
    for shape in dict.fromkeys(shapes[n] for n in last_n):
        same = sorted((n for n in shapes if shapes[n] == shape), key=lost.get)
        spectral += same[:sum(shapes[n] == shape for n in last_n)]
    return sorted(spectral, key=lost.get), last_n


def parse(argv):
    """(checkpoint dir, config) from the command line; bad input is one line and exit 2"""
    dirs, rest = [a for a in argv if not a.startswith('-')], [a for a in argv if a.startswith('-')]
    cfg = {**DEFAULTS, **parse_args(DEFAULTS, rest, int_or_float=('rank',), notes=USAGE, source=__file__)}
    if len(dirs) != 1:
        die(f"{USAGE}; got {len(dirs)} directories")
    try:
        cfg['budgets'] = [int(b) for b in cfg['budgets'].split(',')]
    except ValueError:
        die(f"budgets: cannot read {cfg['budgets']!r} as comma-separated numbers of matrices")
    for b in cfg['budgets']:
        if b < 1:
            die(f"a budget is a number of matrices >= 1, got {b}")
    if cfg['eval_iters'] < 0:
        die(f"eval_iters must be >= 0, got {cfg['eval_iters']}")
    if cfg['device'] not in ('cpu', 'cuda') or cfg['device'] == 'cuda' and not torch.cuda.is_available():
        die(f"device must be cpu or cuda (with a CUDA GPU), got {cfg['device']!r}")
    if cfg['png'] and not cfg['png'].endswith('.png'):  # matplotlib would pick the format from the name
        die(f"png={cfg['png']} does not end in .png")
    for k in ('csv', 'png'):  # checked now, not after the work
        if cfg[k] and unwritable(cfg[k]):
            die(f"{k}: {unwritable(cfg[k])}")
    return dirs[0], cfg


def plot(rows, title, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for rule, style in (('spectral', 'o-'), ('last-N', 's--')):
        mine = [r for r in rows if r['rule'] == rule]
        ax.plot([r['params_removed'] for r in mine], [r['increase'] for r in mine], style, label=rule)
    ax.set(xlabel='parameters removed', ylabel='val loss increase (nats/token)', title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def matrices(model, rank):
    """Per block matrix, in forward order: {name: sorted shape}, the rank k it keeps, its SVD, the fraction of its
    spectral energy lost at k, and the parameters a rank-k factorization saves (m n - k (m + n))."""
    shapes, ranks, svds, lost, saved = {}, {}, {}, {}, {}
    for name, m in model.linear_layers():
        try:
            k = ranks[name] = lowrank.resolve_rank(rank, m.in_features, m.out_features)
        except ValueError as e:
            die(str(e))
        shapes[name] = tuple(sorted(m.weight.shape))
        saved[name] = m.in_features * m.out_features - k * (m.in_features + m.out_features)
        if saved[name] <= 0:
            die(f"rank={rank} ({k}) saves no parameters on a {m.out_features}x{m.in_features} matrix: "
                f"k (m + n) >= m n; choose a lower --rank")
        svds[name] = torch.linalg.svd(m.weight.detach().float(), full_matrices=False)
        s2 = svds[name][1].double().square()
        lost[name] = (s2[k:].sum() / s2.sum()).item()
    return shapes, ranks, svds, lost, saved


def main(argv):
    ckpt_dir, cfg = parse(argv)
    model, c, iter_num = load(ckpt_dir)
    shapes, ranks, svds, lost, saved = matrices(model, cfg['rank'])
    if max(cfg['budgets']) > len(shapes):
        die(f"budget {max(cfg['budgets'])}: the model has only {len(shapes)} matrices")
    model.to(cfg['device'])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = val_batches(c, cfg['eval_iters'] or c['eval_iters'])
    base, total = val_loss(model, batches), model.num_params()
    print(f"{ckpt_dir}/ckpt.pt: {c['mode']} at step {iter_num}, {c['n_layer']} layers, n_embd {c['n_embd']}, "
          f"{total:,} parameters; val loss {base:.4f} on {len(batches)} of its eval batches")
    print(f"rank {cfg['rank']}: " + ', '.join(sorted({f"{ranks[n]} of {s[0]}x{s[1]}" for n, s in shapes.items()})))
    print("| matrices | params removed (of all) | Δ val, spectral | Δ val, last-N | last-N / spectral "
          "| spectral picks | last-N picks |\n|---|---|---|---|---|---|---|")
    short = lambda names: ' '.join(n.replace('blocks.', '').replace('attn.', '').replace('mlp.', '')
                                   for n in names)  # blocks.3.mlp.down -> 3.down
    rows = []
    for b in cfg['budgets']:
        picks = dict(zip(('spectral', 'last-N'), choose(shapes, lost, b)))
        for rule, names in picks.items():
            model.load_state_dict(compressed_state(state, svds, names, ranks))
            loss, removed = val_loss(model, batches), sum(saved[n] for n in names)
            rows.append(dict(budget=b, rule=rule, params_removed=removed, frac_removed=removed / total,
                             energy_lost=float(np.mean([lost[n] for n in names])), val_loss=loss, base_val_loss=base,
                             increase=loss - base, matrices=' '.join(names)))
        spec, last = rows[-2], rows[-1]
        ratio = f"{last['increase'] / spec['increase']:.2f}×" if spec['increase'] > 0 else '–'
        print(f"| {b} | {spec['params_removed']:,} ({spec['frac_removed']:.1%}) | {spec['increase']:+.4f} | "
              f"{last['increase']:+.4f} | {ratio} | {short(picks['spectral'])} | {short(picks['last-N'])} |")
    model.load_state_dict(state)
    if cfg['csv']:
        with open(cfg['csv'], 'w', newline='') as f:
            writer = csvlib.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {cfg['csv']}")
    if cfg['png']:
        plot(rows, f"{os.path.basename(os.path.normpath(ckpt_dir))}: rank {cfg['rank']} truncations", cfg['png'])
        print(f"wrote {cfg['png']}")
    return rows


if __name__ == '__main__':
    main(sys.argv[1:])
