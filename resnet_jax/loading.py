"""A trained run in Python: load_run restores one checkpoint of a workdir onto one device.

  run = resnet_jax.load_run('runs/resnet20')  # the latest checkpoint; run.config, run.model
  logits = run.predict(images)  # uint8 (N, 32, 32, 3) -> float32 (N, classes)
  metrics = run.evaluate(images, labels)  # loss, top1, top5 as --mode=eval computes them
  averaged = resnet_jax.load_run('runs/resnet20', ema=True)  # the EMA of the weights instead

It reads the workdir's config.json and, of one checkpoint, the params, BatchNorm statistics, step
and divergence marks: no dataset and no optimiser state. The checkpoint restores onto one device of
this process, whatever number of devices and processes wrote it. docs/using-a-run.md has more.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from resnet_jax import (
  augment,
  checkpoint,
  cifar,
  evaluation,
  guards,
  parallel,
  records,
  setup,
  train_step,
)
from resnet_jax.ema import averaged
from resnet_jax.errors import UserError

# What predicting and evaluating need of a TrainState: all but the optimiser state.
_FIELDS = ('step', 'params', 'batch_stats', 'diverged_at')


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config.json of the run in workdir."""
  saved = records.read_config(workdir)
  if saved is None:
    raise UserError(
      f'No {records.CONFIG} in {workdir}: not the workdir of a run. Give the workdir a run was '
      'trained in (it holds config.json and checkpoints/).'
    )
  for field, value in guards.ADDED_FIELDS.items():  # a config.json older than the field
    section, name = field.split('.')
    saved.setdefault(section, {}).setdefault(name, value)
  return ml_collections.ConfigDict(saved)


class Run:
  """One checkpoint of a run on one device (load_run builds it).

  Attributes:
    config: the run's config (its config.json).
    model: the flax module: model.apply(variables, normalised images, train=False) -> logits.
    step: the checkpoint's step.
    ema: whether params and batch_stats are the run's EMA of them (load_run(..., ema=True)).
    replicas: the indices of the loaded replicas (replica k trained as the run of seed + k).
    seeds: their seeds.
    diverged_at: of each loaded replica, 0, or the step at which it diverged (its weights are
      then those of the step before).
    state: the loaded replicas' train_step.TrainState, stacked on a leading axis, without
      optimiser state (opt_state is None).
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    model: nn.Module,
    step: int,
    replicas: tuple[int, ...],
    state: train_step.TrainState,
    mesh: Mesh,
    ema: bool = False,
  ):
    self.config = config
    self.model = model
    self.step = step
    self.ema = ema
    self.replicas = replicas
    self.state = state
    self._stacked = {'params': state.params, 'batch_stats': state.batch_stats}
    self.seeds = tuple(config.seed + k for k in replicas)
    self.diverged_at = tuple(jax.device_get(state.diverged_at).tolist())
    self._mesh = mesh
    self._batch_size = config.eval.batch_size
    self._num_classes = cifar.NUM_CLASSES[config.dataset.name]
    self._mean = cifar.CHANNEL_MEAN[config.dataset.name]
    self._std = cifar.CHANNEL_STD[config.dataset.name]
    self._eval_fns = {}  # flip_tta -> evaluation.make_eval_fn's function, compiled once

    def logits(variables, images):
      normalised = augment.normalize(images, self._mean, self._std)
      return jax.vmap(lambda v: model.apply(v, normalised, train=False))(variables)

    self._logits = jax.jit(logits)

  @property
  def variables(self) -> dict[str, Any]:
    """{'params': ..., 'batch_stats': ...}: of the one loaded replica, or stacked on a leading
    axis over the loaded replicas when there are several."""
    return self._stacked if len(self.replicas) > 1 else train_step.replica(self._stacked, 0)

  def predict(self, images: Any) -> np.ndarray:
    """Logits of uint8 NHWC images (N, 32, 32, 3), normalised as in training; any N.

    Returns float32 (N, classes), or (replicas, N, classes) when several replicas are loaded.
    The images go through in batches of config.eval.batch_size, the last one padded.
    """
    images = _check_images(images)
    count = len(images)
    out = np.empty((len(self.replicas), count, self._num_classes), np.float32)
    for start in range(0, count, self._batch_size):
      batch = images[start : start + self._batch_size]
      padded = np.pad(batch, ((0, self._batch_size - len(batch)), (0, 0), (0, 0), (0, 0)))
      logits = jax.device_get(self._logits(self._stacked, padded))
      out[:, start : start + len(batch)] = logits[:, : len(batch)]
    return out if len(self.replicas) > 1 else out[0]

  def evaluate(self, images: Any, labels: Any, *, flip_tta: bool = False) -> dict[str, Any]:
    """Loss, top-1 and top-5 of the images against their labels, as --mode=eval computes them.

    Returns what eval_<step>.json holds for a split (docs/records.md): each metric's mean over
    the live loaded replicas, `count`, `replicas` (each one's own numbers, by its index in the
    run) and, with several, the standard deviations. flip_tta adds the *_flip_tta metrics.
    """
    images = _check_images(images)
    if not len(images):
      raise UserError('evaluate needs at least one image.')
    labels = _check_labels(labels, len(images), self._num_classes)
    if flip_tta not in self._eval_fns:
      self._eval_fns[flip_tta] = evaluation.make_eval_fn(
        self.model, self._mesh, self._batch_size, self._mean, self._std, self.seeds, flip_tta
      )
    split = evaluation.eval_set(cifar.Split(images, labels), self._batch_size, self._mesh)
    result = self._eval_fns[flip_tta](self.state, split)
    for row in result['replicas']:  # numbered from 0 among the loaded replicas: the run's index
      row['replica'] = self.replicas[row['replica']]
    return result


def _check_images(images: Any) -> np.ndarray:
  array = np.asarray(images)
  if array.dtype != np.uint8 or array.shape[1:] != (32, 32, 3):
    raise UserError(
      f'images must be uint8 of shape (N, 32, 32, 3) (NHWC, pixel values 0-255, as CIFAR stores '
      f'them); got {array.dtype} of shape {array.shape}. One image x: x[None]; floats in [0, 1]: '
      '(x * 255).round().astype(np.uint8).'
    )
  return array


def _check_labels(labels: Any, count: int, num_classes: int) -> np.ndarray:
  array = np.asarray(labels)
  if (
    not np.issubdtype(array.dtype, np.integer)
    or array.shape != (count,)
    or array.min() < 0
    or array.max() >= num_classes
  ):
    raise UserError(
      f'labels must be {count} integer classes in [0, {num_classes}), one per image; got '
      f'{array.dtype} of shape {array.shape}.'
    )
  return array.astype(np.int32)


def load_run(
  workdir: str,
  step: int | None = None,
  replica: int | None = None,
  *,
  device: jax.Device | None = None,
  ema: bool = False,
) -> Run:
  """Restores a checkpoint of the run in workdir onto one device; reads no dataset.

  Args:
    workdir: the run's workdir (it holds config.json and checkpoints/).
    step: the checkpoint's step; None: the latest.
    replica: only replica k (the run of seed + k); None: every replica of the run.
    device: where the variables go and predict and evaluate compute; default this process's
      first device.
    ema: load the run's exponential moving average of the weights and BatchNorm statistics
      (a run trained with ema.decay > 0) as the params and batch_stats, instead of the raw ones.

  Raises:
    UserError: no config.json or no checkpoints in workdir, no checkpoint of that step (the
      message lists the saved ones), no such replica, or ema=True for a run without an EMA.
  """
  config = read_config(workdir)
  num_replicas = config.num_replicas
  if replica is not None and not (isinstance(replica, int) and 0 <= replica < num_replicas):
    raise UserError(
      f'replica={replica!r}: the run in {workdir} has {num_replicas} replica(s), 0 to '
      f'{num_replicas - 1}; None loads them all.'
    )
  has_ema = config.ema.decay > 0
  if ema and not has_ema:
    raise UserError(
      f'ema=True: the run in {workdir} kept no EMA of its weights (it was trained with '
      'ema.decay=0); load it with ema=False.'
    )
  manager, step = checkpoint.open_step(workdir, -1 if step is None else step)
  mesh = parallel.make_mesh([device or jax.local_devices()[0]])
  model = setup.build_model(config)
  init_keys = train_step.replica_keys(setup.seeds(config))[0]
  template = train_step.abstract_eval_state(model, init_keys, mesh, with_ema=ema)
  try:
    fields = {name: getattr(template, name) for name in _FIELDS + (('ema',) if ema else ())}
    state = train_step.TrainState(
      opt_state=None, **checkpoint.restore(manager, step, fields, partial=True)
    )
  finally:
    manager.close()
  if ema:
    state = averaged(state).replace(ema=None)
  if replica is None:
    return Run(config, model, step, tuple(range(num_replicas)), state, mesh, ema)
  alone = jax.tree.map(lambda x: x[replica, None], state)
  return Run(config, model, step, (replica,), alone, mesh, ema)
