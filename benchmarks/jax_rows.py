"""The JAX rows of benchmarks/throughput.py: the data path (train_step.make_train_chunk, as
training runs it, for one or more replicas) and the pure step, on inputs placed once on the
devices."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from benchmarks.rows import DATASET, LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, Row, Runner
from resnet_jax import cifar, models, optim, parallel, timeline, train_step


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
  scan: bool,
  replicas: list[int],
  inputs: JaxInputs,
) -> list[Row]:
  """The data-path rows of each replica count (one replica: today's row) and the pure step's.

  scan: the data path's steps_per_call steps a call as a lax.scan instead of unrolled.
  """
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
      train_step.make_train_chunk(step_fn, aug_keys, mesh, scan=scan),
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

  data_paths = [
    Row(
      model_name,
      dtype,
      'JAX',
      'data path',
      functools.partial(data_path, num_replicas),
      steps_per_call=steps_per_call,
      scan=scan,
      replicas=num_replicas,
    )
    for num_replicas in replicas
  ]
  return [*data_paths, Row(model_name, dtype, 'JAX', 'pure step', pure_step)]
