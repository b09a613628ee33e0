"""What a run leaves for people: metrics.jsonl, TensorBoard events, config.json,
provenance.json and progress lines."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import jax

if TYPE_CHECKING:
  # Annotations only: benchmarks import this where ml_collections is not installed.
  import ml_collections


class MetricsLog:
  """Each row to workdir/metrics.jsonl (one JSON object a line) and to TensorBoard.

  A resumed run replays the steps after its checkpoint, so rows past start_step are dropped
  first. Only one process of a run writes (active=True on process 0).
  """

  def __init__(self, workdir: str, start_step: int, active: bool = True):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.active = active
    if not active:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = [line for line in f if line.strip() and json.loads(line)['step'] <= start_step]
      with open(self.path, 'w') as f:
        f.writelines(rows)
    self._tensorboard = TensorBoard(workdir, start_step)

  def write(self, step: int, split: str, values: dict[str, float]) -> None:
    """values: numbers only; each becomes the TensorBoard scalar '<split>/<name>'."""
    if not self.active:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': step, 'split': split, **values}) + '\n')
    self._tensorboard.scalars(step, split, values)

  def close(self) -> None:
    if self.active:
      self._tensorboard.close()


class TensorBoard:
  """Scalars as TensorBoard event files under workdir/tensorboard, without TensorFlow.

  tensorboard's own record writer and protos are pure Python; its EventFileWriter is not used
  because it would import TensorFlow wherever TensorFlow is installed.
  """

  def __init__(self, workdir: str, start_step: int):
    # Imported here: only the process that writes events needs tensorboard.
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    logdir = os.path.join(workdir, 'tensorboard')
    os.makedirs(logdir, exist_ok=True)
    name = f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}'
    self._writer = RecordWriter(open(os.path.join(logdir, name), 'wb'))
    self._write(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))
    if start_step:
      # A resumed run replays the steps after its checkpoint: TensorBoard drops the old
      # events past start_step when it reads this (the purge that PyTorch's purge_step does).
      self._write(event_pb2.Event(wall_time=time.time(), step=start_step, session_log=(
          event_pb2.SessionLog(status=event_pb2.SessionLog.START))))

  def _write(self, event) -> None:
    self._writer.write(event.SerializeToString())

  def scalars(self, step: int, prefix: str, values: dict[str, float]) -> None:
    summary = self._summary_pb2.Summary(value=[
        self._summary_pb2.Summary.Value(tag=f'{prefix}/{k}', simple_value=v)
        for k, v in values.items()])
    self._write(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')


def _git(*args: str) -> str | None:
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    out = subprocess.run(['git', '-C', repo, *args], capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.TimeoutExpired):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
  """Enough to tell later what code, libraries and hardware produced a run."""
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
      'command': sys.argv,
      'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
  }


def write_provenance(workdir: str) -> None:
  with open(os.path.join(workdir, 'provenance.json'), 'w') as f:
    json.dump(provenance(), f, indent=2)
    f.write('\n')


class StepProfiler:
  """A jax.profiler trace of the steps in profile_steps=(start, stop), into workdir/profile.

  Traces start and stop at chunk boundaries: from the first at or after `start` to the first
  at or after `stop`. View with TensorBoard's profile plugin
  (pip install tensorboard-plugin-profile) or xprof.
  """

  def __init__(self, workdir: str, profile_steps: tuple[int, ...]):
    self.logdir = os.path.join(workdir, 'profile')
    self._window = profile_steps
    self._tracing = False

  def before_chunk(self, step: int) -> None:
    if self._window and not self._tracing and self._window[0] <= step < self._window[1]:
      jax.profiler.start_trace(self.logdir)
      self._tracing = True

  def after_chunk(self, step: int, state: Any, force_stop: bool = False) -> None:
    if self._tracing and (force_stop or step >= self._window[1]):
      jax.block_until_ready(state)  # the traced steps must finish inside the trace
      jax.profiler.stop_trace()
      self._tracing = False


def eval_line(split: str, step: int, result: dict[str, float]) -> str:
  """The console line of one evaluation; flip-TTA numbers, when evaluated, follow the plain ones."""
  line = (f'eval {split} at step {step}: loss {result["loss"]:.4f}  top1 {result["top1"]:.4f}  '
          f'top5 {result["top5"]:.4f}')
  if 'top1_flip_tta' in result:
    line += (f'  flip TTA: loss {result["loss_flip_tta"]:.4f}  top1 {result["top1_flip_tta"]:.4f}'
             f'  top5 {result["top5_flip_tta"]:.4f}')
  return f'{line}  ({result["count"]} examples)'


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class Progress:
  """Training throughput and ETA between log points, not counting eval or checkpoint time."""

  def __init__(self, total_steps: int, batch_size: int, steps_per_epoch: int, start_step: int):
    self.total_steps = total_steps
    self.batch_size = batch_size
    self.steps_per_epoch = steps_per_epoch
    self.start_step = start_step
    self._step = start_step
    self._time = time.perf_counter()

  def restart(self, step: int) -> None:
    """Call after work that is not training (compile, eval, save) so it is not counted."""
    self._step = step
    self._time = time.perf_counter()

  def images_per_second(self, step: int) -> float | None:
    """Since the last call or restart (None if no step since); call right after a fetch."""
    now = time.perf_counter()
    rate = None
    if step > self._step:
      rate = (step - self._step) * self.batch_size / max(now - self._time, 1e-9)
    self._step, self._time = step, now
    return rate

  def line(self, step: int, loss: float, top1: float, lr: float,
           images_per_second: float | None) -> str:
    if images_per_second:
      speed = f'{images_per_second:8.1f} img/s  ETA ' + _duration(
          (self.total_steps - step) * self.batch_size / images_per_second)
    else:
      speed = '(timing from the next log)'
    return (f'epoch {step / self.steps_per_epoch:7.2f}  step {step:>7}/{self.total_steps}  '
            f'loss {loss:.4f}  train top1 {top1:.4f}  lr {lr:.5f}  {speed}')
