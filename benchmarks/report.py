"""The report of benchmarks/throughput.py: where it ran, and the table of its rows."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
from typing import Any

import flax
import jax
import jaxlib
import optax


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return '-'


def header(args: argparse.Namespace, torch: Any) -> list[str]:
  """Where and with what the numbers were taken; torch: the module, or None."""
  device = jax.devices()[0]
  torch_device = torch_version = 'not used (--no_torch)'
  torch_settings = ''
  if not args.no_torch:
    torch_version = torch.__version__
    if torch.cuda.is_available():
      torch_device = torch.cuda.get_device_name()
      torch_settings = (
        f'; PyTorch cudnn.benchmark={torch.backends.cudnn.benchmark}, '
        f'cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, '
        f'matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}'
      )
    else:
      torch_device = f'cpu ({torch.get_num_threads()} threads)'
  now = datetime.datetime.now(datetime.UTC)
  return [
    f'date (UTC): {now:%Y-%m-%d %H:%M:%S}',
    f'JAX device: {device.device_kind} ({device.platform}) x{jax.device_count()}',
    f'PyTorch device: {torch_device}',
    f'CPU: {_cpu_model()}',
    (
      f'versions: jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}, '
      f'optax {optax.__version__}, torch {torch_version}'
    ),
    (
      f'XLA_FLAGS: {os.environ.get("XLA_FLAGS", "(unset)")}; XLA_PYTHON_CLIENT_PREALLOCATE: '
      f'{os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")}'
    ),
    (
      f'settings: {args.steps} timed calls after {args.warmup} warm-up calls, each round, '
      f'{args.rounds} round(s); JAX dataset {args.num_images} images; JAX compilation cache off'
      f'{torch_settings}'
    ),
  ]


def _ms(seconds: float) -> str:
  return f'{seconds * 1e3:.2f}'


def images_per_second(row: Any, batch_size: int) -> float:
  """A measured row's images a second, of every replica together."""
  return batch_size * row.replicas / statistics.median(row.step_s)


def table(rows: list, batch_size: int) -> list[str]:
  """A markdown table, one line per row, with the notes that say what each column means.

  Rows of several replicas add a column: their img/s over that of the same row of one replica;
  measured PyTorch rows add one: a row's img/s over the fastest PyTorch row's of its model and
  dtype.
  """
  columns = [
    'model',
    'dtype',
    'batch',
    'framework / variant',
    'step ms median (min-max)',
    'img/s',
    '1st call s',
    'peak mem',
    'JAX pure / row',
  ]

  def key(r):  # the rows that differ only in their number of replicas
    return r.model, r.dtype, r.framework, r.variant, r.steps_per_call, r.scan

  def rate(r):
    return images_per_second(r, batch_size)

  measured = [r for r in rows if r.step_s and not r.error]
  pure_rate = {(r.model, r.dtype): rate(r) for r in measured if r.label == 'JAX pure step'}
  one_replica_rate = {key(r): rate(r) for r in measured if r.replicas == 1}
  scaled = {key(r) for r in rows if r.replicas > 1}
  if scaled:
    columns.append('row / 1 replica')
  # PyTorch's best of its modes is the one to beat.
  best_torch_rate = {}
  for r in measured:
    if r.framework == 'PyTorch':
      best = best_torch_rate.get((r.model, r.dtype), 0.0)
      best_torch_rate[(r.model, r.dtype)] = max(best, rate(r))
  if best_torch_rate:
    columns.append('row / best PyTorch')
  cells = []
  for r in rows:
    line = [r.model, r.dtype, str(batch_size), r.label]
    if r.error:
      # A '|' in the message would split the cell.
      failed = f'failed: {r.error}'.replace('|', '/')[:100]
      line += [failed] + ['-'] * (len(columns) - len(line) - 1)
    elif r.step_s:
      pure = pure_rate.get((r.model, r.dtype))
      line += [
        f'{_ms(statistics.median(r.step_s))} ({_ms(min(r.step_s))}-{_ms(max(r.step_s))})',
        f'{rate(r):.0f}',
        f'{r.first_call_s:.2f}',
        '-' if r.peak_bytes is None else f'{r.peak_bytes / 2**20:.0f} MiB',
        '-' if pure is None else f'{pure / rate(r):.2f}',
      ]
      if scaled:
        one = one_replica_rate.get(key(r)) if key(r) in scaled else None
        line.append('-' if one is None else f'{rate(r) / one:.2f}')
      if best_torch_rate:
        best = best_torch_rate.get((r.model, r.dtype)) if r.replicas == 1 else None
        line.append('-' if best is None else f'{rate(r) / best:.2f}')
    else:
      continue  # not reached yet
    cells.append(line)
  widths = [max(len(c[i]) for c in [columns, *cells]) for i in range(len(columns))]

  def fmt(line):
    return '| ' + ' | '.join(c.ljust(w) for c, w in zip(line, widths)) + ' |'

  notes = [
    'step ms: per train step (a data-path call of K steps counts K), over all rounds.',
    (
      "1st call s: the first call, i.e. compilation (JAX, torch.compile) plus that call's "
      'steps; eager PyTorch: its first step.'
    ),
    (
      "peak mem: JAX, the compiled program's arguments, outputs and temporaries (XLA's memory "
      "analysis; the data path's include the dataset); PyTorch, the CUDA peak allocated by the "
      'row.'
    ),
    (
      "JAX pure / row: JAX pure-step img/s over the row's. On the data-path row it is the "
      "input pipeline's overhead (with train_step's metrics); on a PyTorch row > 1 means JAX "
      'is faster.'
    ),
  ]
  if scaled:
    notes += [
      (
        'N replicas: N models (seeds 0..N-1) trained in one program, each on its own batch of '
        '`batch`, on gcd(N, devices) replica groups of the devices. A step is one of each '
        'replica: img/s counts all N; peak mem holds N states and N batches, the dataset once.'
      ),
      (
        "row / 1 replica: the row's img/s over that of its row of one replica (same model, "
        'dtype and K); N means perfect scaling, 1 none.'
      ),
    ]
  if best_torch_rate:
    notes.append(
      "row / best PyTorch: the row's img/s over that of the fastest PyTorch row (eager or a "
      'torch.compile mode) of the same model and dtype: > 1 on a JAX row means JAX is faster '
      'than PyTorch at its best; 1.00 marks that PyTorch row. Rows of several replicas: -.'
    )
  return [
    fmt(columns),
    '|' + '|'.join('-' * (w + 2) for w in widths) + '|',
    *map(fmt, cells),
    '',
    *notes,
  ]


def record(row: Any, args: argparse.Namespace, torch: Any) -> dict[str, Any]:
  """row as one line of --jsonl (throughput.py's docstring has the schema); torch: the module,
  or None."""
  measured = bool(row.step_s) and not row.error
  return {
    'row_id': args.row_id,
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'device_kind': jax.devices()[0].device_kind,
    'device_count': jax.device_count(),
    'model': row.model,
    'dtype': row.dtype,
    'batch_size': args.batch_size,
    'framework': row.framework,
    'variant': row.variant,
    'label': row.label,
    'replicas': row.replicas,
    'steps_per_call': row.steps_per_call,
    'scan': row.scan,
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'step_ms_median': statistics.median(row.step_s) * 1e3 if measured else None,
    'images_per_second': images_per_second(row, args.batch_size) if measured else None,
    'first_call_s': row.first_call_s,
    'peak_bytes': row.peak_bytes,
    'error': row.error,
    'jax_version': jax.__version__,
    'torch_version': None if args.no_torch else torch.__version__,
  }


def append_jsonl(path: str | None, line: dict[str, Any]) -> None:
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a') as f:
      f.write(json.dumps(line) + '\n')


def write(path: str | None, lines: list[str]) -> None:
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
      f.write('\n'.join(lines) + '\n')
