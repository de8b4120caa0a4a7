"""
Does a step size transfer across rank and width? From finished runs of experiments/eta_transfer.sh:

    python experiments/eta_transfer.py runs/eta_transfer/* --out=assets/eta_transfer

draws eta_transfer.png (final val loss against the step size: Spectron's η left, NFW's AdamW LR right; one curve per
(n_embd, rank)) and prints a markdown table of each curve's best grid value and its interpolated best: the vertex of
the parabola through the best value and its two neighbours, in log step size (the grid is a factor 2-2.5 apart, too
coarse to see a √2 shift by itself). A best at the end of its grid is marked: the true best may lie outside.
"""
import argparse
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import lowrank  # noqa: E402
from plot_spectra import load_log, log_file, mode_of, run_lr, save_png, unwritable  # noqa: E402
from table import die, read  # noqa: E402


def point(run_dir):
    """((mode, n_embd, rank), step size, final val loss) of one run"""
    log = load_log(run_dir)
    if log is None or not log[2]:
        die(f"no eval record in {log_file(run_dir)}")
    config, _, evals = log
    return (config['mode'], config['n_embd'], config['rank']), run_lr(config), float(evals[-1]['val_loss'])


def curves(run_dirs):
    """{(mode, n_embd, rank): {step size: final val loss}} from the runs' logs (a diverged run counts as inf)"""
    out = {}
    for d in run_dirs:  # a run dir, or its log (the gzipped copies in assets/)
        key, lr, val = read(point, d)
        out.setdefault(key, {})[lr] = val if np.isfinite(val) else np.inf
    return out


def vertex(steps, vals):
    """the interpolated best step: the vertex of the parabola through the best grid point and its neighbours, in
    log step; the grid best itself when it is at an end of the grid (or the three points are not convex)"""
    i = int(np.argmin(vals))
    if i in (0, len(vals) - 1):
        return steps[i]
    x, y = np.log(steps[i - 1:i + 2]), np.asarray(vals[i - 1:i + 2])
    a, b, _ = np.polyfit(x, y, 2)
    return float(np.exp(-b / (2 * a))) if a > 0 else steps[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('run_dirs', nargs='+')
    ap.add_argument('--out', required=True, help='directory for eta_transfer.png')
    ap.error = die  # bad arguments: one line, exit 2 (argparse's own error prints its usage too)
    args = ap.parse_args()
    data = curves(args.run_dirs)
    if unwritable(args.out, folder=True):
        die(f"--out: {unwritable(args.out, folder=True)}")
    order = list(lowrank.MODES)  # modes that promise a bound first (Spectron left of NFW), then the registry's order
    modes = sorted({k[0] for k in data}, key=lambda m: (not mode_of(m).bounded, order.index(m) if m in order else 99))
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.5), squeeze=False)
    print("| mode | n_embd | rank | best on the grid | val loss | interpolated best |")
    print("|---|---|---|---|---|---|")
    for ax, mode in zip(axes[0], modes):
        for (m, d, r), by_step in sorted(data.items()):
            if m != mode:
                continue
            steps = sorted(by_step)
            vals = [by_step[s] for s in steps]
            color = {8: 'tab:blue', 4: 'tab:orange', 2: 'tab:green'}.get(d // r, 'gray')
            line, = ax.plot(steps, vals, 'o-' if d == 256 else 's--', color=color,
                            label=f"n_embd {d}, rank {r} (d/{d // r})")
            best = vertex(steps, vals)
            i = int(np.argmin(vals))
            ax.plot(steps[i], vals[i], '*', ms=14, color=line.get_color())
            end = " (grid end)" if i in (0, len(vals) - 1) else ""
            print(f"| {mode} | {d} | {r} | {steps[i]:g}{end} | {vals[i]:.4f} | {best:.3g} |")
        ax.set_xscale('log')
        ax.set_xlabel(mode_of(mode).step_size + (' (the bound on ‖ΔW‖₂ per step)' if mode_of(mode).bounded else ''))
        ax.set_ylabel('val loss after 1000 steps')
        ax.set_title(f"{mode}: is the best step size the same for every shape?")
        finite = [v for (m, *_), s in data.items() if m == mode for v in s.values() if np.isfinite(v)]
        ax.set_ylim(min(finite) - 0.05, min(max(finite), min(finite) + 0.8) + 0.05)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    save_png(fig, os.path.join(args.out, 'eta_transfer.png'))


if __name__ == '__main__':
    main()
