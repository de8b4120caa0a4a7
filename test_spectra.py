"""
Tests for plot_spectra.py: the spectrum metrics, the loaders, and the command line
on a tiny synthetic pair of runs. Run with: python -m pytest -q test_spectra.py
"""
import csv
import gzip
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.colors import to_hex
from PIL import Image

import lowrank
import plot_spectra as ps
import table
from conftest import REPO, assert_refused, in_process, records, run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROJS = ["q", "k", "v", "o", "up", "down"]

# -----------------------------------------------------------------------------
# metrics

def test_identity_spectrum():
    s = np.ones(8)
    assert ps.effective_rank(s) == pytest.approx(8)
    assert ps.stable_rank(s) == pytest.approx(8)
    assert ps.energy_rank(s, 1.0) == 8

def test_rank_one_spectrum():
    s = np.array([3.0, 0, 0, 0])
    assert ps.effective_rank(s) == pytest.approx(1)
    assert ps.stable_rank(s) == pytest.approx(1)
    assert ps.energy_rank(s) == 1

def test_energy_rank():
    s = [3, 2, 1, 0.1]  # squares 9, 4, 1, 0.01: cumulative 9, 13, 14, 14.01 of 14.01
    assert ps.energy_rank(s, 0.99) == 3  # 0.99 * 14.01 = 13.87 -> needs 14
    assert ps.energy_rank(s, 0.9) == 2  # 0.9 * 14.01 = 12.61 -> 13 is enough

def test_powerlaw_alpha():
    s = np.arange(1, 101, dtype=np.float64) ** -1.5
    assert ps.powerlaw_alpha(s) == pytest.approx(1.5, abs=1e-6)
    assert ps.powerlaw_alpha(s[::-1]) == pytest.approx(1.5, abs=1e-6)  # order does not matter

def test_nan_padding_ignored():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    padded = np.concatenate([s, np.full(5, np.nan)]).astype(np.float32)
    for fn in (ps.stable_rank, ps.effective_rank, ps.energy_rank, ps.powerlaw_alpha):
        assert fn(padded) == pytest.approx(fn(s), rel=1e-6), fn.__name__

def test_empty_spectrum_is_nan():
    for fn in (ps.stable_rank, ps.effective_rank, ps.energy_rank, ps.powerlaw_alpha):
        assert np.isnan(fn(np.full(3, np.nan)))

# -----------------------------------------------------------------------------
# synthetic runs

def write_spectra(run_dir, steps, ranks_at_step, n_layer=2, width=8):
    """power-law spectra; ranks_at_step[t] values per matrix, NaN-padded to the widest"""
    arrays = {"steps": np.array(steps, dtype=np.int64)}
    for i in range(n_layer):
        for proj in PROJS:
            a = np.full((len(steps), width), np.nan, dtype=np.float32)
            for t, r in enumerate(ranks_at_step):
                a[t, :r] = np.arange(1, r + 1) ** -(0.5 + 0.1 * t + 0.2 * i)
            part = "attn" if proj in "qkvo" else "mlp"
            arrays[f"blocks.{i}.{part}.{proj}"] = a
    np.savez(os.path.join(run_dir, "spectra.npz"), **arrays)
    return arrays

def write_log(run_dir, mode, rank, steps, ranks_at_step, n_layer=2, truncate=True, **config_extra):
    config = dict(kind="config", mode=mode, rank=rank, n_layer=n_layer, n_embd=8, n_head=2,
                  max_iters=steps[-1], out_dir=run_dir, input_file="data/tiny.txt", **{"seed": 0, **config_extra})
    lines = [json.dumps(config)]
    for it in range(0, steps[-1] + 1, 5):
        lines.append(json.dumps(dict(kind="train", iter=it, loss=3.0 / (1 + it / 10), lr=1e-3,
                                     ms=1.0, max_dW=0.01 * rank / (1 + it))))
    for t, it in enumerate(steps):
        names = [f"blocks.{i}.{'attn' if p in 'qkvo' else 'mlp'}.{p}" for i in range(n_layer) for p in PROJS]
        lines.append(json.dumps(dict(kind="eval", iter=it, train_loss=2.0 / (1 + t) + 0.1 * rank,
                                     val_loss=2.1 / (1 + t) + 0.1 * rank, params=1000 * rank,
                                     flops_per_token=6000 * rank, ranks={n: ranks_at_step[t] for n in names})))
    text = "\n".join(lines) + "\n"
    if truncate:
        text += '{"kind": "train", "iter": 99, "lo'  # a killed run's half-written line
    with open(os.path.join(run_dir, "log.jsonl"), "w") as f:
        f.write(text)

def make_run(root, name, mode, rank, ranks_at_step, spectra=True):
    run_dir = os.path.join(root, name)
    os.makedirs(run_dir)
    steps = [0, 10, 20, 30]
    write_log(run_dir, mode, rank, steps, ranks_at_step)
    if spectra:
        write_spectra(run_dir, steps, ranks_at_step)
    return run_dir

# -----------------------------------------------------------------------------
# loaders

def test_load_spectra_roundtrip(tmp_path):
    arrays = write_spectra(str(tmp_path), [0, 10, 20], [6, 5, 4])
    steps, mats = ps.load_spectra(str(tmp_path))
    np.testing.assert_array_equal(steps, arrays["steps"])
    assert set(mats) == set(arrays) - {"steps"}
    for name, a in mats.items():
        np.testing.assert_array_equal(a, arrays[name])  # NaN == NaN for assert_array_equal
        assert a.dtype == np.float32

def test_load_log_skips_truncated_line(tmp_path):
    write_log(str(tmp_path), "nfw", 4, [0, 10], [4, 4])
    config, train, evals = ps.load_log(str(tmp_path))
    assert config["mode"] == "nfw" and config["rank"] == 4
    assert [r["iter"] for r in train] == [0, 5, 10]
    assert len(evals) == 2 and evals[0]["ranks"]["blocks.0.attn.q"] == 4

def test_missing_files_load_as_none(tmp_path):
    assert ps.load_log(str(tmp_path)) is None
    assert ps.load_spectra(str(tmp_path)) is None

def test_parse_name():
    assert ps.parse_name("blocks.3.attn.q") == (3, "q")
    assert ps.parse_name("blocks.11.mlp.down") == (11, "down")
    assert ps.parse_name("lm_head") is None

# -----------------------------------------------------------------------------
# command line

def test_cli_two_runs(tmp_path):
    # same mode and shape, different rank: one group for rank_sweep. The rank-8 run is pruned
    # (NaN-padded spectra); the rank-4 run has no spectra.npz, which also keeps this test quick
    a = make_run(str(tmp_path), "tsvd_r4", "tsvd", 4, [4, 4, 4, 4], spectra=False)
    b = make_run(str(tmp_path), "tsvd_r8", "tsvd", 8, [8, 6, 5, 3])
    out = str(tmp_path / "plots")
    res = run("plot_spectra.py", a, b, f"--out={out}")
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stdout.splitlines()
    written = [l for l in lines if l.endswith(".png")]
    expected = {"spectra_curves_tsvd_r8.png", "rank_heatmaps_tsvd_r8.png", "alpha_depth_tsvd_r8.png",
                "rank_depth_tsvd_r8.png", "compression_wave_tsvd_r8.png", "loss_curves.png", "rank_sweep.png", "tsvd_ranks.png", "stability.png"}
    assert {os.path.basename(p) for p in written} == expected
    for p in written:
        assert os.path.dirname(os.path.abspath(p)) == os.path.abspath(out)
        with open(p, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE, p
        assert os.path.getsize(p) > 1000, p
    assert os.path.isfile(os.path.join(out, "rank_sweep.png"))
    skips = sorted(l for l in lines if l.startswith("skip"))
    assert "skip lr_sweep: no mode with runs at >=3 learning rates" in skips
    spectra_skips = [l for l in skips if "lr_sweep" not in l]
    assert len(spectra_skips) == 5 and all("_tsvd_r4: no spectra.npz" in l for l in spectra_skips), skips
    assert len(lines) == len(written) + len(skips)  # nothing else is printed

def test_cli_nonexistent_dir(tmp_path):
    res = run("plot_spectra.py", tmp_path / "nope", check=False)
    assert_refused(res.returncode, res.stderr, "nope")
    assert res.stdout == ""

def test_cli_empty_dir(tmp_path, capsys):
    # in-process (no subprocess start-up): same code path as the command line
    assert ps.main([str(tmp_path)]) == 2
    captured = capsys.readouterr()
    msg = (captured.out + captured.err).strip()
    assert len(msg.splitlines()) == 1 and "Traceback" not in msg
    assert os.listdir(tmp_path) == []

def test_cli_log_only(tmp_path, capsys):
    run = make_run(str(tmp_path), "nfw_r4", "nfw", 4, [4, 4, 4, 4], spectra=False)
    assert ps.main([run]) == 0
    out = capsys.readouterr().out
    assert os.path.isfile(os.path.join(run, "loss_curves.png"))
    skips = [l for l in out.splitlines() if l.startswith("skip")]
    for fig in ("spectra_curves", "rank_heatmaps", "alpha_depth", "rank_depth", "compression_wave", "rank_sweep",
                "tsvd_ranks"):
        assert sum(l.startswith(f"skip {fig}") for l in skips) == 1, out
    assert all("spectra.npz" in l for l in skips[:5])

def test_cli_takes_the_repos_key_value_style(tmp_path, capsys):
    """--out=DIR --figures=a,b --show=False, as train.py takes its keys; anything else is one line and exit 2"""
    run = make_run(str(tmp_path), "nfw_r4", "nfw", 4, [4, 4, 4, 4], spectra=False)
    out = str(tmp_path / "plots")
    assert ps.main([run, f"--out={out}", "--figures=loss_curves,stability", "--show=False"]) == 0
    assert sorted(os.listdir(out)) == ["loss_curves.png", "stability.png"]


def bad_run(root, kind):
    """a run dir for the command line's refusals: 'good', or damaged as its name says"""
    run_dir = make_run(str(root), kind, "nfw", 4, [4, 4, 4, 4], spectra=kind == "bad_npz")
    if kind in ("empty_log", "notjson_log"):  # records none: every figure would be skipped, exit 0
        with open(os.path.join(run_dir, "log.jsonl"), "w") as f:
            f.write("" if kind == "empty_log" else "not json\n")
    if kind == "bad_npz":
        with open(os.path.join(run_dir, "spectra.npz"), "wb") as f:
            f.write(b"not an npz")
    return run_dir


PLOT_BAD = [  # (the run: 'good', damaged, or none; the arguments after it ({tmp}, {run}); a key word of the error)
    ("good", ["--out", "{tmp}/plots"], "--key=value"), ("good", ["--show"], "--key=value"),
    ("good", ["--show=yes"], "show"), ("good", ["--figurs=loss_curves"], "figures"),
    ("good", ["--figures=nope"], "nope"), (None, [], "RUN_DIR"),
    ("good", ["--figures="], "figure"),  # names no figure: it made none, exit 0
    ("good", ["--out=/proc/plots"], "out"),  # unwritable: refused before any figure (was a traceback)
    ("good", ["--out={run}/log.jsonl"], "out"),  # a file where the folder goes
    ("empty_log", [], "log.jsonl"), ("notjson_log", [], "log.jsonl"), ("bad_npz", [], "spectra.npz"),
]


@pytest.mark.parametrize("kind,args,word", PLOT_BAD, ids=[f"{k} {' '.join(a)}" for k, a, _ in PLOT_BAD])
def test_cli_refuses_bad_input_in_one_line(tmp_path, kind, args, word):
    run_dir = bad_run(tmp_path, kind) if kind else None
    code, out, err = in_process("plot_spectra.py", *[run_dir] * bool(run_dir),
                                *(a.format(tmp=tmp_path, run=run_dir) for a in args))
    assert_refused(code, err, word)
    assert not (tmp_path / "plots").exists() and not any(f.endswith(".png") for f in os.listdir(run_dir or tmp_path))


def test_cli_help_lists_the_keys_and_the_figures():
    code, out, err = in_process("plot_spectra.py", "--help")
    assert code == 0 and err == "" and "show" in out and "lr_sweep" in out

# -----------------------------------------------------------------------------
# the spectral lifecycle: compression waves, depth profiles, early spectra

def spectrum_of_stable_rank(sr, n=8):
    """[1, c, ..., c] with stable rank 1 + (n - 1) c² = sr"""
    return np.array([1.0] + [np.sqrt((sr - 1) / (n - 1))] * (n - 1))

def test_compression_wave_marks_each_layers_lowest_stable_rank():
    steps = np.array([0, 10, 20, 30, 50, 100])  # spectra_early's schedule: dense first, then sparse
    wave = {0: [6, 4, 2, 3, 4, 5], 1: [6, 5, 4, 3, 2.5, 2]}  # layer 0 dips at step 20 and recovers; layer 1 never
    by_layer = {l: np.array([spectrum_of_stable_rank(sr) for sr in rows]) for l, rows in wave.items()}
    minima = ps.compression_minima(steps, by_layer)
    assert minima[0] == (20, pytest.approx(2), pytest.approx(5)) and minima[1] == (100, pytest.approx(2),
                                                                                   pytest.approx(2))
    fig = ps.plot_compression_wave(steps, {"q": by_layer, "up": by_layer}, "run")
    marks = [(l.get_xdata()[0], l.get_ydata()[0]) for l in fig.axes[0].get_lines() if l.get_marker() == "v"]
    assert marks == [(20, pytest.approx(2)), (100, pytest.approx(2))]
    assert "layer 0: min 2 at 20, end 5" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ps.plt.close(fig)
    # snapshots are evenly spaced in steps (0, 30, 50, 100), not in records (0, 20, 30, 100)
    assert list(ps.snapshot_idx(steps)) == [0, 3, 4, 5] and list(ps.snapshot_idx(np.arange(0, 301, 10))) == \
        [0, 10, 20, 30]
    assert list(ps.snapshot_idx(np.array([0, 10, 20, 30, 40, 50, 100, 150, 200, 250, 300]))) == [0, 6, 8, 10]

def test_depth_figures_from_one_run(tmp_path):
    run = make_run(str(tmp_path), "dense", "dense", 8, [8, 8, 8, 8])
    assert ps.main([run, "--figures=rank_depth,compression_wave,alpha_depth"]) == 0
    assert sorted(f for f in os.listdir(run) if f.endswith(".png")) == ["alpha_depth.png", "compression_wave.png",
                                                                        "rank_depth.png"]
    steps, spectra = ps.load_spectra(run)
    fig = ps.plot_rank_depth(steps, ps.group_matrices(spectra), "dense")
    last = fig.axes[0].get_lines()[-1]  # the last step's stable rank against depth
    assert list(last.get_ydata()) == pytest.approx([ps.stable_rank(spectra[f"blocks.{i}.attn.q"][-1]) for i in (0, 1)])
    ps.plt.close(fig)

# -----------------------------------------------------------------------------
# sweeps: spikes, the LR-sweep figure, --figures, experiments/table.py

def test_count_spikes():
    # 2.4 is 0.4 above the best so far (2.0): a spike; 2.2 is not; a NaN always is; the best never rises
    assert ps.count_spikes([4.0, 3.0, 2.0, 2.2, 2.4, float("nan"), 1.9, 2.19, 2.21]) == 3
    assert ps.count_spikes([3.0, 2.0, 1.0]) == 0
    assert ps.count_spikes([1.0, 1.5], threshold=0.4) == 1

def make_lr_runs(root, lrs, seeds=(0,)):
    """NFW runs at AdamW LRs and Spectron runs at η = LR/10, whose final val loss is 2 + LR and max ΔW is LR"""
    runs = []
    for lr in lrs:
        for seed in seeds:
            for mode, knob in (("nfw", dict(learning_rate=lr, spectron_lr=0.1)),
                               ("spectron", dict(learning_rate=1e-3, spectron_lr=lr / 10))):
                d = os.path.join(root, f"{mode}_lr{lr}_seed{seed}")
                os.makedirs(d)
                write_log(d, mode, 4, [0, 10], [4, 4], truncate=False, seed=seed, **knob)
                with open(os.path.join(d, "log.jsonl")) as f:
                    rows = [json.loads(l) for l in f]
                for r in rows:
                    if r["kind"] == "train":
                        r.update(max_dW=lr * (1 + seed), lr_factor=1.0, loss=r["loss"] + 2 * (seed == 1 and r["iter"] == 5))
                    if r["kind"] == "eval":
                        r["val_loss"] = 2 + lr + 0.01 * seed
                rows.append(dict(kind="summary", iter=10, seconds=60.0, spectra_seconds=0.6))
                with open(os.path.join(d, "log.jsonl"), "w") as f:
                    f.write("\n".join(map(json.dumps, rows)) + "\n")
                runs.append(d)
    return runs

def test_stability_figure_draws_spectrons_bound_eta_times_the_schedule(tmp_path):
    runs = make_lr_runs(str(tmp_path), [0.1])  # NFW at LR 0.1, Spectron at η = 0.01; lr_factor 1 at every step
    for d in runs:
        path = os.path.join(d, "log.jsonl")
        with open(path) as f:
            rows = [json.loads(l) for l in f]
        for r in rows:
            if r["kind"] == "train":
                r["lr_factor"] = 0.5 if r["iter"] >= 5 else 1.0
        with open(path, "w") as f:
            f.write("\n".join(map(json.dumps, rows)) + "\n")
    fig = ps.plot_stability([(os.path.basename(d), *ps.load_log(d)) for d in runs])
    bounds = [line for line in fig.axes[1].get_lines() if line.get_label().startswith("‖ΔW‖₂ = spectron_lr bound")]
    assert len(bounds) == 1 and "spectron" in bounds[0].get_label()  # Spectron's only: NFW promises none
    assert list(bounds[0].get_xdata()) == [0, 5, 10] and list(bounds[0].get_ydata()) == [0.01, 0.005, 0.005]
    ps.plt.close(fig)

def test_figures_ask_the_registry_for_colour_step_size_and_bound(tmp_path, monkeypatch):
    """A mode added to lowrank.MODES without a colour gets one no other mode has, the same at every call; the
    stability and LR-sweep figures name its step size by its config key and draw the bound it promises."""
    modes = dict(lowrank.MODES, spectron2=lowrank.MODES["spectron"]._replace(color=None),
                 nfw2=lowrank.MODES["nfw"]._replace(color=None))
    monkeypatch.setattr(lowrank, "MODES", modes)
    colors = {m: to_hex(ps.mode_color(m)) for m in modes}
    assert len(set(colors.values())) == len(modes) and colors == {m: to_hex(ps.mode_color(m)) for m in modes}
    assert ps.mode_color("gone") == ps.UNKNOWN_COLOR and to_hex(ps.UNKNOWN_COLOR) not in colors.values()
    runs = make_lr_runs(str(tmp_path), [0.01, 0.1, 1.0])
    for d in runs:  # the Spectron runs become runs of the new mode
        path = os.path.join(d, "log.jsonl")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace('"mode": "spectron"', '"mode": "spectron2"'))
    logs = [(os.path.basename(d), *ps.load_log(d)) for d in runs]
    fig = ps.plot_stability(logs)
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert sum(label.startswith("‖ΔW‖₂ = spectron_lr bound of spectron2") for label in labels) == 3
    assert "spectron2 r=4 (spectron_lr0.1_seed0) spectron_lr=0.01" in labels  # not lr=0.01
    assert "nfw r=4 (nfw_lr0.1_seed0) learning_rate=0.1" in labels
    ps.plt.close(fig)
    fig = ps.plot_lr_sweep(logs)
    labels = fig.axes[1].get_legend_handles_labels()[1]
    assert "‖ΔW‖₂ = spectron_lr (spectron2)" in labels and not any("(nfw)" in label for label in labels)
    assert any(label.startswith("spectron2 (spectron_lr;") for label in labels)
    assert fig.axes[0].get_xlabel() == "step size (each mode's own: learning_rate, spectron_lr)"
    ps.plt.close(fig)

def test_lr_sweep_figure_only_what_figures_asks(tmp_path, capsys):
    runs = make_lr_runs(str(tmp_path / "runs"), [0.01, 0.1, 1.0])
    out = str(tmp_path / "plots")
    assert ps.main([*runs, f"--out={out}", "--figures=lr_sweep,rank_sweep"]) == 0
    assert sorted(os.listdir(out)) == ["lr_sweep.png"]  # no per-run figures, and no group with >=2 ranks
    assert "skip rank_sweep" in capsys.readouterr().out
    two = make_lr_runs(str(tmp_path / "two"), [0.01, 0.1])
    assert ps.main([*two, f"--out={out}", "--figures=lr_sweep"]) == 0
    assert "skip lr_sweep: no mode with runs at >=3 learning rates" in capsys.readouterr().out
    assert ps.main([*runs, "--figures=lr_sweep,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err

def test_table_merges_seeds_and_writes_csv(tmp_path, capsys):
    runs = make_lr_runs(str(tmp_path), [0.01, 0.1], seeds=(0, 1))
    table.main([*runs, f"--csv={tmp_path / 'runs.csv'}"])
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["lr"] for r in rows} == {"0.01", "0.1", "0.001", "0.01"}
    nfw = next(r for r in rows if r["mode"] == "nfw" and r["lr"] == "0.1" and r["seed"] == "1")
    assert float(nfw["val"]) == pytest.approx(2.11) and float(nfw["max_dw"]) == pytest.approx(0.2)
    assert nfw["spikes"] == "1" and nfw["logged"] == "3"  # loss +2 at iter 5 of seed 1
    capsys.readouterr()
    table.main([*runs, "--seeds", "--columns=mode,lr,seed,val,max_dw,spikes"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 4  # header, rule, one row per (mode, LR)
    assert "| nfw | 0.1 | 0,1 | 2.1050 ±0.0050 (2) | 0.150 ±0.050 (2) | 0.5 ±0.5 (2) |" in lines


TABLE_BAD = [  # (arguments: {runs} two finished runs, {tmp} a fresh folder; a key word of the one-line error)
    (["{runs}", "--columns=val,nope"], "nope"), (["{tmp}/none"], "none"), ([], "RUN_DIR"),
    (["{tmp}/notjson.log.jsonl"], "notjson"),  # not JSON: was a traceback
    (["{tmp}/foreign.log.jsonl"], "foreign"),  # JSON, but not a train.py log: was a KeyError
    (["{runs}", "--csv=/proc/runs.csv"], "csv"),  # unwritable: was a traceback, after the work
    (["{runs}", "--csv={tmp}"], "csv"),  # a folder where the CSV file goes
    (["{runs}", "--seeds=no"], "seeds"), (["{runs}", "--best=maybe"], "best"),  # were taken as yes
]


@pytest.mark.parametrize("args,word", TABLE_BAD, ids=[" ".join(a) for a, _ in TABLE_BAD])
def test_table_refuses_bad_input_in_one_line(tmp_path, args, word):
    runs = make_lr_runs(str(tmp_path / "runs"), [0.01])
    (tmp_path / "notjson.log.jsonl").write_text("not json\n")
    (tmp_path / "foreign.log.jsonl").write_text('{"kind": "config"}\n{"kind": "eval", "val_loss": 1.0}\n')
    argv = [a for arg in args for a in (runs if arg == "{runs}" else [arg.format(tmp=tmp_path)])]
    code, out, err = in_process("experiments/table.py", *argv)
    assert_refused(code, err, word)
    assert out == ""


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_table_help_lists_its_keys(flag):
    code, out, err = in_process("experiments/table.py", flag)
    assert code == 0 and err == "" and "seeds" in out and "columns" in out


def test_a_gzipped_log_reads_as_the_plain_one(tmp_path):
    """the logs committed under assets/ are gzipped (NAME.log.jsonl.gz): read_log, table.py and experiments/lib.sh's
    restore read one as the plain log it was made from; one cut short is refused in one line"""
    run_dir = make_lr_runs(str(tmp_path / "runs"), [0.01])[0]
    plain = os.path.join(run_dir, "log.jsonl")
    with open(plain, "rb") as f:
        text = f.read()
    committed = tmp_path / "assets" / f"{os.path.basename(run_dir)}.log.jsonl.gz"
    committed.parent.mkdir()
    committed.write_bytes(gzip.compress(text, mtime=0))
    assert ps.read_log(str(committed)) == ps.read_log(run_dir) == ps.read_log(plain) == list(map(json.loads,
                                                                                                text.splitlines()))
    assert ps.run_name(str(committed)) == ps.run_name(plain.removesuffix("/log.jsonl")) == "nfw_lr0.01_seed0"
    table = run("experiments/table.py", run_dir, "--columns=run,mode,lr,val,max_dw,spikes,ms,minutes").stdout
    assert table == run("experiments/table.py", committed, "--columns=run,mode,lr,val,max_dw,spikes,ms,minutes").stdout
    assert "| nfw_lr0.01_seed0 | nfw | 0.01 | 2.0100 | 0.010 | 0 / 3 | 1 | 1.0 |" in table
    restored = tmp_path / "restored"  # a committed log becomes a finished run, as the experiment scripts do it
    subprocess.run(["bash", "-c", f"source {REPO}/experiments/lib.sh && restore_runs {committed.parent} {restored}"],
                   check=True)
    assert (restored / "nfw_lr0.01_seed0" / "log.jsonl").read_bytes() == text
    assert records(restored / "nfw_lr0.01_seed0", "eval") == [r for r in ps.read_log(str(committed))
                                                              if r["kind"] == "eval"]
    committed.write_bytes(gzip.compress(text, mtime=0)[:-40])
    with pytest.raises(ValueError, match="cut short"):
        ps.read_log(str(committed))
    p = run("experiments/table.py", committed, check=False)
    assert_refused(p.returncode, p.stderr, "cut short")


def test_figures_are_matplotlibs_pixels_without_the_alpha_channel(tmp_path):
    """save_png, every figure's writer: matplotlib's pixels and text, RGB when all are opaque, smaller; the same
    bytes as compact_png's re-encoding of matplotlib's own PNG (what the committed figures went through)"""
    fig, ax = ps.plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], label="σ")
    ax.legend()
    fig.savefig(tmp_path / "matplotlib.png", dpi=110)
    ps.save_png(fig, tmp_path / "ours.png")
    ps.plt.close(fig)
    ps.compact_png(tmp_path / "matplotlib.png", tmp_path / "reencoded.png")
    ours, theirs = Image.open(tmp_path / "ours.png"), Image.open(tmp_path / "matplotlib.png")
    assert ours.mode == "RGB" and theirs.mode == "RGBA" and ours.info == theirs.info  # Software, dpi
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs.convert("RGB")))
    assert (tmp_path / "ours.png").read_bytes() == (tmp_path / "reencoded.png").read_bytes()
    assert (tmp_path / "ours.png").stat().st_size < (tmp_path / "matplotlib.png").stat().st_size


def test_chosen_step_is_the_best_seed_mean_among_the_values_with_most_seeds():
    # 0.003 has the lowest single run, but the protocol compares only values rerun with a second seed
    runs = {0.001: [2.0, 2.2], 0.002: [2.05, 2.05], 0.003: [1.9], 0.0005: [2.3, 2.1]}
    assert ps.chosen_step(runs) == 0.002
    assert ps.chosen_step({0.01: [3.0], 0.03: [2.5], 0.1: [2.7]}) == 0.03  # one seed everywhere: the best run

def test_table_seeds_ignore_other_modes_knobs_and_keys_older_logs_lack(tmp_path, capsys):
    runs = make_lr_runs(str(tmp_path), [0.01], seeds=(0, 1))
    nfw_seed1 = next(r for r in runs if "nfw" in r and r.endswith("seed1"))
    with open(os.path.join(nfw_seed1, "log.jsonl")) as f:
        rows = [json.loads(l) for l in f]
    rows[0].update(spectron_lr=0.03, muon_lr=0.02)  # newer code: another default for a knob nfw ignores, a new key
    with open(os.path.join(nfw_seed1, "log.jsonl"), "w") as f:
        f.write("\n".join(map(json.dumps, rows)) + "\n")
    table.main([*runs, "--seeds", "--columns=mode,lr,seed"])
    assert "| nfw | 0.01 | 0,1 |" in capsys.readouterr().out  # still one experiment
    rows[0].update(max_iters=20)  # a setting nfw does use: now two experiments
    with open(os.path.join(nfw_seed1, "log.jsonl"), "w") as f:
        f.write("\n".join(map(json.dumps, rows)) + "\n")
    table.main([*runs, "--seeds", "--columns=mode,lr,seed"])
    out = capsys.readouterr().out
    assert "| nfw | 0.01 | 0 |" in out and "| nfw | 0.01 | 1 |" in out

def test_table_seeds_keep_apart_runs_of_a_mode_whose_knob_older_logs_lack(tmp_path, capsys):
    runs = make_lr_runs(str(tmp_path / "old"), [0.01])  # older code: no muon_lr in these logs
    for lr in (0.005, 0.01):  # two muon runs that differ only in muon_lr
        d = str(tmp_path / f"muon_lr{lr}")
        os.makedirs(d)
        write_log(d, "muon", 4, [0, 10], [4, 4], truncate=False, muon_lr=lr)
        with open(os.path.join(d, "log.jsonl")) as f:
            rows = [dict(json.loads(l), lr_factor=1.0) for l in f]
        with open(os.path.join(d, "log.jsonl"), "w") as f:
            f.write("\n".join(map(json.dumps, rows)) + "\n")
        runs.append(d)
    table.main([*runs, "--seeds", "--columns=mode,lr,seed"])
    out = capsys.readouterr().out
    assert "| muon | 0.005 | 0 |" in out and "| muon | 0.01 | 0 |" in out

def test_table_seeds_keep_wsd_runs_apart_from_cosine_runs_of_older_logs(tmp_path, capsys):
    runs = make_lr_runs(str(tmp_path), [0.01], seeds=(0, 1))  # older code: no lr_schedule in their configs
    for src in [r for r in runs if "nfw" in r]:
        wsd = shutil.copytree(src, src.replace("nfw_", "nfw_wsd_"))
        with open(os.path.join(wsd, "log.jsonl")) as f:
            rows = [json.loads(l) for l in f]
        rows[0].update(lr_schedule="wsd", decay_frac=0.2, decay_shape="sqrt")
        with open(os.path.join(wsd, "log.jsonl"), "w") as f:
            f.write("\n".join(map(json.dumps, rows)) + "\n")
        runs.append(wsd)
    table.main([*runs, "--seeds", "--columns=mode,schedule,lr,seed"])
    out = capsys.readouterr().out
    assert "| nfw | cosine | 0.01 | 0,1 |" in out and "| nfw | wsd 0.2 sqrt | 0.01 | 0,1 |" in out

def rewrite_evals(run_dir, vals, trains, **config):
    """set a run's eval losses (one per eval record), update its config record, and give its train records the
    lr_factor that train.py logs"""
    path = os.path.join(run_dir, "log.jsonl")
    with open(path) as f:
        rows = [json.loads(l) for l in f]
    evals = iter(zip(vals, trains))
    for r in rows:
        if r["kind"] == "config":
            r.update(config)
        if r["kind"] == "eval":
            r["val_loss"], r["train_loss"] = next(evals)
        if r["kind"] == "train":
            r["lr_factor"] = 1.0
    with open(path, "w") as f:
        f.write("\n".join(map(json.dumps, rows)) + "\n")

def test_table_best_reports_the_eval_with_the_lowest_val_loss(tmp_path, capsys):
    run = str(tmp_path / "p32_nfw_r4")
    os.makedirs(run)
    write_log(run, "nfw", 4, [0, 10, 20, 30], [4] * 4, truncate=False)
    rewrite_evals(run, [3.0, 2.0, 2.5, 2.8], [3.0, 1.9, 1.5, 1.0], train_tokens=1000)  # overfits after step 10
    cols = "--columns=tokens,val,train,gap,iter_best,iters"
    table.main([run, "--best", cols, f"--csv={tmp_path / 'runs.csv'}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("| train tokens | best val loss | train loss at best val | val − train at best val | "
                        "best at iter | iters |")
    assert lines[2] == "| 1000 | 2.0000 | 1.9000 | 0.1000 | 10 | 30 |"
    with open(tmp_path / "runs.csv") as f:
        (row,) = csv.DictReader(f)
    assert float(row["val"]) == 2.0 and row["iter_best"] == "10" and row["iters"] == "30"
    table.main([run, cols])  # without --best: the last eval, and still where the best one was
    assert capsys.readouterr().out.splitlines()[2] == "| 1000 | 2.8000 | 1.0000 | 1.8000 | 10 | 30 |"
    # an eval-only run (--max_iters=0, as from --init_from=svd): no train records, the whole split
    only = str(tmp_path / "svd0")
    os.makedirs(only)
    write_log(only, "spectron", 4, [0], [4], truncate=False, spectron_lr=0.02)
    with open(os.path.join(only, "log.jsonl")) as f:
        rows = [json.loads(l) for l in f if '"train"' not in l]
    with open(os.path.join(only, "log.jsonl"), "w") as f:
        f.write("\n".join(map(json.dumps, rows + [dict(kind="summary", iter=0, seconds=3.0, spectra_seconds=0.0)])))
    table.main([only, "--best", "--columns=tokens,iters,iter_best,ms"])
    assert capsys.readouterr().out.splitlines()[2] == "| all | 0 | 0 | - |"

def test_rank_sweep_best_one_curve_per_training_prefix_starred_at_its_lowest(tmp_path):
    logs = []
    for tokens, best_vals in ((1000, {4: 2.2, 8: 2.0, 16: 2.1}), (0, {4: 2.0, 8: 1.8, 16: 1.6})):
        for rank, low in best_vals.items():
            run = str(tmp_path / f"t{tokens}_r{rank}")
            os.makedirs(run)
            write_log(run, "spectron", rank, [0, 10, 20], [rank] * 3, truncate=False)
            rewrite_evals(run, [4.0, low, low + 0.5], [4.0, low - 0.1, 1.0], train_tokens=tokens)  # last: overfit
            logs.append((os.path.basename(run), *ps.load_log(run)))
    fig = ps.plot_rank_sweep(logs, best=True)
    curves = {l.get_label(): l for l in fig.axes[0].get_lines() if not l.get_label().startswith("_")}
    assert sorted(curves) == ["spectron d=8 1k tokens", "spectron d=8 all tokens"]
    assert list(curves["spectron d=8 1k tokens"].get_ydata()) == pytest.approx([2.2, 2.0, 2.1])
    stars = [(l.get_xdata()[0], l.get_ydata()[0]) for l in fig.axes[0].get_lines() if l.get_marker() == "*"]
    assert sorted(stars) == [(8, pytest.approx(2.0)), (16, pytest.approx(1.6))]  # r* = 8 with 1k tokens, 16 with all
    assert fig.axes[0].get_title().startswith("best val loss (early stopping) vs rank")
    gaps = {l.get_label(): list(l.get_ydata()) for l in fig.axes[1].get_lines()}
    assert gaps["spectron d=8 all tokens"] == pytest.approx([0.1, 0.1, 0.1])  # at the best eval, not the last
    ps.plt.close(fig)
    final = ps.plot_rank_sweep(logs)  # the last eval: the full width looks best everywhere
    last = {l.get_label(): list(l.get_ydata()) for l in final.axes[0].get_lines()}
    assert last["spectron d=8 1k tokens"] == pytest.approx([2.7, 2.5, 2.6])
    assert final.axes[0].get_title().startswith("final val loss vs rank")
    ps.plt.close(final)


FIGURES_BAD = [  # (script; arguments: {run} a finished run, {tmp} a fresh folder; a key word of the one-line error)
    *[(script, [f"{{tmp}}/{name}", "--out={tmp}/out"], name) for script in ("frontier.py", "eta_transfer.py")
      for name in ("missing", "no_evals", "foreign")],  # foreign: JSON, but not a train.py log (was a KeyError)
    ("frontier.py", ["{tmp}/notjson.log.jsonl", "--out={tmp}/out"], "notjson"),  # was a JSONDecodeError
    ("frontier.py", ["{tmp}/no_log", "--out={tmp}/out"], "no_log"),  # a folder without a log: was a traceback
    *[(script, ["{run}", out], "out") for script in ("frontier.py", "eta_transfer.py")
      for out in ("--out=/proc/out", "--out={run}/log.jsonl")],  # unwritable, a file: were tracebacks after the work
    ("frontier.py", ["{run}"], "--out"), ("eta_transfer.py", ["{run}"], "--out"),  # argparse's error: was 2-3 lines
]


@pytest.mark.parametrize("script,args,word", FIGURES_BAD, ids=[f"{s} {' '.join(a)}" for s, a, _ in FIGURES_BAD])
def test_experiment_figures_refuse_bad_input_in_one_line(tmp_path, script, args, word):
    """experiments/frontier.py and eta_transfer.py: a path with no run, a run with no eval yet, a file that is no
    train.py log, an output folder that cannot be written: one line and exit 2 before any figure is drawn"""
    run_dir = make_lr_runs(str(tmp_path / "runs"), [0.01])[0]
    for name, lines in (("no_evals", [{"kind": "config", "mode": "nfw"}]),
                        ("foreign", [{"kind": "config"}, {"kind": "eval", "val_loss": 1.0}]), ("no_log", [])):
        (tmp_path / name).mkdir()
        if lines:
            (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "notjson.log.jsonl").write_text("not json\n")
    code, out, err = in_process(f"experiments/{script}", *(a.format(tmp=tmp_path, run=run_dir) for a in args))
    assert_refused(code, err, word)
    assert out == "" and not (tmp_path / "out").exists()
