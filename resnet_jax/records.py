"""Every file a run writes beside its checkpoints, through one writer, and the readers of them.

workdir/metrics.jsonl (one JSON object a line: step, split and numbers), config.json,
provenance.json and eval_<step>.json are each written to a temporary file in the same folder and
renamed over the old one, so a reader (or a run killed mid-write) never sees half a file.
TensorBoard events (workdir/tensorboard) are TensorBoard's own append-only format.

Only the standard library at import: tools read records where JAX is not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from resnet_jax import errors

if TYPE_CHECKING:
  import ml_collections

METRICS = 'metrics.jsonl'
CONFIG = 'config.json'
PROVENANCE = 'provenance.json'
TIMELINE = 'timeline.json'
_TMP = '.tmp-'  # write_bytes's temporary file: path + _TMP + its writer's host and pid

_log = logging.getLogger(__name__)


def write_bytes(path: str, data: bytes | memoryview) -> None:
  """Replaces the file at path with data, atomically (temporary file, fsync, rename).

  A write that finds no room (a full disk, a quota, a file size limit) raises UserError and leaves
  the file as it was.
  """
  folder = os.path.dirname(os.path.abspath(path))
  tmp = f'{path}{_TMP}{socket.gethostname()}-{os.getpid()}'
  kept = f'{os.path.basename(path)} is as it was before.'
  try:
    with errors.no_room_is_user_error(
      f'Writing {path}', folder, lambda: (len(data), 'the new file', kept)
    ):
      with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  # The rename outlives a power cut only once the folder's entry is on disk too. Some file
  # systems (FUSE mounts) refuse to fsync a folder: the rename is then as durable as they make it.
  with contextlib.suppress(OSError):
    fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode())


def write_json(path: str, value: Any) -> None:
  write_text(path, json.dumps(value, indent=2, sort_keys=True) + '\n')


def unwritable(folder: str) -> str | None:
  """Why files cannot be written in folder (made with its parents where missing), or None.

  Asks the nearest folder that exists, so that finding out creates nothing.
  """
  path = os.path.abspath(folder)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    return f'{path} is a file, not a folder'
  if os.access(path, os.W_OK | os.X_OK):
    return None
  if os.statvfs(path).f_flag & os.ST_RDONLY:
    return f'{path} is on a read-only file system'
  return f'{path} is not writable by this user (uid {os.getuid()})'


def read_json(path: str) -> Any | None:
  """The JSON value in path, or None if there is no such file."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
  """The rows of workdir/metrics.jsonl, in order; only those of `split` if given."""
  rows = _read_rows(os.path.join(workdir, METRICS))
  return [row for row in rows if split is None or row['split'] == split]


def _read_rows(path: str) -> list[dict[str, Any]]:
  """The rows of a metrics.jsonl. A last line cut short is left out, with a warning.

  write_bytes never leaves a line cut short, but a copy interrupted, an older version of this
  code (which appended) or a file system that does not keep renames atomic may: the rows before
  it are sound. A damaged line before the last is no such accident: UserError.
  """
  with open(path, errors='replace') as f:
    lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
  rows = []
  for n, line in lines:
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      if n != lines[-1][0]:
        raise errors.UserError(
          f'{path}, line {n}, is not a JSON row ({e}): {line.rstrip()[:80]!r}. Repair or '
          'delete that line, or move the file aside to start the log anew.'
        ) from e
      _log.warning(
        'Left out the last line of %s: it is cut short (%r), as a write that was interrupted '
        'leaves it; the %d rows before it are complete.',
        path,
        line.rstrip()[-80:],
        len(rows),
      )
  return rows


class MetricsLog:
  """Rows to workdir/metrics.jsonl and scalars to TensorBoard; only process 0 is active.

  Every row is one replica's: {step, split, replica, seed, ...numbers}, also in a run of one
  replica, so every reader handles one shape. TensorBoard gets a run folder per seed
  (tensorboard/seed_<seed>), so it overlays the replicas. A resumed run replays the steps after
  its checkpoint, so rows past start_step are dropped when the log opens. The whole file is
  rewritten through write_bytes at each write of rows (a few megabytes for a long run of many
  replicas): a kill at any moment leaves the old file or the new one, never a torn line.
  """

  def __init__(self, workdir: str, start_step: int, seeds: Sequence[int], active: bool = True):
    self.path = os.path.join(workdir, METRICS)
    self.active = active
    self._seeds = tuple(seeds)
    self._lines: list[str] = []
    if not active:
      return
    # A writer killed mid-write leaves its temporary file; the run's lock says none is writing now.
    for stale in glob.glob(glob.escape(self.path) + _TMP + '*'):
      os.remove(stale)
    if os.path.exists(self.path):
      rows = _read_rows(self.path)
      self._lines = [json.dumps(row) + '\n' for row in rows if row['step'] <= start_step]
      write_text(self.path, ''.join(self._lines))
    self._tensorboard = [
      TensorBoard(os.path.join(workdir, 'tensorboard', f'seed_{seed}'), start_step)
      for seed in self._seeds
    ]

  def write(self, step: int, split: str, per_replica: Sequence[dict[str, float]]) -> None:
    """per_replica[k]: replica k's numbers; each becomes its seed's scalar '<split>/<name>'."""
    if not self.active:
      return
    for k, values in enumerate(per_replica):
      row = {'step': step, 'split': split, 'replica': k, 'seed': self._seeds[k], **values}
      self._lines.append(json.dumps(row) + '\n')
      self._tensorboard[k].scalars(step, split, values)
    write_text(self.path, ''.join(self._lines))

  def close(self) -> None:
    if self.active:
      for writer in self._tensorboard:
        writer.close()


class TensorBoard:
  """Scalars as TensorBoard event files in logdir, without TensorFlow.

  tensorboard's own record writer and protos are pure Python; its EventFileWriter is not used
  because it would import TensorFlow wherever TensorFlow is installed.
  """

  def __init__(self, logdir: str, start_step: int):
    # Imported here: only the process that writes events needs tensorboard.
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    os.makedirs(logdir, exist_ok=True)
    self._logdir = logdir
    name = f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}'
    self._writer = RecordWriter(open(os.path.join(logdir, name), 'wb'))
    self._write(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))
    if start_step:
      # A resumed run replays the steps after its checkpoint: TensorBoard drops the old
      # events past start_step when it reads this (the purge that PyTorch's purge_step does).
      self._write(
        event_pb2.Event(
          wall_time=time.time(),
          step=start_step,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
        )
      )

  def _write(self, event) -> None:
    self._writer.write(event.SerializeToString())

  def scalars(self, step: int, prefix: str, values: dict[str, float]) -> None:
    summary = self._summary_pb2.Summary(
      value=[
        self._summary_pb2.Summary.Value(tag=f'{prefix}/{k}', simple_value=v)
        for k, v in values.items()
      ]
    )
    event = self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
    room = (event.ByteSize(), 'an event', 'The events written before are intact.')
    with errors.no_room_is_user_error(f'Writing to {self._logdir}', self._logdir, lambda: room):
      self._write(event)
      self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  write_text(
    os.path.join(workdir, CONFIG), config.to_json_best_effort(indent=2, sort_keys=True) + '\n'
  )


def read_config(workdir: str) -> dict | None:
  """The config.json the run in workdir last wrote, or None."""
  return read_json(os.path.join(workdir, CONFIG))


def write_timeline(workdir: str, timeline: Any) -> None:
  """The run's durations in steps (a timeline.Timeline), and the stops its jitted calls make."""
  write_json(
    os.path.join(workdir, TIMELINE),
    {**dataclasses.asdict(timeline), 'chunk_stops': list(timeline.chunk_stops())},
  )


def read_timeline(workdir: str) -> dict | None:
  return read_json(os.path.join(workdir, TIMELINE))


def eval_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, f'eval_{step}.json')


def write_eval(workdir: str, step: int, results: dict[str, Any]) -> str:
  """Writes eval_<step>.json; returns its path."""
  path = eval_path(workdir, step)
  write_json(path, results)
  return path


def _git(*args: str) -> str | None:
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    out = subprocess.run(['git', '-C', repo, *args], capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
  """Enough to tell later what code, libraries and hardware produced a run."""
  import jax

  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'numpy'):
    module = sys.modules.get(name) or __import__(name, fromlist=['_'])
    versions[name] = getattr(module, '__version__', 'unknown')
  status = _git('status', '--porcelain')
  return {
    'git_commit': _git('rev-parse', 'HEAD'),
    'git_dirty': None if status is None else bool(status),
    'versions': versions,
    'python': sys.version.split()[0],
    'platform': jax.default_backend(),
    'devices': [str(d) for d in jax.devices()],
    'device_kind': jax.devices()[0].device_kind,
    'process_count': jax.process_count(),
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    # None: XLA's default, under which Hopper GPUs run float32 convolutions and matmuls as TF32.
    'default_matmul_precision': jax.config.jax_default_matmul_precision,
    'command': sys.argv,
    'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
  }


def write_provenance(workdir: str, **extra: Any) -> None:
  """provenance() and any extra fields (a tool's 'framework', say) to provenance.json."""
  write_json(os.path.join(workdir, PROVENANCE), {**provenance(), **extra})
