"""An exponential moving average (EMA) of a run's weights, updated in the train step.

With config.ema.decay > 0 the TrainState carries `ema`: {'params', 'batch_stats'}, one replica's
average like the rest of its state. After every applied step t (0 for the first),

  ema = d * ema + (1 - d) * new,  d = min(decay, (1 + t) / (10 + t)) with ema.warmup, else decay,

for the params and for the BatchNorm running statistics alike. The warm-up (TensorFlow's
ExponentialMovingAverage with num_updates) leaves the initialisation a weight of 9! T! / (T + 9)!
after T steps (1e-5 after 10) instead of decay^T (0.99 after 10 at decay 0.999).

The statistics are averaged too rather than borrowed from the raw weights: the raw running
statistics follow the weights of the last ten or so steps (BatchNorm momentum 0.9), while the
averaged weights are those of the last 1 / (1 - decay) steps, whose activations the same average
of the statistics approximates (timm's ModelEmaV2 likewise averages every buffer). Exact
statistics of the averaged weights would need a pass over the training set at each eval. A step
that is not applied (a non-finite one, train_step.train_step) leaves the average as it was too.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# The averaged weights' results are logged as the split's name with this suffix: test_ema.
SPLIT_SUFFIX = '_ema'


def initial(params: Any, batch_stats: Any) -> dict[str, Any]:
  """The average before any step: the initial weights and statistics themselves."""
  return {'params': params, 'batch_stats': batch_stats}


def decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
  """The decay d of the update after train step `step` (counted from 0)."""
  if not warmup:
    return jnp.asarray(decay, jnp.float32)
  t = step.astype(jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1 + t) / (10 + t))


def update(
  average: dict[str, Any],
  params: Any,
  batch_stats: Any,
  step: jax.Array,
  *,
  decay: float,
  warmup: bool,
) -> dict[str, Any]:
  """The average after train step `step` produced params and batch_stats."""
  d = decay_at(step, decay, warmup)
  return jax.tree.map(
    lambda old, new: d * old + (1 - d) * new, average, initial(params, batch_stats)
  )


def averaged(state: Any) -> Any:
  """state (a TrainState with an EMA) with its params and BatchNorm statistics replaced by the
  averaged ones: what evaluation and load_run(..., ema=True) use."""
  return state.replace(params=state.ema['params'], batch_stats=state.ema['batch_stats'])


def evaluated_states(state: Any) -> dict[str, Any]:
  """The states an evaluation reports, by split-name suffix: the raw weights under the split's
  own name and, when the run keeps an EMA, the averaged ones under name + SPLIT_SUFFIX."""
  if state.ema is None:
    return {'': state}
  return {'': state, SPLIT_SUFFIX: averaged(state)}
