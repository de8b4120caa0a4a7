"""bench.py end to end on a tiny GPT (a few seconds on CPU): its CSV, and its one-line errors."""
import csv
import os
import subprocess
import sys

import pytest
import torch

import lowrank

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = ['--n_layer=1', '--n_head=2', '--widths=64', '--ranks=0.25', '--block_size=16', '--batch_size=4',
        '--warmup=1', '--steps=2', '--sample_tokens=3', '--threads=1']


def bench(*args):
    return subprocess.run([sys.executable, os.path.join(HERE, 'bench.py'), *args], capture_output=True, text=True,
                          cwd=HERE, timeout=120)


def test_csv_has_a_row_per_mode_and_factorized_flops_below_dense(tmp_path):
    path = tmp_path / 'bench.csv'
    out = bench(*TINY, f'--csv={path}')
    assert out.returncode == 0, out.stderr
    with open(path) as f:
        rows = {row['mode']: row for row in csv.DictReader(f)}
    assert set(rows) == {'plain', *lowrank.MODES}
    for row in rows.values():
        assert float(row['ms']) > 0 and float(row['mflops_tok']) > 0 and float(row['gen_tok_s']) > 0
        assert row['width'] == '64' and 0 <= float(row['opt_pct']) < 100
    assert rows['plain']['mflops_tok'] == rows['dense']['mflops_tok']
    for mode, m in lowrank.MODES.items():
        if m.layer is lowrank.DenseLinear:  # full W (muon): dense's FLOPs, at full rank
            assert rows[mode]['rank'] == '64' and rows[mode]['mflops_tok'] == rows['dense']['mflops_tok']
        else:
            assert rows[mode]['rank'] == '16'
            assert float(rows[mode]['mflops_tok']) < float(rows['dense']['mflops_tok'])
            assert float(rows[mode]['ideal']) > 1
    assert rows['spectron']['vs_nfw_pct'] != '' and rows['nfw']['vs_nfw_pct'] == ''


def test_bad_flag_exits_2_with_one_line_and_no_traceback():
    out = bench('--no_such_key=1')
    assert out.returncode == 2 and out.stdout == ''
    assert out.stderr.startswith('error: ') and out.stderr.count('\n') == 1 and 'Traceback' not in out.stderr


BAD = [['--modes=nfw,bogus'], ['--ranks=0.25,1.5'], ['--ranks=0'], ['--steps=many'], ['--compile=1'], ['notaflag']]
if not torch.cuda.is_available():
    BAD.append(['--device=cuda'])


@pytest.mark.parametrize('args', BAD, ids=lambda a: a[0])
def test_bad_input_exits_2_with_one_line(args, monkeypatch, capsys):
    import bench as bench_module  # in-process: the same die() path as above, without a torch import per case
    monkeypatch.setattr(sys, 'argv', ['bench.py', *args])
    with pytest.raises(SystemExit) as exit_info:
        bench_module.main()
    assert exit_info.value.code == 2
    out = capsys.readouterr()
    assert out.out == '' and out.err.startswith('error: ') and out.err.count('\n') == 1, out.err


@pytest.mark.parametrize('reset', [True, False], ids=['reset per row', 'no reset'])
def test_compiled_rows_stay_compiled_past_dynamos_recompile_limit(reset, tmp_path, monkeypatch, capsys):
    """Every (mode, rank) model recompiles the shared GPT.forward; past dynamo's recompile limit it would run eager.
    bench.py resets dynamo per row, and reports a row that ran eager (shown by taking the reset away). In-process,
    with dynamo's eager backend (tracing only: no C++ compiler) and the limit lowered from 8 to 2."""
    import bench as bench_module
    real_compile = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda model: real_compile(model, backend='eager'))
    if not reset:
        monkeypatch.setattr(torch._dynamo, 'reset', lambda: None)
    path = tmp_path / 'bench.csv'
    monkeypatch.setattr(sys, 'argv', ['bench.py', *TINY, '--steps=1', '--sample_tokens=0', '--compile=True',
                                      f'--csv={path}'])
    with torch._dynamo.config.patch(recompile_limit=2):  # dynamo's own patch: its config is no plain module
        bench_module.main()
    with open(path) as f:
        compiled = [row['compile'] for row in csv.DictReader(f)]
    assert len(compiled) == 1 + len(lowrank.MODES)  # plain, and every mode at one rank
    warned = capsys.readouterr().out.count('ran eager')
    if reset:
        assert set(compiled) == {'True'} and warned == 0
    else:  # the cache keeps the first two rows' graphs; the third row on finds it full
        assert 'False' in compiled and warned == compiled.count('False')


@pytest.mark.parametrize('name,dtype,peak', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989e12), ('NVIDIA H100 PCIe', 'bfloat16', 756e12),
    ('NVIDIA H100 NVL', 'bfloat16', 835e12), ('NVIDIA H800', 'bfloat16', 989e12), ('NVIDIA H100 PCIe', 'float32', 51e12),
    ('NVIDIA A100-SXM4-80GB', 'float32', 19.5e12), ('Tesla V100-SXM2-16GB', 'bfloat16', None)])
def test_peak_flops_by_gpu_name_and_dtype(name, dtype, peak, monkeypatch):
    """MFU's denominator: the datasheet peak of the GPU (PCIe and NVL parts are not the SXM ones) in the dtype used."""
    from model import peak_flops
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
    assert peak_flops('cuda:0', dtype) == peak and peak_flops('cpu', dtype) is None
