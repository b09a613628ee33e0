"""What keeps a run from being lost: the workdir lock, the config-change check, preemption."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

import jax
from absl import logging
from jax.experimental import multihost_utils

from resnet_jax import distributed, optim
from resnet_jax.errors import UserError

if TYPE_CHECKING:
  import ml_collections

  from resnet_jax.timeline import Timeline

# Fields whose change alters what a resumed run computes. Everything else (run length, but for a
# cosine schedule, eval, logging and checkpoint cadence as long as the calls keep their stops,
# data_dir and source, the replica layout, caches, profiling) may change freely.
FIELDS_THAT_MATTER = (
  'model.',
  'dataset.name',
  'dataset.validation_size',
  'batch_size',
  'optimizer.',
  'schedule.',
  'seed',
  'num_replicas',
  'steps_per_call',
  'label_smoothing',
  'augment.',
  'ema.',
)
# Fields added after runs were made: a config.json without one ran as this value.
ADDED_FIELDS = {
  'augment.cutout_size': 0,
  'ema.decay': 0.0,
  'ema.warmup': True,
  'model.dropout_rate': 0.0,
  'model.scan_blocks': False,
  'model.remat': False,
}
# Fields that decide the checkpoint's tree: if they match, a checkpoint that fails to restore is
# damaged rather than foreign.
STRUCTURE_FIELDS = ('model.', 'dataset.name', 'num_replicas', 'ema.decay')
# Of those, the ones that shape the tree an eval restores: an eval may change the rest (the
# compute dtype, say).
TREE_FIELDS = (
  'model.name',
  'model.shortcut',
  'model.scan_blocks',
  'dataset.name',
  'num_replicas',
  'ema.decay',
)


def _flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return flat


def _differences(
  saved: dict, config: ml_collections.ConfigDict, fields: tuple[str, ...]
) -> list[str]:
  now = _flatten(json.loads(config.to_json_best_effort()))
  before = {**ADDED_FIELDS, **_flatten(saved)}
  keys = sorted(
    key
    for key in set(now) | set(before)
    if key.startswith(fields) and before.get(key) != now.get(key)
  )
  return [f'{key}: {before.get(key)!r} -> {now.get(key)!r}' for key in keys]


def check_config_change(
  saved: dict | None,
  config: ml_collections.ConfigDict,
  saved_timeline: dict | None,
  timeline: Timeline,
) -> None:
  """Refuses to resume a run under a config that would compute something else.

  saved and saved_timeline: the workdir's config.json and timeline.json (None if absent).
  Besides the fields that matter, the stops of the jitted calls must not move: an eval or
  checkpoint cadence that is no multiple of steps_per_call ends calls early, and other call
  lengths may round differently.
  """
  if saved is None or config.allow_config_change:
    return
  changed = _differences(saved, config, FIELDS_THAT_MATTER)
  if saved_timeline is not None:
    before, now = tuple(saved_timeline['chunk_stops']), timeline.chunk_stops()
    if before != now:
      changed.append(
        f'calls also end every {before} steps -> every {now} steps (an eval or checkpoint '
        f'cadence that is no multiple of steps_per_call={timeline.steps_per_call} changed)'
      )
    changed += _cosine_length_change(config, saved_timeline['total_steps'], timeline)
  if changed:
    raise UserError(
      'This workdir holds a run with a different config; resuming it would mix two '
      'experiments:\n  ' + '\n  '.join(changed) + '\nUse another --workdir, or pass '
      '--config.allow_config_change=True to resume anyway.'
    )


def _cosine_length_change(
  config: ml_collections.ConfigDict, before: int, timeline: Timeline
) -> list[str]:
  """A cosine schedule reaches 0 at the run's last step, so another length moves every rate
  after the first step (a piecewise one's boundaries do not depend on the length)."""
  now = timeline.total_steps
  if config.schedule.name != 'cosine' or before == now:
    return []
  at = min(before, now)
  was, will = (
    optim.learning_rate_schedule(
      config.schedule, config.optimizer.learning_rate, dataclasses.replace(timeline, total_steps=n)
    )(at)
    for n in (before, now)
  )
  return [
    f'run length: {before} -> {now} steps under the cosine schedule, which decays to 0 at the '
    f'last step: the learning rate at step {at} would jump from {was:.3g} to {will:.3g} (a '
    'piecewise schedule may be extended)'
  ]


def same_structure(saved: dict | None, config: ml_collections.ConfigDict) -> bool:
  """Whether the saved run had this config's model and dataset (so the same checkpoint tree)."""
  return saved is not None and not _differences(saved, config, STRUCTURE_FIELDS)


def _describe(flat: dict[str, Any]) -> str:
  replicas = flat.get('num_replicas', 1)
  run = f'{flat["model.name"]} on {flat["dataset.name"]}'
  return f'{replicas} replicas of {run}' if replicas > 1 else run


def check_same_model(saved: dict | None, config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to read workdir's checkpoints under another model or dataset than its config.json's:
  they cannot fill that tree, and orbax would say so in a dump of both trees."""
  differences = [] if saved is None else _differences(saved, config, TREE_FIELDS)
  if not differences:
    return
  before, now = _flatten(saved), _flatten(json.loads(config.to_json_best_effort()))
  raise UserError(
    f'The checkpoints in {workdir} are of {_describe(before)} (its config.json); this command '
    f'asks for {_describe(now)} ({"; ".join(differences)}).\n'
    "Drop --config to use the run's own config.json, or pass the config that trained it."
  )


def cannot_write(workdir: str, reason: str) -> str:
  """The refusal of a workdir that training cannot write to."""
  return (
    f'Cannot write to the workdir {workdir}: {reason}. Training writes its checkpoints and '
    'records there: pass a --workdir you can write to.'
  )


class WorkdirLock:
  """An exclusive flock on workdir/.lock: a second run on a live run's workdir is refused.

  The kernel releases it when the holder dies, even by SIGKILL. It guards local and NFS-like
  file systems; a bucket mounted through FUSE may not honour it. With several processes,
  process 0 takes it for the run and every process learns whether it could.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, '.lock')
    self._file = None

  def __enter__(self) -> WorkdirLock:
    refusal = self._take() if distributed.is_writer() else None
    if not distributed.process_zero_value(refusal is None):
      raise UserError(
        refusal
        or f'Another run is using {os.path.dirname(self.path)}: process 0 '
        'could not lock it (its message names the holder). Wait for that run to '
        'end or stop it, or use another --workdir.'
      )
    return self

  def _take(self) -> str | None:
    """Locks and writes our pid; or returns why not."""
    try:
      self._file = open(self.path, 'a+')
    except OSError as e:  # a workdir made unwritable since train checked it
      return cannot_write(os.path.dirname(self.path), f'{e.strerror}: {e.filename}')
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or 'unknown'
      self._file.close()
      self._file = None
      return (
        f'Another run (process {holder}) is using {os.path.dirname(self.path)}. '
        'Wait for it to end or stop it, or use another --workdir.'
      )
    self._file.truncate(0)
    self._file.write(str(os.getpid()))
    self._file.flush()
    return None

  def __exit__(self, *exc) -> None:
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()


class Preempted(Exception):
  """The run saved a checkpoint and stopped because it was asked to (SIGTERM or SIGINT)."""


class StopRequest:
  """A request to save at the next chunk boundary and stop, as every process agrees on it.

  One process: SIGTERM and SIGINT only set a flag (a second SIGINT, Ctrl-C twice, stops at
  once, without saving); the loop reads it after each chunk and says so (logging from a signal
  handler could deadlock on the logging lock the interrupted code holds). Several processes: no
  Python handler, since JAX's preemption notifier owns SIGTERM; a notice reaching any process is
  agreed on through JAX's preemption sync point, so every process saves the same step.
  """

  def __init__(self):
    self.signal_name = None
    self._multi_process = jax.process_count() > 1
    # Python handles signals in the main thread only; elsewhere leave the defaults.
    self._install = (
      not self._multi_process and threading.current_thread() is threading.main_thread()
    )
    self._previous = {}
    self._chunks = 0

  def __enter__(self) -> StopRequest:
    if self._install:
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum: int, frame) -> None:
    if self.signal_name == 'SIGINT' and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name

  def after_chunk(self) -> bool:
    """Called once after every chunk, on every process: whether to save and stop now."""
    self._chunks += 1
    if self._multi_process and multihost_utils.reached_preemption_sync_point(self._chunks):
      self.signal_name = 'a preemption notice (SIGTERM) to one of the processes'
    return self.signal_name is not None

  def announce(self, done_step: int, save_step: int) -> None:
    """Logs the request, once the loop has seen it: done_step is the last step the devices are
    known to have finished, save_step the end of the chunk already queued, which is saved."""
    then = ', the end of the chunk already queued' if save_step > done_step else ''
    again = ' (Ctrl-C again to stop at once, without saving)' if self._install else ''
    logging.warning(
      '%s received at step %d: saving a checkpoint at step %d%s, then stopping%s.',
      self.signal_name[0].upper() + self.signal_name[1:],  # 'A preemption notice ...
      done_step,
      save_step,
      then,
      again,
    )

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
