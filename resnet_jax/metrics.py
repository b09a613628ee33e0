"""What a run leaves for people: metrics.jsonl, config.json, provenance.json, progress lines."""
import json
import os
import subprocess
import sys
import time
from typing import Any

import jax
import ml_collections


class MetricsLog:
  """Appends one JSON object per line to workdir/metrics.jsonl."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, 'metrics.jsonl')

  def truncate_after(self, step: int) -> None:
    """Drops rows past `step`: a resumed run replays those steps and writes them again."""
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      rows = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
    with open(self.path, 'w') as f:
      f.writelines(rows)

  def write(self, row: dict[str, Any]) -> None:
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')


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
