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


def _run(tmp_path, args, xla_flags=''):
  """Runs the benchmark with args, its report written to a file; returns (report, stdout)."""
  out = tmp_path / 'table.md'
  # LLVM's optimisation is most of the compile time; only that the benchmark runs is checked.
  env = {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'XLA_FLAGS': f'--xla_backend_optimization_level=0 {xla_flags}'.strip(),
  }
  # In the repository root, as every module of it runs.
  result = subprocess.run(
    [sys.executable, '-c', _RUN_BLOCKED, *args, '--out', str(out)],
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
  assert 'partial' not in report
  return report, result.stdout


def test_throughput_smoke(tmp_path):
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
  ]
  has_torch = importlib.util.find_spec('torch') is not None
  if not has_torch:
    args.append('--no_torch')
  report, stdout = _run(tmp_path, args)

  assert 'XLA_FLAGS: --xla_backend_optimization_level=0' in report
  rows = _table_rows(report)
  expected = ['JAX data path', 'JAX pure step'] + (['PyTorch eager'] if has_torch else [])
  assert sorted(rows) == sorted(expected), report
  for cells in rows.values():
    assert float(cells[5]) > 0, cells  # img/s
  assert rows['JAX pure step'][8] == '1.00'
  assert _table_rows(stdout) == rows


def test_throughput_replicas(tmp_path):
  # Two devices: one replica trains on both, each of two on its own (a mesh of another shape,
  # reading the same dataset).
  args = '--models resnet20 --batch_size 8 --replicas 1,2 --steps 1 --warmup 0 --rounds 1'
  report, _ = _run(
    tmp_path,
    [*args.split(), '--num_images', '64', '--no_torch'],
    xla_flags='--xla_force_host_platform_device_count=2',
  )

  rows = _table_rows(report)
  assert sorted(rows) == ['JAX data path', 'JAX data path, 2 replicas', 'JAX pure step'], report
  replicas = rows['JAX data path, 2 replicas']
  assert float(replicas[5]) > 0, replicas  # img/s, of both replicas
  assert replicas[7].endswith(' MiB'), replicas  # the program's memory
  assert float(replicas[9]) > 0, replicas  # row / 1 replica
  assert rows['JAX data path'][9] == '1.00'
  assert rows['JAX pure step'][9] == '-'
