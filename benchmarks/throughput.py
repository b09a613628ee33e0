"""Training throughput of resnet_jax against the PyTorch references, run alternately.

For each model and dtype it measures, in this order each round (so drift in clocks or load hits
every row alike):

* JAX data path: the jitted chunk of train_step.make_train_chunk over train_step.train_step, on
  a uint8 dataset of random images on the device: gather by the epoch's order, crop and flip,
  normalisation, forward and backward, SGD. Exactly what training runs (the order of an epoch is
  computed once per epoch there, as here, outside the timed calls). One replica, seed 0.
* JAX data path, N replicas (--replicas): the same for N replicas of seeds 0..N-1 in one program,
  as a run of num_replicas=N trains them, on its default mesh of gcd(N, devices) replica groups;
  each trains on its own batch of --batch_size, so its img/s counts N batches a step.
* JAX pure step: the same model, loss and optimizer update on a fixed, already normalised batch
  on the device. Data path / pure step is the input pipeline's overhead.
* PyTorch eager (and torch.compile with --torch_compile): the reference model of
  reference/torch_models.py in channels_last, on a fixed batch on the device; bfloat16 is
  torch.autocast.

Every row trains with SGD, lr 0.1, momentum 0.9, weight decay 5e-4 on every parameter, and mean
cross entropy. Needs only jax, flax, optax, numpy and, unless --no_torch, torch (not
ml_collections, orbax or TensorFlow). From the repository root:

  python -m benchmarks.throughput --models resnet20,resnet18 --batch_size 128 \\
      --dtypes float32,bfloat16 --replicas 1,2,4 --steps 20 --warmup 3 --rounds 2 \\
      --torch_compile --out FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

# JAX and PyTorch share the GPU in this process: JAX's default, taking 75% of the GPU's memory at
# start, would leave PyTorch too little. Must be set before JAX starts its GPU backend.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

# pylint: disable=g-import-not-at-top
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from benchmarks import report
from benchmarks.rows import DATASET, LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, Row, Runner, measure
from resnet_jax import cifar, models, optim, parallel, timeline, train_step

try:
  import torch

  from benchmarks.torch_rows import torch_rows
  from reference import torch_models
except ImportError as e:  # --no_torch runs without PyTorch
  torch = torch_models = None
  TORCH_IMPORT_ERROR = e
# pylint: enable=g-import-not-at-top

DTYPES = tuple(models.DTYPES)  # 'float32', 'bfloat16'


# --- JAX ---


def make_pure_step(
  model: nn.Module, tx: optax.GradientTransformation
) -> Callable[..., tuple[train_step.TrainState, jax.Array]]:
  """jit(train_step.update_on_batch on a given batch), the state donated: train_step less its
  data path.

  Left out are the gather, crop, flip and normalisation, and the step's metrics.
  """

  @functools.partial(jax.jit, donate_argnums=0)
  def pure_step(state: train_step.TrainState, images: jax.Array, labels: jax.Array):
    new_state, loss, _, _ = train_step.update_on_batch(
      state, images, labels, model=model, tx=tx, label_smoothing=0.0
    )
    return new_state, loss

  return pure_step


class JaxRunner:
  """Calls fn(state, *args) -> (state, outputs) on its own last state, blocking on the results.

  fn is jitted: its .lower() gives the memory analysis.
  """

  def __init__(
    self,
    fn: Callable[..., tuple[train_step.TrainState, Any]],
    state: train_step.TrainState,
    *args: Any,
  ):
    self.fn = fn
    self.state = state
    self.args = args

  def __call__(self) -> None:
    self.state, outputs = self.fn(self.state, *self.args)
    jax.block_until_ready((self.state, outputs))

  def begin(self) -> None:
    pass

  def end(self) -> int | None:
    # The device's peak_bytes_in_use cannot be reset, so it would carry over from earlier rows;
    # XLA's analysis of this very program (already compiled: the lowering hits jit's cache) can't.
    stats = self.fn.lower(self.state, *self.args).compile().memory_analysis()
    if stats is None:
      return None
    return (
      stats.argument_size_in_bytes
      + stats.output_size_in_bytes
      - stats.alias_size_in_bytes
      + stats.temp_size_in_bytes
    )


def replica_mesh(num_replicas: int) -> Mesh:
  """The mesh a run of num_replicas replicas trains on by default (parallel.replica_groups)."""
  return parallel.make_mesh(groups=parallel.replica_groups(num_replicas, jax.device_count()))


@dataclasses.dataclass(frozen=True)
class JaxInputs:
  """What every JAX row reads, placed once: the dataset, and the pure step's fixed batch."""

  images: jax.Array  # (num_images, 32, 32, 3) uint8, replicated
  labels: jax.Array
  batch_images: jax.Array  # (batch_size, 32, 32, 3) float32, already normalised, batch-sharded
  batch_labels: jax.Array


def jax_inputs(batch_size: int, num_images: int, seed: int = 0) -> JaxInputs:
  """Random images and labels on every device; the batch split as one replica's over them all."""
  mesh = replica_mesh(1)
  rng = np.random.default_rng(seed)
  num_classes = cifar.NUM_CLASSES[DATASET]
  images, labels = parallel.replicate(
    (
      rng.integers(0, 256, (num_images, 32, 32, 3), dtype=np.uint8),
      rng.integers(0, num_classes, (num_images,), dtype=np.int32),
    ),
    mesh,
  )
  batch_images, batch_labels = jax.device_put(
    (
      rng.standard_normal((batch_size, 32, 32, 3), dtype=np.float32),
      rng.integers(0, num_classes, (batch_size,), dtype=np.int32),
    ),
    parallel.batch_sharded(mesh),
  )
  return JaxInputs(images, labels, batch_images, batch_labels)


def jax_rows(
  model_name: str,
  dtype: str,
  batch_size: int,
  steps_per_call: int,
  replicas: list[int],
  inputs: JaxInputs,
) -> list[Row]:
  """The data-path rows of each replica count (one replica: today's row) and the pure step's."""
  model = models.get_model(model_name, cifar.NUM_CLASSES[DATASET], dtype=dtype)
  schedule = optax.constant_schedule(LEARNING_RATE)
  # Decay every parameter, BatchNorm's included, as torch.optim.SGD's weight_decay does.
  tx = optim.create_optimizer(
    schedule, momentum=MOMENTUM, nesterov=False, weight_decay=WEIGHT_DECAY, decay_bn_and_bias=True
  )

  @functools.cache
  def initial_state(num_replicas: int) -> train_step.TrainState:
    """Seeds 0..num_replicas-1, stacked, as a run of that many replicas starts."""
    init_keys, _, _ = train_step.replica_keys(range(num_replicas))
    return train_step.create_train_state(model, tx, init_keys, replica_mesh(num_replicas))

  def data_path(num_replicas: int) -> Runner:
    mesh = replica_mesh(num_replicas)
    _, perm_keys, aug_keys = train_step.replica_keys(range(num_replicas))
    step_fn = functools.partial(
      train_step.train_step,
      model=model,
      tx=tx,
      schedule=schedule,
      batch_size=batch_size,
      epoch_steps=timeline.epoch_steps(len(inputs.labels), batch_size),
      mean=cifar.CHANNEL_MEAN[DATASET],
      std=cifar.CHANNEL_STD[DATASET],
      label_smoothing=0.0,
      mesh=mesh,
    )
    # The state's step runs past the first epoch over the rounds; every step reads epoch 0's
    # orders, which cost what any epoch's do.
    orders = train_step.epoch_order(perm_keys, 0, len(inputs.labels), mesh)
    return JaxRunner(
      train_step.make_train_chunk(step_fn, aug_keys, mesh),
      # The chunk donates its state: a copy, so the pure step can still take replica 0 of the
      # one-replica state, which saves initialising (and compiling) it again.
      jax.tree.map(jnp.copy, initial_state(num_replicas)),
      inputs.images,
      inputs.labels,
      orders,
      steps_per_call,
    )

  def pure_step() -> Runner:
    # train_step.replica copies replica 0 out of the stack: a state of its own to donate.
    return JaxRunner(
      make_pure_step(model, tx),
      train_step.replica(initial_state(1), 0),
      inputs.batch_images,
      inputs.batch_labels,
    )

  variant = 'data path' if steps_per_call == 1 else f'data path (K={steps_per_call})'
  data_paths = [
    Row(
      model_name,
      dtype,
      'JAX',
      variant,
      functools.partial(data_path, num_replicas),
      steps_per_call=steps_per_call,
      replicas=num_replicas,
    )
    for num_replicas in replicas
  ]
  return [*data_paths, Row(model_name, dtype, 'JAX', 'pure step', pure_step)]


# --- the command ---


def _names(value: str) -> list[str]:
  return [name.strip() for name in value.split(',') if name.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description='Training throughput of resnet_jax against the PyTorch references.'
  )
  parser.add_argument(
    '--models',
    default='resnet20',
    help='comma-separated resnet_jax model names; PyTorch has resnet18, resnet20 and resnet56',
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
    '--torch_compile', action='store_true', help="also time a torch.compile'd model"
  )
  parser.add_argument('--no_torch', action='store_true', help='JAX rows only')
  parser.add_argument('--out', help='also write the report to this file')
  args = parser.parse_args(argv)

  args.models, args.dtypes = _names(args.models), _names(args.dtypes)
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
        model_name, dtype, args.batch_size, args.steps_per_call, args.replicas, inputs
      )
      if not args.no_torch:
        rows += torch_rows(model_name, dtype, args.batch_size, args.torch_compile)
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
  final = lines + [''] + report.table(rows, args.batch_size)
  report.write(args.out, final)
  print('\n'.join(final[len(lines) :]), flush=True)


if __name__ == '__main__':
  main()
