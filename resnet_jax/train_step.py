"""The jitted part of training: the state, one train step on the on-device dataset, K steps a call.

Each step gathers its batch by index from the training set (already on every device), augments
and normalises it, and updates the state, all inside jit. Randomness is a pure function of
(seed, step): the data order of epoch e is a permutation drawn from fold_in(perm_key, e), computed
once per epoch (epoch_order), and the augmentation of step s comes from fold_in(aug_key, s) (the
step key: crop and flip use it as it is, cutout fold_in(step key, 1), dropout fold_in(step key,
2)), so a resumed run replays exactly what an uninterrupted one would have done.

train_step is one replica's step. A run of N replicas (seeds seed..seed+N-1) stacks N such states
on a leading replica axis and vmaps the step over it (make_train_chunk): replica k computes what
the run of seed+k alone would, in one program with the others.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from resnet_jax import augment, ema, optim, parallel


@flax.struct.dataclass
class TrainState:
  """One replica's state; a run's state is this with a leading replica axis on every leaf."""

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  # 0 while every step was finite; else the first step whose loss or gradients were not. The
  # replica then keeps the state of the step before it and trains no further.
  diverged_at: jax.Array
  # With config.ema.decay > 0, {'params', 'batch_stats'} averaged over the steps (ema.py).
  ema: Any = None


def saved_fields(state: TrainState) -> dict[str, Any]:
  """The state as its checkpoint holds it: a dict of its fields, without `ema` when there is none,
  so a run without an EMA saves (and restores) the tree runs saved before the EMA existed."""
  fields = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
  if state.ema is None:
    del fields['ema']
  return fields


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(init, permutation, augmentation) keys; separate roots so folding in e and s never collide."""
  init_key, perm_key, aug_key = jax.random.split(jax.random.key(seed), 3)
  return init_key, perm_key, aug_key


def replica_keys(seeds: Sequence[int]) -> tuple[jax.Array, jax.Array, jax.Array]:
  """run_keys of each seed, stacked on a leading replica axis."""
  return tuple(jnp.stack(keys) for keys in zip(*map(run_keys, seeds)))


def state_sharding(mesh: Mesh) -> TrainState:
  """Where a stacked state lives: each replica's arrays on its group's devices; the step
  counters and divergence marks (a few integers) on every device, so every process reads them.
  """
  by_replica, everywhere = parallel.replica_sharded(mesh), parallel.replicated(mesh)
  return TrainState(
    step=everywhere,
    params=by_replica,
    batch_stats=by_replica,
    opt_state=by_replica,
    diverged_at=everywhere,
    ema=by_replica,
  )


def _state_initializer(
  model: nn.Module, tx: optax.GradientTransformation | None, mesh: Mesh, with_ema: bool
) -> Callable[[jax.Array], TrainState]:
  def init(key):
    variables = model.init(key, jnp.zeros((1, 32, 32, 3), jnp.float32), train=False)
    params, batch_stats = variables['params'], variables['batch_stats']
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=None if tx is None else tx.init(params),
      diverged_at=jnp.zeros((), jnp.int32),
      ema=ema.initial(params, batch_stats) if with_ema else None,
    )

  return jax.jit(jax.vmap(init), out_shardings=state_sharding(mesh))


def create_train_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  init_keys: jax.Array,
  mesh: Mesh,
  with_ema: bool = False,
) -> TrainState:
  """The stacked fresh state of one replica per key of init_keys, directly onto the mesh; with_ema:
  with an EMA of the weights, which starts as the initial weights."""
  return _state_initializer(model, tx, mesh, with_ema)(init_keys)


def abstract_eval_state(
  model: nn.Module, init_keys: jax.Array, mesh: Mesh, with_ema: bool = False
) -> TrainState:
  """create_train_state's state without optimiser state (opt_state None), as shapes, dtypes and
  shardings only (nothing is computed): the restore template of a state that only predicts and
  evaluates."""
  return jax.eval_shape(_state_initializer(model, None, mesh, with_ema), init_keys)


def replica(state: TrainState, k: int) -> TrainState:
  """Replica k's own state out of a stacked one."""
  return jax.tree.map(lambda x: x[k], state)


@functools.lru_cache
def _permutation(num_examples: int, mesh: Mesh) -> Callable[[jax.Array, int], jax.Array]:
  def permute(keys, epoch):
    def one(key):
      return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)

    return one(keys) if keys.ndim == 0 else jax.vmap(one)(keys)

  return jax.jit(permute, out_shardings=parallel.replicated(mesh))


def epoch_order(perm_key: jax.Array, epoch: int, num_examples: int, mesh: Mesh) -> jax.Array:
  """The order in which epoch `epoch` visits the training set, on every device.

  perm_key may be stacked (replica_keys): then one order per replica, stacked alike.
  """
  return _permutation(num_examples, mesh)(perm_key, epoch)


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def update_on_batch(
  state: TrainState,
  images: jax.Array,
  labels: jax.Array,
  *,
  model: nn.Module,
  tx: optax.GradientTransformation,
  label_smoothing: float,
  dropout_key: jax.Array | None = None,
) -> tuple[TrainState, jax.Array, jax.Array, Any]:
  """Forward, backward and the optimiser's update on one ready batch.

  Returns (new state, loss, logits, gradients); tx may be any optax optimiser. dropout_key: the
  model's 'dropout' rng stream; a model with dropout needs it.
  """

  def loss_fn(params):
    logits, new_vars = model.apply(
      {'params': params, 'batch_stats': state.batch_stats},
      images,
      train=True,
      mutable=['batch_stats'],
      rngs={} if dropout_key is None else {'dropout': dropout_key},
    )
    loss = optim.cross_entropy(logits, labels, label_smoothing).mean()
    return loss, (logits, new_vars['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
    step=state.step + 1,
    params=optax.apply_updates(state.params, updates),
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  return new_state, loss, logits, grads


def global_batch(
  step: jax.Array,
  images: jax.Array,
  labels: jax.Array,
  order: jax.Array,
  *,
  aug_key: jax.Array,
  batch_size: int,
  epoch_steps: int,
  mean: tuple[float, ...],
  std: tuple[float, ...],
  mesh: Mesh,
  cutout_size: int = 0,
) -> tuple[jax.Array, jax.Array]:
  """The augmented, normalised global batch (images, labels) that train step `step` trains on.

  order: epoch_order of the epoch that `step` belongs to. cutout_size: 0, or the side of the
  square augment.cutout zeroes in each normalised image.
  """
  index = jax.lax.dynamic_slice(order, ((step % epoch_steps) * batch_size,), (batch_size,))
  # Shard the indices first, so each device gathers and augments only its own examples.
  index = jax.lax.with_sharding_constraint(index, parallel.batch_sharded(mesh))
  step_key = jax.random.fold_in(aug_key, step)
  batch_images = augment.normalize(augment.crop_and_flip(images[index], step_key), mean, std)
  if cutout_size:
    # A stream of its own folded out of the step's key: crop and flip keep their bits.
    batch_images = augment.cutout(batch_images, jax.random.fold_in(step_key, 1), cutout_size)
  return batch_images, labels[index]


def train_step(
  state: TrainState,
  images: jax.Array,
  labels: jax.Array,
  order: jax.Array,
  aug_key: jax.Array,
  *,
  model: nn.Module,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  batch_size: int,
  epoch_steps: int,
  mean: tuple[float, ...],
  std: tuple[float, ...],
  label_smoothing: float,
  mesh: Mesh,
  cutout_size: int = 0,
  ema_decay: float = 0.0,
  ema_warmup: bool = True,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One replica's step on the batch that step `state.step` draws from the on-device dataset.

  images and labels are the whole training set; they must be arguments of the jitted function,
  not constants closed over (XLA would embed 150 MB in the program and crawl). A step whose loss
  or gradients are not finite is not applied: the state stays the last finite one (its EMA
  too), marked diverged, and later steps leave it so. ema_decay and ema_warmup: ema.update's,
  for a state with an EMA.
  """
  step = state.step
  batch_images, batch_labels = global_batch(
    step,
    images,
    labels,
    order,
    aug_key=aug_key,
    batch_size=batch_size,
    epoch_steps=epoch_steps,
    mean=mean,
    std=std,
    mesh=mesh,
    cutout_size=cutout_size,
  )
  # The step's augmentation key seeds its other randomness too: stream 2 is dropout's.
  dropout_key = jax.random.fold_in(jax.random.fold_in(aug_key, step), 2)
  new_state, loss, logits, grads = update_on_batch(
    state,
    batch_images,
    batch_labels,
    model=model,
    tx=tx,
    label_smoothing=label_smoothing,
    dropout_key=dropout_key,
  )
  if state.ema is not None:
    average = ema.update(
      state.ema,
      new_state.params,
      new_state.batch_stats,
      step,
      decay=ema_decay,
      warmup=ema_warmup,
    )
    new_state = new_state.replace(ema=average)
  live = state.diverged_at == 0
  finite = jnp.isfinite(loss) & _all_finite(grads)
  new_state = jax.tree.map(lambda new, old: jnp.where(live & finite, new, old), new_state, state)
  new_state = new_state.replace(
    step=step + 1, diverged_at=jnp.where(live & ~finite, step + 1, state.diverged_at)
  )
  step_metrics = {
    'loss': loss,
    'top1': jnp.mean(jnp.argmax(logits, -1) == batch_labels),
    'lr': schedule(step),
    'diverged_at': new_state.diverged_at,
  }
  return new_state, step_metrics


def make_train_chunk(
  step_fn: Callable, aug_keys: jax.Array, mesh: Mesh, *, scan: bool = False
) -> Callable:
  """jit(K steps of step_fn on every replica) as train_chunk(state, images, labels, orders, K).

  state, orders (epoch_order of stacked keys) and aug_keys carry the replica axis; K is static.
  Returns the new state and each step's metrics, (K, replicas) arrays on every device. The state
  is donated. The K steps are unrolled by default rather than a lax.scan: XLA's CPU backend runs
  this step about 30 times slower inside a while loop (benchmarks/RESULTS.md). scan=True runs
  them as a lax.scan, which compiles the step once whatever K (benchmarks/window.py times both
  on a GPU).
  """
  replicas_step = parallel.over_replicas(step_fn, mesh, in_axes=(0, None, None, 0, 0))

  @functools.partial(
    jax.jit,
    static_argnums=4,
    donate_argnums=0,
    out_shardings=(state_sharding(mesh), parallel.replicated(mesh)),
  )
  def train_chunk(state, images, labels, orders, num_steps):
    def one_step(state, _):
      return replicas_step(state, images, labels, orders, aug_keys)

    if scan:
      return jax.lax.scan(one_step, state, length=num_steps)
    per_step = []
    for _ in range(num_steps):
      state, step_metrics = one_step(state, None)
      per_step.append(step_metrics)
    return state, jax.tree.map(lambda *values: jnp.stack(values), *per_step)

  return train_chunk
