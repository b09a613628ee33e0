"""The training loop: resume or start, then jitted calls of train steps, with logs, evals and saves.

The host only counts steps and, at log, eval and checkpoint steps, fetches small results. Where
each call ends is the timeline's chunk plan, so evals and checkpoints land on their exact steps.
The host stays at most one chunk ahead of the devices (_Lead), so a stop request is honoured
within the running chunk and one more, and progress lines know how far the devices are.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from resnet_jax import (
  checkpoint,
  cifar,
  compile_cache,
  console,
  distributed,
  ema,
  guards,
  parallel,
  profiling,
  records,
  train_step,
  validation,
)
from resnet_jax.errors import UserError
from resnet_jax.setup import Setup, load_dataset, run_mesh, setup
from resnet_jax.train_step import TrainState

if TYPE_CHECKING:
  import ml_collections


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, devices: list | None = None
) -> TrainState:
  """Trains from scratch, or resumes from the latest checkpoint in workdir; returns the state.

  The state is stacked over config.num_replicas replicas (train_step.replica takes one out).
  devices: those to train on; default all of them. Raises guards.Preempted after saving when
  SIGTERM or SIGINT asked the run to stop.
  """
  devices = devices or jax.devices()
  # Refusals that need no compilation come first (bad values, an unwritable workdir, missing
  # data); the workdir is made only once the config and the data are sound, then checked for
  # sharing and locked.
  validation.validate_config(config, len(devices))
  # Every process writes its shards of the checkpoints there.
  reason = records.unwritable(workdir)
  failed = distributed.failed_processes(reason is None)
  if failed:
    raise UserError(guards.cannot_write(workdir, reason or f'not by process(es) {failed}'))
  run = setup(config, run_mesh(config, devices), load_dataset(config))
  if distributed.is_writer():
    try:
      os.makedirs(workdir, exist_ok=True)
    except OSError as e:  # a file system that answered the check above wrongly
      raise UserError(guards.cannot_write(workdir, f'{e.strerror}: {e.filename}')) from None
  distributed.check_shared_workdir(workdir, config.shared_workdir_timeout_s)
  with guards.WorkdirLock(workdir), guards.StopRequest() as stop_request:
    return _train(config, workdir, run, stop_request)


def _restore_or_start(
  config: ml_collections.ConfigDict, workdir: str, run: Setup, manager: ocp.CheckpointManager
) -> TrainState:
  """The newest restorable checkpoint's state, or the fresh one; refuses a changed config."""
  if manager.latest_step() is None:
    return run.state
  saved = records.read_config(workdir)
  guards.check_config_change(saved, config, records.read_timeline(workdir), run.timeline)
  restored = checkpoint.restore_latest(
    manager, run.state, workdir, guards.same_structure(saved, config)
  )
  return run.state if restored is None else restored


class _UnloggedSteps:
  """Per-step metrics of the steps not yet in a log row: device arrays until fetched.

  Each is a (steps, replicas) array. Every fetch reads which replicas have diverged (a replica's
  step that was not finite left its state as it was, train_step.train_step), says so once per
  replica, and raises when none is left, before anything is logged as fine or saved.
  """

  def __init__(self, step: int, workdir: str, seeds: tuple[int, ...], diverged_at: list[int]):
    self.first_step = step + 1
    self._device: list[dict[str, jax.Array]] = []
    self._host: dict[str, np.ndarray] = {}
    self._workdir = workdir
    self._seeds = seeds
    self.diverged_at = diverged_at  # per replica, as the latest fetched step left it

  def add(self, chunk_metrics: dict[str, jax.Array]) -> None:
    self._device.append(chunk_metrics)

  def fetch(self, last_saved: int | None) -> None:
    """Brings every pending step's metrics to the host; raises if every replica diverged."""
    if not self._device:
      return
    fetched = [self._host] if self._host else []
    fetched += jax.device_get(self._device)
    self._device = []
    self._host = {k: np.concatenate([m[k] for m in fetched]) for k in fetched[0]}
    now = self._host['diverged_at'][-1].tolist()
    for k, (before, at) in enumerate(zip(self.diverged_at, now)):
      if at and not before and len(now) > 1:
        logging.warning(
          'Replica %d (seed %d) diverged at step %d: its loss or a gradient became NaN or '
          'infinite. It keeps the state of step %d, is left out of the means, and the '
          'others train on.',
          k,
          self._seeds[k],
          at,
          at - 1,
        )
    self.diverged_at = now
    if all(now):
      which = 'The loss or a gradient' if len(now) == 1 else "Every replica's loss or gradients"
      raise FloatingPointError(
        f'{which} became NaN or infinite (at step {max(now)}); that state was not saved. '
        f'The last checkpoint is of step {last_saved} in '
        f'{checkpoint.checkpoint_dir(self._workdir)}. Lower the learning rate or check the data.'
      )

  def take(self, until_step: int) -> dict[str, np.ndarray]:
    """The fetched metrics of the steps up to until_step, which leave the buffer."""
    n = until_step - self.first_step + 1
    taken = {k: v[:n] for k, v in self._host.items()}
    self._host = {k: v[n:] for k, v in self._host.items()}
    self.first_step = until_step + 1
    return taken


def _log_rows(
  unlogged: _UnloggedSteps,
  step: int,
  run: Setup,
  log: records.MetricsLog,
  progress: console.Progress,
) -> None:
  """Writes a train row for every log step up to `step` that has none yet."""
  steps = run.timeline
  log_steps = [s for s in range(unlogged.first_step, step + 1) if steps.is_log_step(s)]
  if not log_steps:
    return
  rate = progress.images_per_second(step)
  for log_step in log_steps:
    window = unlogged.take(log_step)
    rows = []
    for k in range(window['loss'].shape[1]):
      row = {'epoch': log_step / steps.epoch_steps, 'lr': float(window['lr'][-1, k])}
      if window['diverged_at'][-1, k]:
        row['diverged_at'] = int(window['diverged_at'][-1, k])
      else:
        row['loss'] = float(window['loss'][:, k].mean())
        row['top1'] = float(window['top1'][:, k].mean())
      if rate and log_step == log_steps[-1]:
        row['images_per_second'] = rate  # of all replicas together
      rows.append(row)
    logging.info(progress.line(log_step, rows, rate))
    log.write(log_step, 'train', rows)


def _evaluate(state: TrainState, step: int, run: Setup, log: records.MetricsLog) -> None:
  epoch = step / run.timeline.epoch_steps
  for split_name, split in run.eval_sets.items():
    for suffix, evaluated in ema.evaluated_states(state).items():
      name = split_name + suffix
      result = run.eval_fn(evaluated, split)
      logging.info(console.eval_line(name, step, result))
      rows = []
      for replica in result['replicas']:
        own = {k: v for k, v in replica.items() if k not in ('replica', 'seed')}  # the log adds
        rows.append({'epoch': epoch, 'count': result['count'], **own})
      log.write(step, name, rows)


class EpochOrders:
  """The data order of the current epoch (each replica's, for stacked keys), on the device,
  computed once per epoch; tools/torch_run.py hands PyTorch the same batches through it."""

  def __init__(self, perm_keys: jax.Array, run: Setup):
    self._perm_key, self._run = perm_keys, run
    self._epoch, self._order = None, None

  def at(self, step: int) -> jax.Array:
    epoch = step // self._run.timeline.epoch_steps
    if epoch != self._epoch:
      num_examples = len(self._run.dataset.train.labels)
      self._order = train_step.epoch_order(self._perm_key, epoch, num_examples, self._run.mesh)
      self._epoch = epoch
    return self._order


def _announce(config: ml_collections.ConfigDict, workdir: str, run: Setup, start: int) -> None:
  devices = f'{run.mesh.size} x {jax.devices()[0].device_kind}'
  if jax.process_count() > 1:
    devices += f' over {jax.process_count()} processes'
  for line in console.opening_lines(
    model=config.model.name,
    dataset=config.dataset.name,
    seeds=run.seeds,
    mesh_shape=dict(run.mesh.shape),
    devices=devices,
    total_steps=run.timeline.total_steps,
    epoch_steps=run.timeline.epoch_steps,
    batch_size=config.batch_size,
    workdir=workdir,
    resumed_from=start,
  ):
    logging.info(line)


def step_function(config: ml_collections.ConfigDict, run: Setup) -> Callable:
  """One replica's train step: step(state, images, labels, order, aug_key) -> (state, metrics)."""
  name = config.dataset.name
  return functools.partial(
    train_step.train_step,
    model=run.model,
    tx=run.tx,
    schedule=run.schedule,
    batch_size=config.batch_size,
    epoch_steps=run.timeline.epoch_steps,
    mean=cifar.CHANNEL_MEAN[name],
    std=cifar.CHANNEL_STD[name],
    label_smoothing=config.label_smoothing,
    mesh=run.mesh,
    cutout_size=config.augment.cutout_size,
    ema_decay=config.ema.decay,
    ema_warmup=config.ema.warmup,
  )


def _train(
  config: ml_collections.ConfigDict,
  workdir: str,
  run: Setup,
  stop_request: guards.StopRequest,
) -> TrainState:
  manager = checkpoint.create_manager(workdir, config.keep_checkpoints)
  state = _restore_or_start(config, workdir, run, manager)
  step = int(state.step[0])
  _announce(config, workdir, run, step)
  log = records.MetricsLog(workdir, step, run.seeds, active=distributed.is_writer())
  if distributed.is_writer():
    records.write_config(workdir, config)
    records.write_timeline(workdir, run.timeline)
    records.write_provenance(workdir)

  _, perm_keys, aug_keys = train_step.replica_keys(run.seeds)
  orders = EpochOrders(perm_keys, run)
  images, labels = parallel.replicate(
    (run.dataset.train.images, run.dataset.train.labels), run.mesh
  )
  train_chunk = train_step.make_train_chunk(step_function(config, run), aug_keys, run.mesh)
  timeline = run.timeline
  progress = console.Progress(
    timeline.total_steps, config.batch_size * len(run.seeds), timeline.epoch_steps, step
  )
  profiler = profiling.StepProfiler(workdir, tuple(config.profile_steps))
  unlogged = _UnloggedSteps(step, workdir, run.seeds, jax.device_get(state.diverged_at).tolist())
  last_saved = manager.latest_step()
  compiled: set[int] = set()  # call lengths already compiled (and timed) in this process
  lead = _Lead(step)
  stopping = False
  # Whatever ends the loop (the end, a stop request, a NaN), an asynchronous save in flight is
  # finished before the process can exit, so no complete checkpoint is ever lost.
  try:
    while step < timeline.total_steps and not stopping:
      for num_steps in timeline.call_lengths(step):
        profiler.before_chunk(step)
        start = time.perf_counter()
        state, chunk_metrics = train_chunk(state, images, labels, orders.at(step), num_steps)
        step += num_steps
        unlogged.add(chunk_metrics)
        profiler.after_chunk(step, state)
        if num_steps not in compiled:
          _report_compilation(state, num_steps, start, run.cache_dir)
          progress.restart(step)  # compiling is not training: keep it out of images/s
          compiled.add(num_steps)
          lead.synced(step)
        done = lead.wait(step, chunk_metrics)
        if line := progress.live_line(done):
          logging.info(line)
        stopping = stop_request.after_chunk()
        if stopping:
          stop_request.announce(done, step)
          break
      saving = stopping or timeline.is_checkpoint_step(step)
      if saving or any(map(timeline.is_log_step, range(unlogged.first_step, step + 1))):
        unlogged.fetch(last_saved)
        _log_rows(unlogged, step, run, log, progress)
      evaluating = timeline.is_eval_step(step)
      # A stop saves before its eval, so the checkpoint commits while the eval runs; otherwise the
      # eval comes first, so that the checkpoint of an eval step implies its eval row.
      for part in ('save', 'eval') if stopping else ('eval', 'save'):
        if part == 'eval' and evaluating:
          _evaluate(state, step, run, log)
        if part == 'save' and saving:
          checkpoint.save(manager, step, state)
          last_saved = step
      if saving or evaluating:
        progress.restart(step)
    if stopping and step < timeline.total_steps:
      raise guards.Preempted(
        f'Stopped by {stop_request.signal_name} after saving the checkpoint of step {step} '
        f'in {checkpoint.checkpoint_dir(workdir)}. Run the same command to resume.'
      )
  finally:
    profiler.after_chunk(step, state, force_stop=True)
    checkpoint.finish(manager, state)
    log.close()
  return state


class _Lead:
  """Bounds how far the host runs ahead of the devices: one chunk queued behind the running one.

  Dispatch is asynchronous, so without a bound the host queues chunks up to the next fetch (a
  log, eval or checkpoint step), and a stop request would wait for all of them. After each
  dispatch the host waits for the chunk before it (its metrics: a small array, no transfer), so
  the devices always find the next chunk queued while the host does its part.
  """

  def __init__(self, step: int):
    self._previous: tuple[int, dict[str, jax.Array] | None] = (step, None)

  def wait(self, step: int, chunk_metrics: dict[str, jax.Array]) -> int:
    """Call after dispatching the chunk ending at `step`; returns the last step known done."""
    done, previous = self._previous
    if previous is not None:
      jax.block_until_ready(previous)
    self._previous = (step, chunk_metrics)
    return done

  def synced(self, step: int) -> None:
    """Every chunk up to `step` is done: the host has waited for the state itself."""
    self._previous = (step, None)


def _report_compilation(state: TrainState, num_steps: int, start: float, cache: str | None):
  jax.block_until_ready(state)
  hits, misses = compile_cache.counts()
  logging.info(
    'First call of %d steps (compile and run) took %.1f s; persistent compilation cache %s: '
    '%d hits, %d misses so far.',
    num_steps,
    time.perf_counter() - start,
    cache or 'off',
    hits,
    misses,
  )
