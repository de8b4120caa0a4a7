"""bench.py end to end on a tiny GPT (a few seconds on CPU): its CSV, and its one-line errors."""
import csv
import sys

import pytest
import torch

import bench as bench_module
import lowrank
from conftest import assert_refused, in_process, run
from model import peak_flops

TINY = ['--n_layer=1', '--n_head=2', '--widths=64', '--ranks=0.25', '--block_size=16', '--batch_size=4',
        '--warmup=1', '--steps=2', '--sample_tokens=3', '--threads=1']


def test_csv_has_a_row_per_mode_and_factorized_flops_below_dense(tmp_path):
    path = tmp_path / 'bench.csv'
    run('bench.py', *TINY, f'--csv={path}')
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
        elif isinstance(m.layer, dict):  # factors in part of each block only (the hunt's): fewer FLOPs than dense
            assert float(rows['spectron']['mflops_tok']) < float(rows[mode]['mflops_tok']) < float(
                rows['dense']['mflops_tok'])
        else:
            assert rows[mode]['rank'] == '16'
            assert float(rows[mode]['mflops_tok']) < float(rows['dense']['mflops_tok'])
            assert float(rows[mode]['ideal']) > 1
    assert rows['spectron']['vs_nfw_pct'] != '' and rows['nfw']['vs_nfw_pct'] == ''


BAD = [  # (arguments after TINY's, a key word of the one-line error), each refused before any row is timed
    (['--no_such_key=1'], 'no_such_key'), (['--modes=nfw,bogus'], 'bogus'), (['--ranks=0.25,1.5'], 'rank'),
    (['--ranks=0'], 'rank'), (['--steps=many'], 'steps'), (['--compile=1'], 'compile'), (['notaflag'], 'notaflag'),
    (['--n_head=0'], 'n_head'),  # not a ZeroDivisionError in the width check
    (['--ranks='], 'ranks'),  # no rank: the factorized modes would silently not run
    (['--modes=tsvd', '--widths=32', '--ranks=0.0625'], 'min_rank'),  # rank 2 < TSVD's min_rank 4: a shape it refuses
    (['--csv=/proc/bench.csv'], 'csv'),  # unwritable: refused before the benchmark, not after it
    (['--csv=/proc'], 'csv'),  # a folder where the CSV file goes
    *([(['--device=cuda'], 'cuda')] if not torch.cuda.is_available() else []),
]


@pytest.mark.parametrize('args,word', BAD, ids=[' '.join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(args, word):
    code, out, err = in_process('bench.py', *TINY, *args)
    assert_refused(code, err, word)
    assert out == ''  # nothing ran


@pytest.mark.parametrize('reset', [True, False], ids=['reset per row', 'no reset'])
def test_compiled_rows_stay_compiled_past_dynamos_recompile_limit(reset, tmp_path, monkeypatch, capsys):
    """Every (mode, rank) model recompiles the shared GPT.forward; past dynamo's recompile limit it would run eager.
    bench.py resets dynamo per row, and reports a row that ran eager (shown by taking the reset away). In-process,
    with dynamo's eager backend (tracing only: no C++ compiler) and the limit lowered from 8 to 2."""
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
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
    assert peak_flops('cuda:0', dtype) == peak and peak_flops('cpu', dtype) is None
