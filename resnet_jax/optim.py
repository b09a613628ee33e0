"""What training minimises and how: the loss, optax SGD with momentum and PyTorch-style coupled
weight decay, and the learning-rate schedules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:
  # Annotations only: benchmarks import this where ml_collections is not installed.
  import ml_collections

  from resnet_jax.timeline import Timeline


SCHEDULES = ('cosine', 'piecewise')
WARMUP_MODES = ('linear', 'constant')


def learning_rate_schedule(
  schedule: ml_collections.ConfigDict, base_lr: float, timeline: Timeline
) -> optax.Schedule:
  """The lr at each step: an optional warm-up, then cosine decay to 0 or piecewise constant.

  schedule: the config's schedule section (its name, warm-up mode and factors); every step count
  comes from the timeline, where epoch-based fields were resolved.
  """
  warmup = timeline.warmup_steps
  if schedule.name == 'cosine':
    main = optax.cosine_decay_schedule(base_lr, decay_steps=max(timeline.total_steps - warmup, 1))
  else:
    # Boundaries count from step 0 (as the paper's 32k/48k do), but join_schedules restarts
    # the main schedule's clock after the warm-up: shift them back.
    main = optax.piecewise_constant_schedule(
      base_lr, {b - warmup: schedule.decay_factor for b in timeline.boundaries}
    )
  if warmup == 0:
    return main
  if schedule.warmup_mode == 'linear':
    # base_lr * (s + 1) / warmup at step s: from base_lr / warmup up to base_lr at the warm-up's
    # last step. A ramp from 0 would spend step 0 at lr 0, its gradient only filling the
    # momentum (runs made before this change did: docs/how-it-works.md).
    def warm(count):
      return base_lr * (count + 1) / warmup

  else:
    warm = optax.constant_schedule(base_lr * schedule.warmup_factor)
  return optax.join_schedules([warm, main], [warmup])


def _decay_mask(params):
  """Decay only kernels (ndim > 1): BatchNorm scales/biases and dense biases are 1-D."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(
  schedule: optax.Schedule,
  *,
  momentum: float,
  nesterov: bool,
  weight_decay: float,
  decay_bn_and_bias: bool,
) -> optax.GradientTransformation:
  """SGD as torch.optim.SGD: g += wd * p; v = momentum * v + g; p -= lr * v (or nesterov).

  decay_bn_and_bias=False exempts every 1-D parameter (BatchNorm scales and biases, biases).
  """
  return optax.chain(
    optax.add_decayed_weights(weight_decay, mask=None if decay_bn_and_bias else _decay_mask),
    optax.sgd(schedule, momentum=momentum, nesterov=nesterov),
  )


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
  """Per-example loss, in float32 whatever the compute dtype."""
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  targets = optax.smooth_labels(one_hot, label_smoothing) if label_smoothing else one_hot
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
