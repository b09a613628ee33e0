"""Training throughput of resnet_jax against the PyTorch references, run alternately.

For each model and dtype it measures, in this order each round (so drift in clocks or load hits
every row alike):

* JAX data path: the jitted chunk of train_step.make_train_chunk over train_step.train_step, on
  a uint8 dataset of random images on the device: gather by the epoch's order, crop and flip,
  normalisation, forward and backward, SGD. Exactly what training runs (the order of an epoch is
  computed once per epoch there, as here, outside the timed calls). One replica, seed 0. Its K
  steps a call (--steps_per_call) are unrolled, as training runs them, or with --scan a lax.scan.
* JAX data path, N replicas (--replicas): the same for N replicas of seeds 0..N-1 in one program,
  as a run of num_replicas=N trains them, on its default mesh of gcd(N, devices) replica groups;
  each trains on its own batch of --batch_size, so its img/s counts N batches a step.
* JAX pure step: the same model, loss and optimizer update on a fixed, already normalised batch
  on the device. Data path / pure step is the input pipeline's overhead.
* PyTorch, one row per --torch_modes entry: eager, or torch.compile in that mode; the reference
  model of reference/torch_models.py in channels_last, on a fixed batch on the device; bfloat16
  is torch.autocast.

Every row trains with SGD, lr 0.1, momentum 0.9, weight decay 5e-4 on every parameter, and mean
cross entropy. Needs only jax, flax, optax, numpy and, unless --no_torch, torch (not
ml_collections, orbax or TensorFlow). From the repository root:

  python -m benchmarks.throughput --models resnet20,resnet18 --batch_size 128 \\
      --dtypes float32,bfloat16 --replicas 1,2,4 --steps 20 --warmup 3 --rounds 2 \\
      --torch_modes eager,default,reduce-overhead --out FILE --jsonl FILE

--jsonl FILE appends one JSON object a line per row, written when the row's last round ends (so
a run stopped part-way leaves the rows it finished; benchmarks/window.py reads them back):

  row_id             --row_id ('' by default): the benchmarks/window.py row that ran this
  date               UTC, ISO 8601 to the second, when the line was written
  device_kind        jax.devices()[0].device_kind, e.g. 'NVIDIA H100 80GB HBM3', 'cpu' (the
                     PyTorch rows ran on the same GPU); device_count: jax.device_count()
  model, dtype       a resnet_jax model name; 'float32' or 'bfloat16'
  batch_size         --batch_size (of one replica)
  framework          'JAX' or 'PyTorch'
  variant            stable names: 'data path', 'pure step' (JAX); 'eager',
                     'torch.compile MODE' (PyTorch). K, scan and replicas are keys of their own
  label              the table's 'framework / variant' cell, e.g. 'JAX data path (K=8, scan)'
  replicas           models trained together (JAX data path), else 1
  steps_per_call     K, the JAX data path's steps a call, else 1; scan: true for --scan's
  xla_flags          the XLA_FLAGS it ran under, '' when unset
  step_ms_median     per train step, over all timed calls and rounds; null if the row failed
  images_per_second  batch_size * replicas / median step; null if the row failed
  first_call_s       compilation plus the first call; null if it failed before
  peak_bytes         as the table's peak mem; null where unknown
  error              null, or the failure of a row that may fail (torch.compile)
  jax_version, torch_version (null with --no_torch)

The JAX data path of N replicas on a GPU is the lines with framework 'JAX', variant 'data path',
replicas N (and steps_per_call, scan as wanted).
"""

from __future__ import annotations

import argparse
import os
import sys

# JAX and PyTorch share the GPU in this process: JAX's default, taking 75% of the GPU's memory at
# start, would leave PyTorch too little. Must be set before JAX starts its GPU backend.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

# pylint: disable=g-import-not-at-top
import jax

from benchmarks import report
from benchmarks.jax_rows import jax_inputs, jax_rows
from benchmarks.rows import measure
from resnet_jax import models

try:
  import torch

  from benchmarks.torch_rows import torch_rows
  from reference import torch_models
except ImportError as e:  # --no_torch runs without PyTorch
  torch = torch_models = None
  TORCH_IMPORT_ERROR = e
# pylint: enable=g-import-not-at-top

DTYPES = tuple(models.DTYPES)  # 'float32', 'bfloat16'
# Eager, then torch.compile's modes: its default, CUDA graphs, and CUDA graphs with a search over
# kernel configurations (the longest to compile).
TORCH_MODES = ('eager', 'default', 'reduce-overhead', 'max-autotune')


def _names(value: str) -> list[str]:
  return [name.strip() for name in value.split(',') if name.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description='Training throughput of resnet_jax against the PyTorch references.'
  )
  parser.add_argument(
    '--models',
    default='resnet20',
    help='comma-separated resnet_jax model names; PyTorch has those of reference/torch_models.py',
  )
  parser.add_argument(
    '--batch_size', type=int, default=128, help='global batch (of one replica, in replica rows)'
  )
  parser.add_argument(
    '--dtypes',
    default='float32',
    help="comma-separated float32, bfloat16: the JAX model's compute dtype "
    '(parameters stay float32), torch.autocast for PyTorch',
  )
  parser.add_argument(
    '--steps_per_call',
    type=int,
    default=1,
    help='train steps per jitted call of the JAX data path (K)',
  )
  parser.add_argument(
    '--scan',
    action='store_true',
    help="run the JAX data path's K steps a call as a lax.scan instead of unrolled",
  )
  parser.add_argument(
    '--replicas',
    default='1',
    help='comma-separated replica counts N, 1 among them: a JAX data-path row for each, training '
    'N models (seeds 0..N-1) in one program, each on its own batch of --batch_size',
  )
  parser.add_argument('--steps', type=int, default=20, help='timed calls per row and round')
  parser.add_argument(
    '--warmup', type=int, default=3, help='untimed calls per row and round, before the timed ones'
  )
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument(
    '--num_images',
    type=int,
    default=50000,
    help="size of the JAX data path's dataset, which every step gathers "
    "from on the device; the default is CIFAR-10's training set",
  )
  parser.add_argument(
    '--torch_modes',
    default='eager',
    help=f'comma-separated PyTorch rows: {", ".join(TORCH_MODES)} (all but eager are '
    'torch.compile modes)',
  )
  parser.add_argument('--no_torch', action='store_true', help='JAX rows only')
  parser.add_argument('--out', help='also write the report to this file')
  parser.add_argument(
    '--jsonl', help='append one JSON line per row to this file (schema: the module docstring)'
  )
  parser.add_argument('--row_id', default='', help="the --jsonl lines' row_id")
  args = parser.parse_args(argv)

  args.models, args.dtypes = _names(args.models), _names(args.dtypes)
  args.torch_modes = list(dict.fromkeys(_names(args.torch_modes)))
  try:
    args.replicas = sorted({int(n) for n in _names(args.replicas)})
  except ValueError:
    parser.error(f'--replicas takes comma-separated integers, not {args.replicas!r}')
  if 1 not in args.replicas or args.replicas[0] < 1:
    # The replica rows are compared with the row of one replica.
    parser.error('--replicas takes counts of at least 1, and 1 among them')
  for flag in ('batch_size', 'steps_per_call', 'steps', 'rounds', 'num_images'):
    if getattr(args, flag) < 1:
      parser.error(f'--{flag} must be at least 1')
  if args.warmup < 0:
    parser.error('--warmup must be at least 0')
  if args.num_images < args.batch_size:
    parser.error('--num_images must be at least --batch_size')
  unknown = [m for m in args.models if m not in models.MODEL_NAMES]
  if not args.models or unknown:
    parser.error(f'unknown --models {",".join(unknown)}; valid: {", ".join(models.MODEL_NAMES)}')
  if not args.dtypes or any(d not in DTYPES for d in args.dtypes):
    parser.error(f'--dtypes takes {", ".join(DTYPES)}')
  if not args.torch_modes or any(m not in TORCH_MODES for m in args.torch_modes):
    parser.error(f'--torch_modes takes {", ".join(TORCH_MODES)}')
  if not args.no_torch:
    if torch is None:
      parser.error(
        f'PyTorch is not importable ({TORCH_IMPORT_ERROR}); pass --no_torch for JAX rows only'
      )
    missing = [m for m in args.models if m not in torch_models.MODELS]
    if missing:
      parser.error(
        f'no PyTorch reference for {", ".join(missing)}; PyTorch supports '
        f'{", ".join(sorted(torch_models.MODELS))} (or pass --no_torch)'
      )
  return args


def main(argv: list[str] | None = None) -> None:
  # A warm persistent cache would turn the compile column into a cache read.
  jax.config.update('jax_enable_compilation_cache', False)
  args = parse_args(argv)
  # One replica trains on every device, each of more replicas on a group of D / gcd(N, D) of them
  # (parallel.replica_groups): a batch that divides over all D divides over every group.
  if args.batch_size % jax.device_count():
    sys.exit(f'--batch_size {args.batch_size} must divide by the {jax.device_count()} devices')
  if not args.no_torch:
    # XLA autotunes its convolutions for the fixed shapes; let cuDNN do the same.
    torch.backends.cudnn.benchmark = True

  lines = report.header(args, torch)
  print('\n'.join(lines), flush=True)
  running = ['(partial: still running)', '']
  report.write(args.out, lines + running)  # now, so a bad --out fails before any compilation
  inputs = jax_inputs(args.batch_size, args.num_images)
  rows = []
  for model_name in args.models:
    for dtype in args.dtypes:
      # JAX then PyTorch, within each round, for every model and dtype.
      rows += jax_rows(
        model_name, dtype, args.batch_size, args.steps_per_call, args.scan, args.replicas, inputs
      )
      if not args.no_torch:
        rows += torch_rows(model_name, dtype, args.batch_size, args.torch_modes)
  for round_index in range(args.rounds):
    for row in rows:
      print(
        f'round {round_index + 1}/{args.rounds}: {row.model} {row.dtype} {row.label}',
        file=sys.stderr,
        flush=True,
      )
      measure(row, args.warmup, args.steps)
      # After every row, so a run stopped part-way still leaves what it measured.
      report.write(args.out, lines + running + report.table(rows, args.batch_size))
      if round_index == args.rounds - 1:
        report.append_jsonl(args.jsonl, report.record(row, args, torch))
  final = lines + [''] + report.table(rows, args.batch_size)
  report.write(args.out, final)
  print('\n'.join(final[len(lines) :]), flush=True)


if __name__ == '__main__':
  main()
