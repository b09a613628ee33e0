"""A tiny run of `python -m benchmarks.throughput` without ml_collections, orbax or TF."""

import importlib.util
import os
import pathlib
import subprocess
import sys

# Runs the module as `python -m benchmarks.throughput` does, after making the packages the GPU
# benchmark machine lacks unimportable.
_RUN_BLOCKED = """
import runpy, sys
for name in ('ml_collections', 'orbax', 'orbax.checkpoint', 'tensorflow', 'tensorflow_datasets'):
  sys.modules[name] = None
sys.argv = ['benchmarks/throughput.py', *sys.argv[1:]]
runpy.run_module('benchmarks.throughput', run_name='__main__', alter_sys=True)
"""
REPO = pathlib.Path(__file__).resolve().parents[1]


def _table_rows(text):
  """framework / variant -> the row's cells, from the markdown table."""
  rows = {}
  for line in text.splitlines():
    cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
    if line.startswith('| resnet20'):
      rows[cells[3]] = cells
  return rows


def test_throughput_smoke(tmp_path):
  out = tmp_path / 'table.md'
  args = [
    '--models',
    'resnet20',
    '--batch_size',
    '8',
    '--steps',
    '2',
    '--warmup',
    '1',
    '--rounds',
    '1',
    '--num_images',
    '64',
    '--out',
    str(out),
  ]
  has_torch = importlib.util.find_spec('torch') is not None
  if not has_torch:
    args.append('--no_torch')
  # LLVM's optimisation is most of the compile time; only that the benchmark runs is checked.
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': '--xla_backend_optimization_level=0'}
  # In the repository root, as every module of it runs.
  result = subprocess.run(
    [sys.executable, '-c', _RUN_BLOCKED, *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-4000:]

  report = out.read_text()
  assert report.startswith('date (UTC): ')
  assert 'XLA_FLAGS: --xla_backend_optimization_level=0' in report
  assert 'partial' not in report
  rows = _table_rows(report)
  expected = ['JAX data path', 'JAX pure step'] + (['PyTorch eager'] if has_torch else [])
  assert sorted(rows) == sorted(expected), report
  for cells in rows.values():
    assert float(cells[5]) > 0, cells  # img/s
  assert rows['JAX pure step'][8] == '1.00'
  assert _table_rows(result.stdout) == rows
