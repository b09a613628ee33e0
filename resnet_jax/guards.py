"""What keeps a run from being lost: the workdir lock, the config-change check, preemption."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

import jax
from absl import logging
from jax.experimental import multihost_utils

from resnet_jax import distributed
from resnet_jax.errors import UserError

if TYPE_CHECKING:
  import ml_collections

  from resnet_jax.timeline import Timeline

# Fields whose change alters what a resumed run computes. Everything else (run length, eval,
# logging and checkpoint cadence as long as the calls keep their stops, data_dir and source,
# the replica layout, caches, profiling) may change freely.
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
ADDED_FIELDS = {'augment.cutout_size': 0, 'ema.decay': 0.0, 'ema.warmup': True}
# Fields that decide the checkpoint's tree: if they match, a checkpoint that fails to restore is
# damaged rather than foreign.
STRUCTURE_FIELDS = ('model.', 'dataset.name', 'num_replicas', 'ema.decay')


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
  if changed:
    raise UserError(
      'This workdir holds a run with a different config; resuming it would mix two '
      'experiments:\n  ' + '\n  '.join(changed) + '\nUse another --workdir, or pass '
      '--config.allow_config_change=True to resume anyway.'
    )


def same_structure(saved: dict | None, config: ml_collections.ConfigDict) -> bool:
  """Whether the saved run had this config's model and dataset (so the same checkpoint tree)."""
  return saved is not None and not _differences(saved, config, STRUCTURE_FIELDS)


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
    self._file = open(self.path, 'a+')
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
  once, without saving). Several processes: no Python handler, since JAX's preemption notifier
  owns SIGTERM; a notice reaching any process is agreed on through JAX's preemption sync point,
  so every process saves the same step.
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
    logging.warning(
      '%s received: saving a checkpoint at the end of this chunk, then stopping '
      '(Ctrl-C again to stop at once, without saving).',
      self.signal_name,
    )

  def after_chunk(self) -> bool:
    """Called once after every chunk, on every process: whether to save and stop now."""
    self._chunks += 1
    if self._multi_process and multihost_utils.reached_preemption_sync_point(self._chunks):
      self.signal_name = 'a preemption notice (SIGTERM) to one of the processes'
    return self.signal_name is not None

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
