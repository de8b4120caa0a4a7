"""
The compute frontier (issue 17): val loss against total training FLOPs (Σ over steps of FLOPs/token × tokens, so a
TSVD run whose rank shrinks is credited for it) and against run time, for TSVD runs and reference runs of other modes:

    python experiments/frontier.py runs/tsvd_frontier/* \
        --others assets/compare/bc785171e5e1/dense_lr0.001_seed1337_2000it.log.jsonl.gz ... \
        --out=assets/tsvd_frontier

draws frontier.png and prints a markdown table: TSVD runs (start rank, τ, final mean rank per projection type,
val loss, training TFLOPs, minutes, and the val loss relative to the best dense run among the others), then the
others (of runs that differ only in step size, the best: LR grids can be passed whole). Run time is as logged
(two 1-thread runs sharing a 2-core CPU, under whatever else ran then): a rough axis, good to a factor of ~1.5.
"""
import argparse
import os
import statistics
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from table import die, read, summarize  # noqa: E402
import lowrank  # noqa: E402  (table put the repo on the path)
from plot_spectra import has_layer, mode_color, mode_of, read_log, save_png, unwritable  # noqa: E402

PROJS = ('attn.q', 'attn.k', 'attn.v', 'attn.o', 'mlp.up', 'mlp.down')
TAU_MARKERS = {0.9: 'v', 0.95: 'D', 0.99: 'o'}
START_COLORS = ('tab:olive', 'tab:cyan', 'tab:pink', 'gray')  # TSVD's start ranks, smallest first (not tsvd's green)


def point(path):
    row = summarize(path)
    evals = [r for r in read_log(path) if r.get('kind') == 'eval']
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


def frontier(runs, key):
    """the runs no run of lower (or equal) cost `key` beats in val loss, cheapest first"""
    best, keep = float('inf'), []
    for r in sorted((r for r in runs if r[key] == r[key]), key=lambda r: (r[key], r['val'])):  # NaN: no minutes
        if r['val'] < best:
            best = r['val']
            keep.append(r)
    return keep


def figure(tsvd, others, dense, path):
    """val loss against training FLOPs and against minutes: TSVD runs by start rank (colour) and τ (shape), the other
    modes as squares in their colours; the frontier (the runs no cheaper run beats) as a line, only its runs named"""
    color = dict(zip(sorted({r['rank'] for r in tsvd}), START_COLORS))
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
    names = []
    for ax, key, label in zip(axes, ('tflops', 'minutes'), ('total training TFLOPs', 'minutes (as logged)')):
        for r in others:
            ax.plot(r[key], r['val'], 's', color=mode_color(r['mode']), ms=6, alpha=0.7)
        for r in tsvd:
            ax.plot(r[key], r['val'], TAU_MARKERS.get(r['config']['energy'], 'x'), color=color[r['rank']], ms=8,
                    mec='black', mew=0.5)
        front = frontier(tsvd + others, key)
        ax.step([r[key] for r in front], [r['val'] for r in front], where='post', color='black', lw=1, alpha=0.5)
        for r in sorted(front, key=lambda r: (r not in tsvd, r['val'])):  # below-left of a frontier run nothing is
            names.append(ax.annotate(r['run'], (r[key], r['val']), fontsize=7, xytext=(-3, -3), ha='right', va='top',
                                     textcoords='offset points'))  # drawn; TSVD's names first, then the best
        if dense:
            ax.axhline(dense['val'] * 1.02, color='black', ls=':', lw=0.8)
            ax.axvline(dense[key], color='black', ls='--', lw=0.6)
        ax.set_xscale('log')
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 5, 10, 20, 50: plain numbers, not 5×10⁰
        ax.xaxis.set_major_formatter(FormatStrFormatter('%g'))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel=label, ylabel='final val loss (nats/char)')
        ax.grid(alpha=0.25, which='major')
    handles = ([Patch(color=c, label=f"tsvd, start rank {start}") for start, c in color.items()]
               + [plt.Line2D([], [], ls='', marker=m, color='white', mec='black', label=f"tsvd, τ {tau}")
                  for tau, m in TAU_MARKERS.items() if any(r['config']['energy'] == tau for r in tsvd)]
               + [plt.Line2D([], [], ls='', marker='s', color=mode_color(m), label=f"{m} (best step size)")
                  for m in dict.fromkeys(r['mode'] for r in others)]
               + [plt.Line2D([], [], color='black', alpha=0.5, label='frontier (its runs named)')]
               + ([plt.Line2D([], [], color='black', ls=':', lw=0.8, label=f"dense + 2% ({dense['run']})"),
                   plt.Line2D([], [], color='black', ls='--', lw=0.6, label="dense's cost")] if dense else []))
    axes[1].legend(handles=handles, fontsize=8, loc='upper left', bbox_to_anchor=(1.02, 1))
    axes[0].set_title('val loss against training compute')
    axes[1].set_title('against run time (2 runs shared 2 cores: ±50%)')
    fig.tight_layout()
    renderer, kept = fig.canvas.get_renderer(), []
    for name in names:  # a name past its panel's left edge goes above-right; one that would overlap a name kept
        if name.get_window_extent(renderer).x0 < name.axes.get_window_extent(renderer).x0:  # before it is left out
            name.set(ha='left', va='bottom', position=(3, 3))
        box = name.get_window_extent(renderer)
        if any(box.overlaps(other) for other in kept):
            name.remove()
        else:
            kept.append(box)
    save_png(fig, path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('tsvd_runs', nargs='+', help='TSVD run dirs or *.log.jsonl(.gz)')
    ap.add_argument('--others', nargs='*', default=[], help='reference runs of other modes (dirs or *.log.jsonl(.gz))')
    ap.add_argument('--out', required=True, help='directory for frontier.png')
    ap.error = die  # bad arguments: one line, exit 2 (argparse's own error prints its usage too)
    args = ap.parse_args()
    for p in args.tsvd_runs + args.others:
        if not os.path.exists(p):
            die(f"no run at {p}")
    tsvd, others = [read(point, p) for p in args.tsvd_runs], best_step([read(point, p) for p in args.others])
    if unwritable(args.out, folder=True):
        die(f"--out: {unwritable(args.out, folder=True)}")
    dense = min((r for r in others if is_dense(r['mode']) and r['n_embd'] == tsvd[0]['n_embd']),
                key=lambda r: r['val'], default=None)
    figure(tsvd, others, dense, os.path.join(args.out, 'frontier.png'))
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
