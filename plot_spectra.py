"""
Plot singular-value spectra, rank metrics and losses of nanoLowRank runs.

Reads what train.py writes into each run directory:
  log.jsonl   - one JSON object per line: a "config" record, then "train" and
                "eval" records (eval records carry the current rank of each matrix)
  spectra.npz - `steps` (S,) plus one (S, R) array per weight matrix, e.g.
                "blocks.3.attn.q", holding the singular values at each step sorted
                descending and NaN-padded on the right (TSVD ranks shrink)

Usage:
  python plot_spectra.py RUN_DIR [RUN_DIR ...] [--out=DIR] [--figures=NAME,...] [--show=True]

Keys take the --key=value style of train.py (configurator.parse_args: --help lists them; a bad one is one line
and exit 2).

PNGs go to --out (default: the first run dir) and each path is printed. A figure
that cannot be made prints one "skip <figure>: <what is missing>" line instead.
"""
import io
import os
import sys
import gzip
import json
import tempfile
import zipfile

import numpy as np
import matplotlib
# the backend must be chosen before pyplot is imported: headless unless --show=True
if "--show=True" not in sys.argv:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, ScalarFormatter
from PIL import Image, PngImagePlugin  # matplotlib's own PNG writer

import lowrank  # the mode registry: each mode's colour, step-size key and bound
from configurator import parse_args

PROJS = ["q", "k", "v", "o", "up", "down"]  # projection type = last name component
UNKNOWN_COLOR = "tab:gray"  # a logged mode that lowrank.MODES no longer has
LINESTYLES = ["-", "--", ":", "-."]  # tell apart several runs of the same mode
MARKERS = ["o", "s", "^", "D"]
N_SNAPSHOTS = 4  # steps shown in the per-step line plots

# -----------------------------------------------------------------------------
# spectrum metrics: each takes a 1-D array of singular values (any order, NaN
# padding allowed) and returns a float, NaN when there is no positive value

def _clean(s):
    """finite singular values, sorted descending (drops the NaN padding)"""
    s = np.asarray(s, dtype=np.float64).ravel()
    return np.sort(s[np.isfinite(s)])[::-1]

def stable_rank(s):
    """stable rank = sum_i s_i^2 / max_i s_i^2  (= ||W||_F^2 / ||W||_2^2 <= rank)"""
    s = _clean(s)
    if s.size == 0 or s[0] <= 0:
        return float("nan")
    return float(np.sum(s ** 2) / s[0] ** 2)

def effective_rank(s):
    """effective rank (Roy & Vetterli 2007) = exp(H(p)), with p_i = s_i / sum_j s_j
    and H(p) = -sum_i p_i log p_i, taking 0 log 0 = 0 (so exact zeros drop out)"""
    s = _clean(s)
    s = s[s > 0]
    if s.size == 0:
        return float("nan")
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))

def energy_rank(s, tau=0.99):
    """energy rank = smallest k with sum_{i<=k} s_i^2 >= tau * sum_i s_i^2, s sorted
    descending: how many directions hold a tau fraction of ||W||_F^2"""
    s = _clean(s)
    if s.size == 0 or s[0] <= 0:
        return float("nan")
    c = np.cumsum(s ** 2)
    # searchsorted(side="left") = first index with c[i] >= target; trailing zeros never count
    return float(min(np.searchsorted(c, tau * c[-1]) + 1, s.size))

def powerlaw_alpha(s):
    """power-law exponent alpha = -(slope of the least-squares line of log s_i
    against log i), i = 1..n over the positive s sorted descending; s_i = i^-a gives a"""
    s = _clean(s)
    s = s[s > 0]
    if s.size < 2:
        return float("nan")
    slope = np.polyfit(np.log(np.arange(1, s.size + 1)), np.log(s), 1)[0]
    return float(-slope)

# -----------------------------------------------------------------------------
# loading

def log_file(path):
    """the log a path names: a run dir's log.jsonl, or the path itself (a log file)"""
    return os.path.join(path, "log.jsonl") if os.path.isdir(path) else path

def run_name(path):
    """a run's name: its dir's, or its log's file name less .log.jsonl (or .log.jsonl.gz, as committed in assets/)"""
    return os.path.basename(os.path.normpath(path)).removesuffix(".gz").removesuffix(".log.jsonl")

def read_log(path):
    """every record of a run's log, in order: a run dir's log.jsonl, or a log file, gzipped if its name ends in .gz
    (the logs committed under assets/). The one reader of logs. A line that does not parse (a killed run's last)
    is skipped; a gzip file cut short is a ValueError."""
    path = log_file(path)
    records = []
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
    except EOFError as e:
        raise ValueError(f"{path} is cut short ({e})") from None
    return records

def load_log(run_dir):
    """(config dict, train records, eval records) from run_dir/log.jsonl (read_log), or None if
    there is no such file."""
    path = log_file(run_dir)
    if not os.path.isfile(path):
        return None
    config, train, evals = {}, [], []
    for rec in read_log(path):
        kind = rec.get("kind")
        if kind == "config":
            config = rec
        elif kind == "train":
            train.append(rec)
        elif kind == "eval":
            evals.append(rec)
    return config, train, evals

def load_spectra(run_dir):
    """(steps, {matrix name: (S, R) array}) from run_dir/spectra.npz, or None if the
    file is absent or unreadable (e.g. cut short by a killed run)"""
    path = os.path.join(run_dir, "spectra.npz")
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        print(f"warning: cannot read {path}: {e}")
        return None
    steps = arrays.pop("steps", None)
    return None if steps is None else (np.asarray(steps), arrays)

def parse_name(name):
    """'blocks.3.attn.q' -> (3, 'q'); None for anything that is not a block matrix"""
    parts = name.split(".")
    if len(parts) < 3 or not parts[1].isdigit() or parts[-1] not in PROJS:
        return None
    return int(parts[1]), parts[-1]

def group_matrices(mats):
    """{proj: {layer: array}} for the block matrices, projections in PROJS order"""
    out = {}
    for name, a in mats.items():
        p = parse_name(name)
        if p is not None:
            out.setdefault(p[1], {})[p[0]] = a
    return {proj: out[proj] for proj in PROJS if proj in out}

def metric_grid(by_layer, fn):
    """(sorted layers, [L, S] array of fn applied to every step's spectrum)"""
    layers = sorted(by_layer)
    return layers, np.array([[fn(row) for row in np.atleast_2d(by_layer[l])] for l in layers])

# -----------------------------------------------------------------------------
# figures. The per-run ones take (steps, group_matrices(...), run name) and
# return a Figure; the ones from logs return a Figure or a string saying what is missing

def snapshot_idx(steps, k=N_SNAPSHOTS):
    """indices of the k logged steps nearest to k evenly spaced steps, first and last included (evenly spaced in
    steps, not in records: spectra_early logs the first steps more densely)"""
    steps = np.asarray(steps, dtype=np.float64)
    targets = np.linspace(steps[0], steps[-1], min(k, steps.size))
    return np.unique([int(np.argmin(np.abs(steps - x))) for x in targets])

def snapshot_colors(n):
    return plt.cm.viridis(np.linspace(0.0, 0.9, n))  # 0.9: the top of viridis is too pale

def proj_axes(n, nrows=2, size=(4.2, 3.4)):
    """a grid with room for n projection panels; unused panels are hidden"""
    ncols = -(-n // nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat

def plot_spectra_curves(steps, groups, run):
    idx, layers = snapshot_idx(steps), sorted(next(iter(groups.values())))
    mid = layers[len(layers) // 2]  # one layer: averaging spectra of different shapes blurs them
    fig, axes = proj_axes(len(groups))
    for ax, (proj, by_layer) in zip(axes, groups.items()):
        a = np.atleast_2d(by_layer.get(mid, by_layer[min(by_layer)]))
        for color, t in zip(snapshot_colors(len(idx)), idx):
            s = np.where(a[t] > 0, a[t], np.nan)  # zeros cannot be drawn on log-y
            ax.plot(np.arange(1, s.size + 1), s, color=color, label=f"step {steps[t]}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter(""))
        ax.set(title=proj, xlabel="index i", ylabel="singular value $\\sigma_i$")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{run}: singular values of layer {mid} (middle of {len(layers)}) through training")
    fig.tight_layout()
    return fig

def _edges(x):
    """cell edges around sorted centres x, for pcolormesh with uneven spacing"""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])

def plot_rank_heatmaps(steps, groups, run):
    n = len(groups)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n + 1, 6.4), squeeze=False, layout="constrained")
    for row, (fn, label) in enumerate([(stable_rank, "stable rank"), (effective_rank, "effective rank")]):
        grids = [metric_grid(by_layer, fn) for by_layer in groups.values()]
        # one colour scale per row, so that projections can be compared at a glance
        values = np.concatenate([g.ravel() for _, g in grids])
        vmin, vmax = np.nanmin(values), np.nanmax(values)
        for ax, proj, (layers, grid) in zip(axes[row], groups, grids):
            m = ax.pcolormesh(_edges(steps), _edges(layers), grid, shading="flat", cmap="magma",
                              vmin=vmin, vmax=vmax)
            ax.set(title=f"{proj}: {label}", xlabel="step (iter)", ylabel="layer" if ax is axes[row, 0] else None)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(m, ax=axes[row, :], label=label, pad=0.01, aspect=15)
    fig.suptitle(f"{run}: rank of each weight matrix over training")
    return fig

def plot_depth(steps, groups, run, fn, ylabel, what):
    """fn of every matrix against its layer, at a few steps through training (the last one included)"""
    idx = snapshot_idx(steps)
    fig, axes = proj_axes(len(groups))
    for ax, (proj, by_layer) in zip(axes, groups.items()):
        layers, grid = metric_grid(by_layer, fn)
        for color, t in zip(snapshot_colors(len(idx)), idx):
            ax.plot(layers, grid[:, t], "o-", color=color, label=f"step {steps[t]}")
        ax.set(title=proj, xlabel="layer", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{run}: {what} against depth")
    fig.tight_layout()
    return fig

def plot_alpha_depth(steps, groups, run):
    return plot_depth(steps, groups, run, powerlaw_alpha, "power-law exponent $\\alpha$",
                      "spectral decay $\\sigma_i \\propto i^{-\\alpha}$")

def plot_rank_depth(steps, groups, run):
    return plot_depth(steps, groups, run, stable_rank, "stable rank $\\|W\\|_F^2 / \\|W\\|_2^2$", "stable rank")

def compression_minima(steps, by_layer):
    """{layer: (step, value) of its lowest stable rank, and its last value}: where each matrix of one type is most
    compressed, and whether it recovers after (last > lowest). Layers with no finite value are left out."""
    out = {}
    for layer, row in zip(*metric_grid(by_layer, stable_rank)):
        if np.isfinite(row).any():
            t = int(np.nanargmin(row))
            out[layer] = (int(steps[t]), float(row[t]), float(row[-1]))
    return out

def plot_compression_wave(steps, groups, run):
    """stable rank of every matrix against step, one line per layer, each line's lowest point marked: a compression
    wave is a minimum that comes early and is followed by a recovery"""
    fig, axes = proj_axes(len(groups))
    for ax, (proj, by_layer) in zip(axes, groups.items()):
        layers, grid = metric_grid(by_layer, stable_rank)
        minima = compression_minima(steps, by_layer)
        for color, layer, row in zip(snapshot_colors(len(layers)), layers, grid):
            step, low, last = minima.get(layer, (None, np.nan, np.nan))
            ax.plot(steps, row, color=color, lw=1, label=f"layer {layer}: min {low:.3g} at {step}, end {last:.3g}")
            if step is not None:
                ax.plot(step, low, "v", color=color, mec="black", ms=7)
        ax.set(title=proj, xlabel="step (iter)", ylabel="stable rank", yscale="log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, framealpha=0.5)  # eight layers fill a panel: let the lines show through
    fig.suptitle(f"{run}: stable rank of each matrix over training (▼: its lowest, the most compressed)")
    fig.tight_layout()
    return fig

def mode_of(mode):
    """a logged mode's registry entry (lowrank.MODES); a mode the registry does not have gets Mode's defaults"""
    return lowrank.MODES.get(mode) or lowrank.Mode(None, None)

def mode_color(mode):
    """a mode's colour in every figure: its registry colour, else matplotlib's C0, C1, ... by its place among the
    modes without one, skipping the colours other modes name (and the unknown modes' gray)"""
    if mode not in lowrank.MODES:
        return UNKNOWN_COLOR
    if lowrank.MODES[mode].color:
        return lowrank.MODES[mode].color
    taken = {to_hex(m.color) for m in lowrank.MODES.values() if m.color} | {to_hex(UNKNOWN_COLOR)}
    free = [f"C{k}" for k in range(10) if to_hex(f"C{k}") not in taken]
    unnamed = [name for name, m in lowrank.MODES.items() if not m.color]
    return free[unnamed.index(mode) % len(free)]

def has_layer(mode, cls):
    """whether the mode builds its linear layers from cls (or a subclass)"""
    layer = mode_of(mode).layer
    return isinstance(layer, type) and issubclass(layer, cls)

def run_label(run, config):
    full = has_layer(config.get("mode"), lowrank.DenseLinear)  # a full W: no rank to show
    rank = "" if full else f" r={config.get('rank', '?')}"
    return f"{config.get('mode', '?')}{rank} ({run})"

def run_styles(logs):
    """(colour, linestyle, marker) per run: colour by mode, style cycles within a mode"""
    seen, styles = {}, []
    for _, config, _, _ in logs:
        mode = config.get("mode")
        k = seen[mode] = seen.get(mode, -1) + 1
        styles.append((mode_color(mode), LINESTYLES[k % 4], MARKERS[k % 4]))
    return styles

def plot_loss_curves(logs):
    logs = [l for l in logs if l[2] or l[3]]
    if not logs:
        return "no train or eval records in any log.jsonl"
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for (run, config, train, evals), (color, ls, marker) in zip(logs, run_styles(logs)):
        tr = [(r["iter"], r["loss"]) for r in train if "iter" in r and r.get("loss") is not None]
        ev = [(r["iter"], r["val_loss"]) for r in evals if "iter" in r and r.get("val_loss") is not None]
        if tr:
            ax.plot(*zip(*tr), ls, color=color, lw=0.8, alpha=0.8)
        if ev:
            ax.plot(*zip(*ev), marker, color=color, ms=5, mfc="none")
        # one legend entry per run showing both its line and its marker
        ax.plot([], [], ls, marker=marker, color=color, mfc="none", label=run_label(run, config))
    ax.set_yscale("log")  # the early loss drop would otherwise squash the end
    # label enough ticks that a narrow range (1.2 .. 4) still reads: "1.5" not "1.5x10^0"
    ax.yaxis.set_minor_locator(LogLocator(subs=(1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set(xlabel="iter", ylabel="loss (nats/token)", title="loss (lines: train, markers: val)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

def final_point(config, evals, best=False):
    """(rank as a count, final val loss, final val - train gap), or None; best: at the eval with the lowest val loss
    (early stopping) instead of the last"""
    evals = [e for e in evals if e.get("val_loss") is not None and e.get("train_loss") is not None]
    if not evals:
        return None
    last = min(evals, key=lambda e: e["val_loss"]) if best else evals[-1]
    ranks = evals[0].get("ranks") or {}
    r = float(np.median(list(ranks.values()))) if ranks else config.get("rank")
    if not isinstance(r, (int, float)) or r < 1:  # a fraction with no ranks dict: count unknown
        return None
    return r, last["val_loss"], last["val_loss"] - last["train_loss"]

SPIKE_NATS = 0.3  # a spike: a logged train loss this far above the lowest one logged before it (or not finite)

def count_spikes(losses, threshold=SPIKE_NATS):
    """how many of a run's logged train losses are spikes (see SPIKE_NATS)"""
    best, spikes = float("inf"), 0
    for loss in losses:
        if loss is None or not np.isfinite(loss) or loss > best + threshold:
            spikes += 1
        if loss is not None and np.isfinite(loss):
            best = min(best, loss)
    return spikes

def corpus_label(config, configs):
    """' <corpus file name>' when the runs span several corpora, else ''; then ' <N>k tokens' (or ' all tokens')
    when they span several training prefixes (--train_tokens)"""
    files = {c.get("input_file") for c in configs}
    label = f" {os.path.basename(str(config.get('input_file')))}" if len(files) > 1 else ""
    if len({c.get("train_tokens") or 0 for c in configs}) > 1:
        n = config.get("train_tokens") or 0
        label += f" {n / 1000:.0f}k tokens" if n else " all tokens"
    return label

def plot_rank_sweep(logs, best=False):
    """val loss and val - train gap against rank, one curve per (mode, width, depth, corpus, training prefix), ★ at
    each curve's lowest val loss (r*); best: each run's lowest val loss over its evals (early stopping), not its last"""
    groups, dense, configs = {}, {}, [config for _, config, _, _ in logs]
    for run, config, _, evals in logs:
        pt = final_point(config, evals, best)
        if pt is None:
            continue
        key = (*(config.get(k) for k in ("mode", "n_embd", "n_layer", "input_file")), config.get("train_tokens") or 0)
        groups.setdefault(key, {}).setdefault(pt[0], []).append(pt[1:])  # seeds: averaged below
        if has_layer(key[0], lowrank.DenseLinear):  # a full W: one rank only, drawn as the level to beat
            dense.setdefault(key, []).append(pt[1:])  # seeds: averaged
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return "no group of runs (same mode, n_embd, n_layer, input_file, train_tokens) with >=2 ranks"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    all_ranks = sorted({r for by_rank in groups.values() for r in by_rank})
    order = lambda setting: (str(setting[:3]), setting[3] or float("inf"))  # training prefixes small to all
    settings = sorted({k[1:] for k in groups} | {k[1:] for k in dense}, key=order)  # colour: mode; line: the rest
    label = lambda key: f"d={key[1]}{corpus_label(dict(input_file=key[3], train_tokens=key[4]), configs)}"
    for key, by_rank in sorted(groups.items(), key=lambda kv: (kv[0][0], order(kv[0][1:]))):
        i = settings.index(key[1:])
        ranks = sorted(by_rank)
        val, gap = np.array([np.mean(by_rank[r], axis=0) for r in ranks]).T
        style = dict(color=mode_color(key[0]), ls=LINESTYLES[i % 4],
                     marker=MARKERS[i % 4], label=f"{key[0]} {label(key)}")
        axes[0].plot(ranks, val, **style)
        axes[1].plot(ranks, gap, **style)
        star = int(np.argmin(val))  # r*: the rank with the lowest val loss, starred
        axes[0].plot(ranks[star], val[star], "*", ms=14, color=style["color"], mec="black")
    for key, pts in sorted(dense.items(), key=lambda kv: order(kv[0][1:])):  # a lone dense run: the reference to beat
        if key not in groups:
            for ax, y in zip(axes, np.mean(pts, axis=0)):
                ax.axhline(y, color=mode_color(key[0]), ls=LINESTYLES[settings.index(key[1:]) % 4], lw=1,
                           label=f"{key[0]} {label(key)}")
    what, at = ("best val loss (early stopping)", " at best val") if best else ("final val loss", "")
    for ax, ylabel in zip(axes, (f"{what} (nats/token)", f"val - train loss{at} (nats/token)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_ranks)
        ax.xaxis.set_major_formatter(ScalarFormatter())  # "64" rather than "2^6"
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set(xlabel="rank (median over matrices)", ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_title(f"{what} vs rank (★: lowest, r*)")
    axes[1].set_title("generalisation gap vs rank")
    fig.tight_layout()
    return fig

def plot_tsvd_ranks(logs):
    runs = [(run, evals) for run, config, _, evals in logs  # a TSVD layer's rank shrinks as it trains
            if has_layer(config.get("mode"), lowrank.TSVDLinear) and any(e.get("ranks") for e in evals)]
    if not runs:
        return "no tsvd run with ranks in its eval records"
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5), squeeze=False)
    for ax, (run, evals) in zip(axes.flat, runs):
        evals = [e for e in evals if e.get("ranks") and "iter" in e]
        for j, proj in enumerate(PROJS):
            means = [np.mean([r for n, r in e["ranks"].items() if n.split(".")[-1] == proj] or [np.nan])
                     for e in evals]
            if not np.all(np.isnan(means)):
                ax.plot([e["iter"] for e in evals], means, "o-", ms=3, color=f"C{j}", label=proj)
        ax.set(title=f"TSVD rank ({run})", xlabel="iter", ylabel="rank (mean over layers)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

def run_lr(config):
    """the step size of a run: the config value its mode names (lowrank.MODES step_size: spectron_lr for Spectron,
    muon_lr for Muon, AdamW's peak learning_rate otherwise)"""
    return config.get(mode_of(config.get("mode")).step_size)

def plot_stability(logs):
    """train loss and the largest ‖ΔW‖₂ of any layer per step: the quantity Spectron bounds (dotted: the bound of
    every run whose mode promises one, its step size scaled by the LR schedule) and NFW lets grow"""
    logs = [l for l in logs if any(r.get("max_dW") is not None for r in l[2])]
    if not logs:
        return "no max_dW in any train record"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for (run, config, train, _), (color, ls, _) in zip(logs, run_styles(logs)):
        mode = mode_of(config.get("mode"))
        label = f"{run_label(run, config)} {mode.step_size}={run_lr(config)}"
        rows = [r for r in train if r.get("max_dW") is not None and np.isfinite(r["max_dW"])]
        axes[0].plot([r["iter"] for r in train], [r["loss"] for r in train], ls, color=color, lw=0.8, label=label)
        axes[1].plot([r["iter"] for r in rows], [r["max_dW"] for r in rows], ls, color=color, lw=0.8, label=label)
        if mode.bounded:  # the bound it promises: ‖ΔW‖₂ ≤ its step size at the step's scheduled LR
            bounded = [r for r in rows if r.get("lr_factor") is not None]
            axes[1].plot([r["iter"] for r in bounded], [run_lr(config) * r["lr_factor"] for r in bounded], ":",
                         color=color, lw=1.5, label=f"‖ΔW‖₂ = {mode.step_size} bound of {run_label(run, config)}")
    axes[0].set(xlabel="iter", ylabel="train loss (nats/token)", title="train loss", yscale="log")
    axes[0].yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes[0].yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes[1].set(xlabel="iter", ylabel="max over layers of ‖ΔW‖₂", title="largest spectral step of any W", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

def chosen_step(vals_by_step):
    """the tuning protocol's pick from {step size: [final val loss per seed]}: the best seed mean among the step
    sizes run with the most seeds (the best first-seed value and its neighbours, once they have a second seed)"""
    most = max(len(v) for v in vals_by_step.values())
    return min((lr for lr, v in vals_by_step.items() if len(v) == most), key=lambda lr: np.mean(vals_by_step[lr]))

def plot_lr_sweep(logs):
    """final val loss, largest ‖ΔW‖₂ and spike count against each mode's step size; seeds: mean and range;
    a star on each mode's pick (the best mean among the values with the most seeds: the tuning protocol)"""
    by_mode = {}
    for _, config, train, evals in logs:
        if evals and evals[-1].get("val_loss") is not None:
            dws = [r["max_dW"] for r in train if r.get("max_dW") is not None and np.isfinite(r["max_dW"])]
            point = (evals[-1]["val_loss"], max(dws, default=np.nan), count_spikes([r.get("loss") for r in train]))
            by_mode.setdefault(config.get("mode"), {}).setdefault(run_lr(config), []).append(point)
    by_mode = {m: v for m, v in by_mode.items() if len(v) >= 3}
    if not by_mode:
        return "no mode with runs at >=3 learning rates"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for mode, by_lr in sorted(by_mode.items()):
        lrs = sorted(by_lr)
        best = lrs.index(chosen_step({lr: [p[0] for p in by_lr[lr]] for lr in lrs}))
        knob = mode_of(mode).step_size
        for ax, j in zip(axes, range(3)):
            ys = [np.array([p[j] for p in by_lr[lr]], dtype=float) for lr in lrs]
            mean = np.array([y.mean() for y in ys])
            err = np.array([[m - y.min() for m, y in zip(mean, ys)], [y.max() - m for m, y in zip(mean, ys)]])
            n = max(len(y) for y in ys)
            ax.errorbar(lrs, mean, yerr=err, marker="o", capsize=3, color=mode_color(mode),
                        label=f"{mode} ({knob}; {n} seed{'s' * (n > 1)}: mean, min–max; ★ {lrs[best]:g})")
            if j == 0:
                ax.plot(lrs[best], mean[best], "*", ms=16, color=mode_color(mode), mec="black")
        if mode_of(mode).bounded:  # the bound its optimizer promises: ‖ΔW‖₂ ≤ its step size
            axes[1].plot(lrs, lrs, "--", color=mode_color(mode), lw=1, label=f"‖ΔW‖₂ = {knob} ({mode})")
    knobs = ", ".join(sorted({mode_of(mode).step_size for mode in by_mode}))  # each mode's own step size
    for ax, ylabel, scale, corner in zip(axes, ("final val loss (nats/token)", "largest ‖ΔW‖₂ of any layer",
                                                f"spikes (logged loss > {SPIKE_NATS} above its best so far)"),
                                         ("linear", "log", "linear"), ("best", "upper left", "best")):
        ax.set(xscale="log", yscale=scale, xlabel=f"step size (each mode's own: {knobs})", ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc=corner)  # small LRs make small steps: the upper left of ‖ΔW‖₂ stays empty
    fig.tight_layout()
    return fig

FIGURES = ["spectra_curves", "rank_heatmaps", "alpha_depth", "rank_depth", "compression_wave", "loss_curves",
           "rank_sweep", "tsvd_ranks", "stability", "lr_sweep"]
ON_REQUEST = ["rank_sweep_best"]  # made only when --figures names them
# the command line's keys (positional arguments are the run directories)
out = ""  # directory for the PNGs ('': the first RUN_DIR)
figures = ",".join(FIGURES)  # the figures to make, comma-separated (default: all but those on request)
show = False  # also open the figures in a window
CLI_DEFAULTS = dict(out=out, figures=figures, show=show)

# -----------------------------------------------------------------------------

def save_png(fig, path, dpi=110):
    """every figure's writer: matplotlib's PNG re-encoded (compact_png), the same pixels and text"""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    compact_png(buf, path)

def compact_png(src, path):
    """a PNG (a file or file object) written to path without its alpha channel when every pixel is opaque (as in
    matplotlib's, 12% of a figure's bytes) and at zlib's hardest: the same pixels and text chunks, and the same
    pixels always give the same bytes (the committed figures were re-encoded so)"""
    with Image.open(src) as im:
        im.load()
        info = PngImagePlugin.PngInfo()
        for key, value in im.info.items():
            if isinstance(value, str):
                info.add_text(key, value)
        opaque = im.mode == "RGBA" and im.getextrema()[3] == (255, 255)
        (im.convert("RGB") if opaque else im).save(path, format="png", optimize=True, pnginfo=info,
                                                   dpi=im.info.get("dpi", (72, 72)))

def emit(result, out_dir, fname, show):
    """save a figure and print its path, or print the one-line reason it is skipped"""
    if isinstance(result, str):
        print(f"skip {fname[:-4]}: {result}")
        return
    path = os.path.join(out_dir, fname)
    save_png(result, path)  # layout is already tight: no second draw
    print(path)
    if not show:
        plt.close(result)

def unwritable(path, folder=False):
    """Why path cannot be written, or None: a folder (made here if missing) or a file in an existing folder (not
    left behind). The tools check their outputs with it before any work, so that a bad one costs nothing."""
    try:
        if folder:
            os.makedirs(path, exist_ok=True)
            tempfile.TemporaryFile(dir=path).close()
        else:
            existed = os.path.exists(path)
            open(path, "a").close()
            if not existed:
                os.remove(path)
    except FileExistsError:
        return f"{path} is a file, not a folder"
    except OSError as e:
        return f"cannot write {path}: {e.strerror}"
    return None

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    run_dirs = [a for a in argv if not a.startswith("-")]
    args = dict(CLI_DEFAULTS, **parse_args(CLI_DEFAULTS, [a for a in argv if a.startswith("-")], source=__file__,
                                          notes=f"(here: python plot_spectra.py RUN_DIR [RUN_DIR ...] [--key=value "
                                                f"...])\nfigures: {', '.join(FIGURES)}; on request: "
                                                f"{', '.join(ON_REQUEST)}"))
    if not run_dirs:
        print("error: no RUN_DIR given (python plot_spectra.py RUN_DIR [RUN_DIR ...] [--key=value ...])",
              file=sys.stderr)
        return 2
    wanted = [f.strip() for f in args["figures"].split(",") if f.strip()]
    for f in wanted or [""]:  # --figures= names none
        if f not in FIGURES + ON_REQUEST:
            print(f"error: unknown figure {f!r}; known: {', '.join(FIGURES + ON_REQUEST)}", file=sys.stderr)
            return 2
    for d in run_dirs:
        if not os.path.isdir(d):
            print(f"error: not a directory: {d}", file=sys.stderr)
            return 2
    runs = [(d, os.path.basename(os.path.normpath(os.path.abspath(d))), load_log(d), load_spectra(d))
            for d in run_dirs]
    if all(log is None and spec is None for _, _, log, spec in runs):
        print(f"error: no log.jsonl or spectra.npz in {' '.join(run_dirs)}", file=sys.stderr)
        return 2
    for d, _, log, spec in runs:  # a file there that holds nothing: the run is not what the figures would say
        bad = ("log.jsonl" if log is not None and not any(log) else
               "spectra.npz" if spec is None and os.path.isfile(os.path.join(d, "spectra.npz")) else None)
        if bad:
            print(f"error: {os.path.join(d, bad)} holds no readable record (empty, or not a {bad})", file=sys.stderr)
            return 2
    out = args["out"] or run_dirs[0]
    why = unwritable(out, folder=True)
    if why:
        print(f"error: --out: {why}", file=sys.stderr)
        return 2

    # per-run spectra figures, suffixed with the run name when there are several runs
    for d, name, _, spec in runs:
        suffix = f"_{name}" if len(runs) > 1 else ""
        groups = group_matrices(spec[1]) if spec else {}
        why = (f"no spectra.npz in {d}" if spec is None else
               f"no blocks.<i>.*.<{'|'.join(PROJS)}> arrays in {os.path.join(d, 'spectra.npz')}")
        for fig_name, fn in [("spectra_curves", plot_spectra_curves), ("rank_heatmaps", plot_rank_heatmaps),
                             ("alpha_depth", plot_alpha_depth), ("rank_depth", plot_rank_depth),
                             ("compression_wave", plot_compression_wave)]:
            if fig_name in wanted:
                emit(fn(spec[0], groups, name) if groups else why, out, f"{fig_name}{suffix}.png", args["show"])

    # figures comparing runs, from the logs
    logs = [(name, *log) for _, name, log, _ in runs if log is not None]
    for fig_name, fn in [("loss_curves", plot_loss_curves), ("rank_sweep", plot_rank_sweep),
                         ("rank_sweep_best", lambda logs: plot_rank_sweep(logs, best=True)),
                         ("tsvd_ranks", plot_tsvd_ranks), ("stability", plot_stability), ("lr_sweep", plot_lr_sweep)]:
        if fig_name in wanted:
            emit(fn(logs) if logs else f"no log.jsonl in {' '.join(run_dirs)}", out, f"{fig_name}.png", args["show"])
    if args["show"]:
        plt.show()
    return 0

if __name__ == "__main__":
    sys.exit(main())
