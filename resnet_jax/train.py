"""Training: the state, the jitted chunk of train steps, the set-up, and the loop that drives them.

Data flows one way: the dataset is placed on every device once; each jitted call runs
`steps_per_call` steps, each of which gathers its batch by index, augments it and
updates the state, all on the device. The host only counts steps and, at log, eval and checkpoint
points, fetches small results.

Randomness is a pure function of (seed, step): the data order of epoch e comes from
fold_in(perm_key, e) and the augmentation of step s from fold_in(aug_key, s), so a resumed run
replays exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import TYPE_CHECKING, Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from resnet_jax import (augment, checkpoint, compile_cache, data, distributed, eval_step, guards,
                        metrics, models, optim, parallel, tfds_source, validation)
from resnet_jax.errors import UserError

if TYPE_CHECKING:
  # Annotations only: benchmarks import this where ml_collections is not installed.
  import ml_collections


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
  overrides = {'dtype': config.model.dtype, 'zero_init_residual': config.model.zero_init_residual,
               'bn_group_size': config.model.bn_group_size}
  if config.model.shortcut:  # '' keeps the model's published shortcut
    overrides['shortcut'] = config.model.shortcut
  return models.get_model(config.model.name, data.NUM_CLASSES[config.dataset.name], **overrides)


def steps_per_epoch(num_train_examples: int, batch_size: int) -> int:
  """Full batches only: each epoch drops a different remainder, as its permutation differs."""
  return num_train_examples // batch_size


def num_train_steps(config: ml_collections.ConfigDict, epoch_steps: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return config.num_epochs * epoch_steps


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(init, permutation, augmentation) keys; separate roots so folding in e and s never collide."""
  init_key, perm_key, aug_key = jax.random.split(jax.random.key(seed), 3)
  return init_key, perm_key, aug_key


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                       mesh: Mesh) -> TrainState:
  """Initialises the state directly onto the mesh, replicated."""
  def init(key):
    variables = model.init(key, jnp.zeros((1, 32, 32, 3), jnp.float32), train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables['batch_stats'], opt_state=tx.init(params))
  return jax.jit(init, out_shardings=parallel.replicated(mesh))(key)


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def sgd_step(state: TrainState, images: jax.Array, labels: jax.Array, *, model: nn.Module,
             tx: optax.GradientTransformation, label_smoothing: float
             ) -> tuple[TrainState, jax.Array, jax.Array, Any]:
  """Forward, backward and update on one ready batch: (new state, loss, logits, gradients)."""
  def loss_fn(params):
    logits, new_vars = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                   images, train=True, mutable=['batch_stats'])
    loss = optim.cross_entropy(logits, labels, label_smoothing).mean()
    return loss, (logits, new_vars['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state)
  return new_state, loss, logits, grads


def global_batch(step: jax.Array, images: jax.Array, labels: jax.Array, *, perm_key: jax.Array,
                 aug_key: jax.Array, batch_size: int, epoch_steps: int, mean: tuple[float, ...],
                 std: tuple[float, ...], mesh: Mesh) -> tuple[jax.Array, jax.Array]:
  """The augmented, normalised global batch (images, labels) that train step `step` trains on."""
  order = jax.random.permutation(jax.random.fold_in(perm_key, step // epoch_steps), len(labels))
  index = jax.lax.dynamic_slice(order, ((step % epoch_steps) * batch_size,), (batch_size,))
  # Shard the indices first, so each device gathers and augments only its own examples.
  index = jax.lax.with_sharding_constraint(index, parallel.batch_sharded(mesh))
  batch_images = augment.crop_and_flip(images[index], jax.random.fold_in(aug_key, step))
  return augment.normalize(batch_images, mean, std), labels[index]


def train_step(state: TrainState, images: jax.Array, labels: jax.Array, *, model: nn.Module,
               tx: optax.GradientTransformation, schedule: optax.Schedule,
               perm_key: jax.Array, aug_key: jax.Array, batch_size: int, epoch_steps: int,
               mean: tuple[float, ...], std: tuple[float, ...], label_smoothing: float,
               mesh: Mesh) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on the batch that step `state.step` draws from the on-device dataset.

  images and labels are the whole training set; they must be arguments of the jitted function,
  not constants closed over (XLA would embed 150 MB in the program and crawl).
  """
  step = state.step
  batch_images, batch_labels = global_batch(
      step, images, labels, perm_key=perm_key, aug_key=aug_key, batch_size=batch_size,
      epoch_steps=epoch_steps, mean=mean, std=std, mesh=mesh)

  new_state, loss, logits, grads = sgd_step(state, batch_images, batch_labels, model=model,
                                            tx=tx, label_smoothing=label_smoothing)
  step_metrics = {
      'loss': loss,
      'top1': jnp.mean(jnp.argmax(logits, -1) == batch_labels),
      'lr': schedule(step),
      'finite': jnp.isfinite(loss) & _all_finite(grads),
  }
  return new_state, step_metrics


def make_train_chunk(step_fn):
  """jit(K steps of step_fn); K is static, the state is donated.

  The K steps are unrolled rather than a lax.scan: XLA's CPU backend runs this step about 30
  times slower inside a while loop (ResNet-20, batch 128, 2026-11-27: 0.69 s a step plain,
  21 s in a scan of length 1).
  """
  @functools.partial(jax.jit, static_argnums=3, donate_argnums=0)
  def train_chunk(state: TrainState, images: jax.Array, labels: jax.Array, num_steps: int):
    per_step = []
    for _ in range(num_steps):
      state, step_metrics = step_fn(state, images, labels)
      per_step.append(step_metrics)
    return state, jax.tree.map(lambda *values: jnp.stack(values), *per_step)
  return train_chunk


@dataclasses.dataclass
class Setup:
  """What both training and --mode=eval build from a config."""
  mesh: Mesh
  dataset: data.CifarData
  model: nn.Module
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  state: TrainState  # freshly initialised: the start of training, or a restore template
  epoch_steps: int
  total_steps: int
  eval_fn: Any
  eval_sets: dict[str, eval_step.EvalSet]
  cache_dir: str | None  # the persistent compilation cache; None when off


def _prepare_tfds(config: ml_collections.ConfigDict) -> None:
  """Process 0 prepares a tfds dataset once; the other processes wait for it, then read."""
  if config.dataset.source != 'tfds':
    return
  if distributed.is_writer():
    tfds_source.prepare(config.dataset.name, config.dataset.data_dir)
  distributed.wait_for_all('tfds dataset prepared')


def load_dataset(config: ml_collections.ConfigDict) -> data.CifarData:
  """The config's dataset on the host, prepared first if it comes from tfds."""
  _prepare_tfds(config)
  return data.load(config.dataset.name, config.dataset.source, config.dataset.data_dir,
                   config.dataset.validation_size)


def setup(config: ml_collections.ConfigDict, mesh: Mesh | None = None,
          dataset: data.CifarData | None = None) -> Setup:
  """Validates the config and builds everything training and evaluation need.

  mesh: default all devices. dataset: default load_dataset(config).
  """
  mesh = mesh or parallel.make_mesh()
  validation.validate_config(config, mesh.size)
  cache_dir = compile_cache.enable(config.compilation_cache_dir)  # before anything compiles
  model = build_model(config)  # before loading data, so a bad model setting fails at once
  dataset = dataset or load_dataset(config)
  epoch_steps = steps_per_epoch(len(dataset.train.labels), config.batch_size)
  if epoch_steps == 0:
    raise UserError(f'batch_size={config.batch_size} is larger than the training set '
                    f'({len(dataset.train.labels)} examples): lower --config.batch_size.')
  total = num_train_steps(config, epoch_steps)
  schedule = optim.learning_rate_schedule(config, total)
  tx = optim.create_optimizer(
      schedule, momentum=config.optimizer.momentum, nesterov=config.optimizer.nesterov,
      weight_decay=config.optimizer.weight_decay,
      decay_bn_and_bias=config.optimizer.decay_bn_and_bias)
  state = create_train_state(model, tx, run_keys(config.seed)[0], mesh)
  mean, std = data.CHANNEL_MEAN[config.dataset.name], data.CHANNEL_STD[config.dataset.name]
  eval_fn = eval_step.make_eval_fn(model, mesh, config.eval.batch_size, mean, std,
                                   config.eval.flip_tta)
  splits = {'test': dataset.test, 'validation': dataset.validation}
  eval_sets = {name: eval_step.eval_set(split, config.eval.batch_size, mesh)
               for name, split in splits.items() if split is not None}
  return Setup(mesh, dataset, model, schedule, tx, state, epoch_steps, total, eval_fn, eval_sets,
               cache_dir)


def _is_boundary(step: int, every: int, total: int) -> bool:
  return step % every == 0 or step == total


def _check_finite(flags: list, step: int, last_saved: int | None, workdir: str) -> None:
  """Stops the run before a NaN or infinite state can be logged as fine or saved."""
  if not all(np.all(jax.device_get(f)) for f in flags):
    raise FloatingPointError(
        f'The loss or a gradient became NaN or infinite before step {step}; that state was not '
        f'saved. The last checkpoint is of step {last_saved} in '
        f'{checkpoint.checkpoint_dir(workdir)}. Lower the learning rate or check the data.')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mesh: Mesh | None = None) -> TrainState:
  """Trains from scratch, or resumes from the latest checkpoint in workdir; returns the state.

  mesh: the devices to train on; default all of them. Raises guards.Preempted after saving
  when SIGTERM or SIGINT asked the run to stop.
  """
  mesh = mesh or parallel.make_mesh()
  # Refusals that need no compilation come first (bad values, missing data, an unshared or
  # busy workdir), and the workdir is only made once the config and data are sound.
  validation.validate_config(config, mesh.size)
  build_model(config)  # raises for a model setting the net does not take
  dataset = load_dataset(config)
  if distributed.is_writer():
    os.makedirs(workdir, exist_ok=True)
  distributed.check_shared_workdir(workdir, config.shared_workdir_timeout_s)
  with guards.WorkdirLock(workdir), guards.StopRequest() as stop_request:
    return _train(config, workdir, setup(config, mesh, dataset), stop_request)


def _train(config: ml_collections.ConfigDict, workdir: str, run: Setup,
           stop_request: guards.StopRequest) -> TrainState:
  saved = guards.saved_config(workdir)
  manager = checkpoint.create_manager(workdir, config.keep_checkpoints)
  state = run.state
  if manager.latest_step() is not None:
    guards.check_config_change(saved, config)
    restored = checkpoint.restore_latest(manager, run.state, workdir,
                                         guards.same_structure(saved, config))
    if restored is not None:
      state = restored
      logging.info('Resumed from the checkpoint of step %d.', int(state.step))
  step = int(state.step)
  log = metrics.MetricsLog(workdir, step, active=distributed.is_writer())
  if distributed.is_writer():
    metrics.write_config(workdir, config)
    metrics.write_provenance(workdir)

  _, perm_key, aug_key = run_keys(config.seed)
  images, labels = parallel.replicate((run.dataset.train.images, run.dataset.train.labels),
                                      run.mesh)
  step_fn = functools.partial(
      train_step, model=run.model, tx=run.tx, schedule=run.schedule, perm_key=perm_key,
      aug_key=aug_key, batch_size=config.batch_size, epoch_steps=run.epoch_steps,
      mean=data.CHANNEL_MEAN[config.dataset.name], std=data.CHANNEL_STD[config.dataset.name],
      label_smoothing=config.label_smoothing, mesh=run.mesh)
  train_chunk = make_train_chunk(step_fn)
  logging.info('%s on %s: %d steps (%d per epoch), %d devices, global batch %d.',
               config.model.name, config.dataset.name, run.total_steps, run.epoch_steps,
               run.mesh.size, config.batch_size)

  progress = metrics.Progress(run.total_steps, config.batch_size, run.epoch_steps, step)
  profiler = metrics.StepProfiler(workdir, tuple(config.profile_steps))
  pending = []  # per-chunk metrics still on the device, fetched at the next log point
  last_saved = manager.latest_step()
  # Whatever ends the loop (the end, a stop request, a NaN), an asynchronous save in flight is
  # finished before the process can exit, so no complete checkpoint is ever lost.
  try:
    while step < run.total_steps:
      num_steps = min(config.steps_per_call, run.total_steps - step)
      first_call = step == progress.start_step
      profiler.before_chunk(step)
      start = time.perf_counter()
      state, chunk_metrics = train_chunk(state, images, labels, num_steps)
      step += num_steps
      pending.append(chunk_metrics)
      profiler.after_chunk(step, state)
      if first_call:
        jax.block_until_ready(state)
        hits, misses = compile_cache.counts()
        logging.info('First call (compile and %d steps) took %.1f s; persistent compilation '
                     'cache %s: %d hits, %d misses so far.', num_steps,
                     time.perf_counter() - start, run.cache_dir or 'off', hits, misses)
        progress.restart(step)

      boundary_work = False
      stopping = stop_request.after_chunk()
      if stopping or _is_boundary(step, config.checkpoint_every_steps, run.total_steps):
        _check_finite([m['finite'] for m in pending], step, last_saved, workdir)
      if _is_boundary(step, config.log_every_steps, run.total_steps):
        fetched = jax.device_get(pending)
        pending = []
        _check_finite([m['finite'] for m in fetched], step, last_saved, workdir)
        rate = progress.images_per_second(step)
        row = {k: float(np.mean(np.concatenate([m[k] for m in fetched])))
               for k in ('loss', 'top1')}
        row['lr'] = float(fetched[-1]['lr'][-1])
        logging.info(progress.line(step, row['loss'], row['top1'], row['lr'], rate))
        if rate:
          row['images_per_second'] = rate
        log.write(step, 'train', {'epoch': step / run.epoch_steps, **row})
      if _is_boundary(step, config.eval_every_steps, run.total_steps):
        boundary_work = True
        for name, split in run.eval_sets.items():
          result = run.eval_fn(state, split)
          logging.info(metrics.eval_line(name, step, result))
          log.write(step, name, {'epoch': step / run.epoch_steps, **result})
      if stopping or _is_boundary(step, config.checkpoint_every_steps, run.total_steps):
        boundary_work = True
        checkpoint.save(manager, step, state)
        last_saved = step
      if stopping and step < run.total_steps:
        raise guards.Preempted(
            f'Stopped by {stop_request.signal_name} after saving the checkpoint of step {step} in '
            f'{checkpoint.checkpoint_dir(workdir)}. Run the same command to resume.')
      if boundary_work:
        progress.restart(step)
  finally:
    profiler.after_chunk(step, state, force_stop=True)
    manager.wait_until_finished()
    manager.close()
    log.close()
  return state
