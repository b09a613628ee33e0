"""Everything a run builds from a validated config: data, timeline, model, optimiser, fresh state.

Training (train.py), --mode=eval (evaluate_checkpoint.py), the parity tool and the tests all
start here, so they build the same run from the same config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import optax
from jax.sharding import Mesh

from resnet_jax import (
  cifar,
  compile_cache,
  data,
  distributed,
  evaluation,
  models,
  optim,
  parallel,
  tfds_source,
  timeline,
  train_step,
  validation,
)

if TYPE_CHECKING:
  import ml_collections


@dataclasses.dataclass
class Setup:
  """What both training and --mode=eval build from a config."""

  mesh: Mesh
  seeds: tuple[int, ...]  # replica k's seed at index k
  dataset: cifar.CifarData
  timeline: timeline.Timeline
  model: nn.Module
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  # Freshly initialised, stacked over the replicas: the start of training, or a restore template.
  state: train_step.TrainState
  eval_fn: Any
  eval_sets: dict[str, evaluation.EvalSet]
  cache_dir: str | None  # the persistent compilation cache; None when off


def run_mesh(config: ml_collections.ConfigDict, devices: list | None = None) -> Mesh:
  """The config's (replica, data) mesh over the devices (default all)."""
  devices = devices or jax.devices()
  groups = parallel.replica_groups(config.num_replicas, len(devices), config.replica_groups)
  return parallel.make_mesh(devices, groups)


def seeds(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """Replica k trains as the run of seed + k alone would."""
  return tuple(range(config.seed, config.seed + config.num_replicas))


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  m = config.model
  return models.get_model(
    m.name,
    cifar.NUM_CLASSES[config.dataset.name],
    dtype=m.dtype,
    shortcut=m.shortcut,
    zero_init_residual=m.zero_init_residual,
    bn_group_size=m.bn_group_size,
    dropout_rate=m.dropout_rate,
    scan_blocks=m.scan_blocks,
    remat=m.remat,
  )


def prepare_tfds(names: Sequence[str], data_dir: str) -> None:
  """Prepares tfds datasets not yet under data_dir: process 0 alone, while the others wait."""
  if distributed.is_writer():
    tfds_source.prepare(names, data_dir)
  distributed.wait_for_all('tfds datasets prepared')


def load_dataset(config: ml_collections.ConfigDict) -> cifar.CifarData:
  """The config's dataset on the host; a tfds dataset is prepared first, by process 0 alone."""
  if config.dataset.source == 'tfds':
    prepare_tfds([config.dataset.name], config.dataset.data_dir)
  return data.load(
    config.dataset.name,
    config.dataset.source,
    config.dataset.data_dir,
    config.dataset.validation_size,
  )


def create_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule):
  opt = config.optimizer
  return optim.create_optimizer(
    schedule,
    momentum=opt.momentum,
    nesterov=opt.nesterov,
    weight_decay=opt.weight_decay,
    decay_bn_and_bias=opt.decay_bn_and_bias,
  )


def setup(
  config: ml_collections.ConfigDict,
  mesh: Mesh | None = None,
  dataset: cifar.CifarData | None = None,
) -> Setup:
  """Builds everything training and evaluation need from a config that validate_config passed.

  Writes no file. mesh: default run_mesh(config). dataset: default load_dataset(config).
  """
  mesh = mesh or run_mesh(config)
  dataset = dataset or load_dataset(config)
  num_train = len(dataset.train.labels)
  steps = timeline.resolve(config, num_train)
  validation.validate_timeline(steps, num_train, config.batch_size)
  cache_dir = compile_cache.enable(config.compilation_cache_dir)  # before anything compiles
  model = build_model(config)
  schedule = optim.learning_rate_schedule(config.schedule, config.optimizer.learning_rate, steps)
  tx = create_optimizer(config, schedule)
  run_seeds = seeds(config)
  state = train_step.create_train_state(
    model, tx, train_step.replica_keys(run_seeds)[0], mesh, with_ema=config.ema.decay > 0
  )
  name = config.dataset.name
  eval_fn = evaluation.make_eval_fn(
    model,
    mesh,
    config.eval.batch_size,
    cifar.CHANNEL_MEAN[name],
    cifar.CHANNEL_STD[name],
    run_seeds,
    config.eval.flip_tta,
  )
  splits = {'test': dataset.test, 'validation': dataset.validation}
  eval_sets = {
    split_name: evaluation.eval_set(split, config.eval.batch_size, mesh)
    for split_name, split in splits.items()
    if split is not None
  }
  return Setup(
    mesh, run_seeds, dataset, steps, model, schedule, tx, state, eval_fn, eval_sets, cache_dir
  )
