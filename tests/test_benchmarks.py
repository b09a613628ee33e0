"""Tiny runs of `python -m benchmarks.throughput` without ml_collections, orbax or TF, and of
`python -m benchmarks.window`'s CPU dry run; the scan of the JAX data path."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

from benchmarks import throughput, window
from benchmarks.jax_rows import jax_inputs, jax_rows

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


def _env(xla_flags=''):
  # LLVM's optimisation is most of the compile time; only that the benchmark runs is checked.
  return {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'XLA_FLAGS': f'--xla_backend_optimization_level=0 {xla_flags}'.strip(),
  }


def _jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _run(tmp_path, args, xla_flags=''):
  """Runs the benchmark with args, its report written to a file; returns (report, stdout)."""
  out = tmp_path / 'table.md'
  env = _env(xla_flags)
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
    '--jsonl',
    str(tmp_path / 'speed.jsonl'),
    '--row_id',
    'smoke',
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
  if has_torch:
    assert rows['PyTorch eager'][9] == '1.00'  # row / best PyTorch: the only PyTorch row
  assert _table_rows(stdout) == rows
  lines = {line['label']: line for line in _jsonl(tmp_path / 'speed.jsonl')}
  assert sorted(lines) == sorted(expected)
  data_path = lines['JAX data path']
  assert data_path['framework'] == 'JAX' and data_path['variant'] == 'data path'
  assert (data_path['replicas'], data_path['steps_per_call'], data_path['scan']) == (1, 1, False)
  assert data_path['row_id'] == 'smoke' and data_path['device_kind'] == 'cpu'
  assert data_path['xla_flags'] == '--xla_backend_optimization_level=0'
  assert data_path['error'] is None and data_path['date'].endswith('+00:00')
  # The table rounds what the line keeps whole.
  assert f'{data_path["images_per_second"]:.0f}' == rows['JAX data path'][5]


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


def test_scan_and_unrolled_chunks_train_alike():
  """make_train_chunk(scan=True) trains as the unrolled chunk does: K=2 steps of one call."""
  inputs = jax_inputs(batch_size=8, num_images=16)
  results = []
  for scan in (False, True):
    data_path, _ = jax_rows('resnet_test', 'float32', 8, 2, scan, [1], inputs)
    assert data_path.label == ('JAX data path (K=2, scan)' if scan else 'JAX data path (K=2)')
    runner = data_path.make()
    results.append(jax.device_get(runner.fn(runner.state, *runner.args)))
  (state, metrics), (scan_state, scan_metrics) = results
  assert metrics['loss'].shape == (2, 1) and int(scan_state.step[0]) == 2
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    (state, metrics),
    (scan_state, scan_metrics),
  )


def test_window_rows_are_valid_throughput_runs():
  """Every row of every list parses, so no GPU window is lost to a typo."""
  has_torch = importlib.util.find_spec('torch') is not None
  for rows in window.ROW_LISTS.values():
    assert len({row.row_id for row in rows}) == len(rows)
    for row in rows:
      args = row.args.split() + ([] if has_torch else ['--no_torch'])
      assert args.count('--batch_size') == 1, row
      throughput.parse_args(args)


def _window(tmp_path, budget_s, history):
  """A CPU dry run of the window; history: the speed.jsonl lines of an earlier window.

  Returns (the window's speed.jsonl lines, its summary lines).
  """
  results, out_dir = tmp_path / 'results', tmp_path / 'results' / 'window'
  (results / 'earlier').mkdir(parents=True)
  (results / 'earlier' / 'speed.jsonl').write_text(''.join(json.dumps(h) + '\n' for h in history))
  result = subprocess.run(
    [sys.executable, '-m', 'benchmarks.window', '--rows', 'cpu_test', '--budget_s', str(budget_s)]
    + ['--out_dir', str(out_dir), '--results', str(results)],
    cwd=REPO,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=180,
    check=False,
  )
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  summary = (out_dir / 'summary.txt').read_text().splitlines()
  assert result.stdout.endswith('\n'.join(summary) + '\n')
  jsonl = out_dir / 'speed.jsonl'
  return (_jsonl(jsonl) if jsonl.exists() else []), summary


def _summary_rows(summary, kind):
  """The row ids of the summary's 'run' or 'left' lines, in order."""
  return [line.split()[1] for line in summary if line.startswith(f'{kind}: ')]


def test_window_runs_the_unmeasured_row_first(tmp_path):
  # cpu-test was measured on this device kind; cpu-test-k2-scan only on another.
  history = [
    {'row_id': 'cpu-test', 'device_kind': 'cpu', 'date': '2026-12-01T00:00:00+00:00'},
    {
      'row_id': 'cpu-test-k2-scan',
      'device_kind': 'NVIDIA H100',
      'date': '2026-12-02T00:00:00+00:00',
    },
  ]
  lines, summary = _window(tmp_path, 170, history)

  assert _summary_rows(summary, 'run') == ['cpu-test-k2-scan', 'cpu-test'], summary
  assert all(' ok in ' in line for line in summary if line.startswith('run: ')), summary
  assert _summary_rows(summary, 'left') == []
  assert [(line['row_id'], line['label']) for line in lines] == [
    ('cpu-test-k2-scan', 'JAX data path (K=2, scan)'),
    ('cpu-test-k2-scan', 'JAX pure step'),
    ('cpu-test', 'JAX data path'),
    ('cpu-test', 'JAX pure step'),
  ]
  assert lines[0]['scan'] is True and lines[0]['steps_per_call'] == 2
  assert all(line['images_per_second'] > 0 for line in lines)
  assert (tmp_path / 'results' / 'window' / 'cpu-test.md').read_text().startswith('date (UTC): ')


def test_window_leaves_rows_over_its_budget(tmp_path):
  history = [{'row_id': 'cpu-test', 'device_kind': 'cpu', 'date': '2026-12-01T00:00:00+00:00'}]
  lines, summary = _window(tmp_path, 1, history)

  assert lines == []
  assert _summary_rows(summary, 'run') == []
  assert _summary_rows(summary, 'left') == ['cpu-test-k2-scan', 'cpu-test'], summary
