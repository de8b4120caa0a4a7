"""
The compute frontier (issue 17): val loss against total training FLOPs (Σ over steps of FLOPs/token × tokens, so a
TSVD run whose rank shrinks is credited for it) and against run time, for TSVD runs and reference runs of other modes:

    python experiments/frontier.py runs/tsvd_frontier/* --others assets/tune/dense_lr0.001_seed1337.log.jsonl ... \
        --out=assets/tsvd_frontier

draws frontier.png and prints a markdown table: TSVD runs (start rank, τ, final mean rank per projection type,
val loss, training TFLOPs, minutes, and the val loss relative to the best dense run among the others), then the
others (of runs that differ only in step size, the best: LR grids can be passed whole). Run time is as logged
(two 1-thread runs sharing a 2-core CPU, under whatever else ran then): a rough axis, good to a factor of ~1.5.
"""
import argparse
import json
import os
import statistics
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from table import die, summarize  # noqa: E402
import lowrank  # noqa: E402  (table put the repo on the path)
from plot_spectra import has_layer, mode_color, mode_of  # noqa: E402

PROJS = ('attn.q', 'attn.k', 'attn.v', 'attn.o', 'mlp.up', 'mlp.down')
TAU_MARKERS = {0.9: 'v', 0.95: 'D', 0.99: 'o'}


def point(path):
    row = summarize(path)
    log = os.path.join(path, 'log.jsonl') if os.path.isdir(path) else path
    with open(log) as f:
        evals = [r for r in map(json.loads, f) if r['kind'] == 'eval']
    row['ranks'] = evals[-1]['ranks']  # per layer, at the end
    if has_layer(row['mode'], lowrank.TSVDLinear):  # the start rank as a count (--rank may have been a fraction)
        row['rank'] = max(evals[0]['ranks'].values())
    row['tflops'] = float(row['tflops'])
    row['minutes'] = row['minutes'] if isinstance(row['minutes'], float) else float('nan')
    return row


def is_dense(mode):
    """nanoGPT's baseline, the reference: full W under plain AdamW (dense mode)"""
    return mode_of(mode).layer is lowrank.DenseLinear and mode_of(mode).optimizers is lowrank.adamw_only


def best_step(rows):
    """of runs that differ only in step size (mode, width, rank, length alike), the one with the lowest val loss:
    each mode at its own best step size, so that LR grids can be passed whole"""
    best = {}
    for r in rows:
        key = (r['mode'], r['n_embd'], r['rank'], r['iters'])
        if key not in best or r['val'] < best[key]['val']:
            best[key] = r
    return list(best.values())


def final_ranks(row):
    """mean final rank over layers, per projection type"""
    return {p: statistics.mean(r for name, r in row['ranks'].items() if name.endswith(p)) for p in PROJS}


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('tsvd_runs', nargs='+', help='TSVD run dirs or *.log.jsonl')
    ap.add_argument('--others', nargs='*', default=[], help='reference runs of other modes (dirs or *.log.jsonl)')
    ap.add_argument('--out', required=True, help='directory for frontier.png')
    args = ap.parse_args()
    for p in args.tsvd_runs + args.others:
        if not os.path.exists(p):
            die(f"no run at {p}")
    tsvd, others = [point(p) for p in args.tsvd_runs], best_step(point(p) for p in args.others)
    dense = min((r for r in others if is_dense(r['mode']) and r['n_embd'] == tsvd[0]['n_embd']),
                key=lambda r: r['val'], default=None)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, key, label in zip(axes, ('tflops', 'minutes'), ('total training TFLOPs', 'minutes (logged)')):
        for r in others:
            ax.plot(r[key], r['val'], 's', color=mode_color(r['mode']), ms=6, alpha=0.8)
            ax.annotate(r['run'], (r[key], r['val']), fontsize=6, xytext=(3, 2), textcoords='offset points')
        for start, color in zip(sorted({r['rank'] for r in tsvd}), ('tab:olive', 'tab:green', 'tab:cyan', 'gray')):
            for r in sorted((r for r in tsvd if r['rank'] == start), key=lambda r: r['config']['energy']):
                tau = r['config']['energy']
                ax.plot(r[key], r['val'], TAU_MARKERS.get(tau, 'x'), color=color, ms=8,
                        label=f"tsvd start rank {start}, τ {tau}" if key == 'tflops' else None)
        if dense:
            ax.axhline(dense['val'] * 1.02, color='black', ls=':', lw=0.8,
                       label='dense + 2%' if key == 'tflops' else None)
            ax.axvline(dense[key], color='black', ls='--', lw=0.6)
        ax.set_xscale('log')
        ax.set_xlabel(label)
        ax.set_ylabel('final val loss')
    handles = [plt.Line2D([], [], marker='s', ls='', color=mode_color(m), label=m)
               for m in dict.fromkeys(r['mode'] for r in others)]
    axes[0].legend(handles=axes[0].get_legend_handles_labels()[0] + handles, fontsize=7, ncol=2)
    axes[0].set_title('val loss against training compute (dashed: dense\'s)')
    axes[1].set_title('against run time')
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    fig.savefig(os.path.join(args.out, 'frontier.png'), dpi=110)
    ref = f" (dense: {dense['run']}, {dense['val']:.4f}, {dense['tflops']:.1f} TFLOPs)" if dense else ''
    print(f"| run | start rank | τ | final mean rank: {' / '.join(PROJS)} | val loss | vs dense{ref} "
          f"| training TFLOPs | minutes |\n|---|---|---|---|---|---|---|---|")
    for r in sorted(tsvd, key=lambda r: (r['rank'], r['config']['energy'])):
        ranks = ' / '.join(f"{v:.0f}" for v in final_ranks(r).values())
        rel = f"{100 * (r['val'] / dense['val'] - 1):+.1f}%" if dense else '-'
        print(f"| {r['run']} | {r['rank']} | {r['config']['energy']} | {ranks} | {r['val']:.4f} | {rel} "
              f"| {r['tflops']:.1f} "
              f"| {r['minutes']:.1f} |")
    print("\n| run | mode | rank | val loss | training TFLOPs | minutes |\n|---|---|---|---|---|---|")
    for r in sorted(others, key=lambda r: r['tflops']):
        print(f"| {r['run']} | {r['mode']} | {r['rank']} | {r['val']:.4f} | {r['tflops']:.1f} | {r['minutes']:.1f} |")


if __name__ == '__main__':
    main()
