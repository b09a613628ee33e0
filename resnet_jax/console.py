"""What a run says on the console: its opening lines, progress, evaluations, and nothing else.

Libraries log INFO lines nobody acts on (jax's "Unable to initialize backend 'tpu'", a dozen of
orbax's per checkpoint); quiet_libraries() keeps their warnings and errors and drops the rest.
"""

from __future__ import annotations

import logging as std_logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from absl import logging

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ORBAX = f'{os.sep}orbax{os.sep}'


def quiet_libraries(entry_point: str) -> None:
  """Drops log records below WARNING except this package's and the entry point file's, and the
  echoes of a failed checkpoint save (orbax's tracebacks, tensorstore's late callbacks)."""
  ours = (_PACKAGE, os.path.abspath(entry_point))

  def keep(record: std_logging.LogRecord) -> bool:
    if record.name == 'asyncio' and _ORBAX in record.getMessage():
      # orbax's write tasks that failed with a save and were never awaited (asyncio says so when
      # it collects them, tracebacks included): the run reports that save's failure itself.
      return False
    if _ORBAX in record.pathname:
      # orbax logs a failed background save with its traceback once for every thread it passed
      # (five for one full disk); the error the run raises carries the same traceback.
      record.exc_info = record.exc_text = None
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(ours)

  logging.get_absl_handler().addFilter(keep)
  # Once an asynchronous save has failed (a full disk), tensorstore hands each of its remaining
  # writes' results to orbax's event loop, closed by then: dozens of identical tracebacks after
  # the one failure, which orbax logs and the run reports.
  report = sys.unraisablehook

  def unraisable(hook_args) -> None:
    if not (
      isinstance(hook_args.exc_value, RuntimeError)
      and str(hook_args.exc_value) == 'Event loop is closed'
    ):
      report(hook_args)

  sys.unraisablehook = unraisable


def opening_lines(
  *,
  model: str,
  dataset: str,
  seeds: Sequence[int],
  mesh_shape: dict[str, int],
  devices: str,
  total_steps: int,
  epoch_steps: int,
  batch_size: int,
  workdir: str,
  resumed_from: int | None,
) -> list[str]:
  """The first lines of a run: what runs, where, and whether it starts fresh."""
  start = (
    f'Resumed from the checkpoint of step {resumed_from}.'
    if resumed_from
    else 'Starting fresh: no checkpoint in the workdir yet.'
  )
  lines = [
    f'{model} on {dataset}: {total_steps} steps ({epoch_steps} per epoch, '
    f'{total_steps / epoch_steps:.1f} epochs), global batch {batch_size}'
    + (' a replica' if len(seeds) > 1 else ''),
    f'devices: {devices}',
  ]
  if len(seeds) > 1:
    groups, group_size = mesh_shape['replica'], mesh_shape['data']
    lines.append(
      f'replicas: {len(seeds)} (seeds {seeds[0]}..{seeds[-1]}) in {groups} group(s) of '
      f'{group_size} device(s), {len(seeds) // groups} replica(s) a group'
    )
  return [*lines, f'workdir: {os.path.abspath(workdir)}', start]


def _spread(values: Sequence[float]) -> str:
  """One value, or the mean ± sample std of several."""
  if len(values) == 1:
    return f'{values[0]:.4f}'
  return f'{statistics.fmean(values):.4f}±{statistics.stdev(values):.4f}'


def _live(total: int, live: int) -> str:
  if total == 1:
    return ''
  return f', mean of {live} replicas' + (f' ({total - live} diverged)' if live < total else '')


def eval_line(split: str, step: int, result: dict) -> str:
  """The console line of one evaluation (evaluation.summarize's result): means, ± the std over
  the replicas where there are several; flip-TTA numbers, when evaluated, follow the plain ones.
  """
  if 'loss' not in result:
    return f'eval {split} at step {step}: every replica has diverged'

  def value(name: str) -> str:
    std = result.get(f'{name}_std')
    return f'{result[name]:.4f}' + (f'±{std:.4f}' if std is not None else '')

  line = f'eval {split} at step {step}: loss {value("loss")}  top1 {value("top1")}  '
  line += f'top5 {value("top5")}'
  if 'top1_flip_tta' in result:
    line += (
      f'  flip TTA: loss {value("loss_flip_tta")}  top1 {value("top1_flip_tta")}'
      f'  top5 {value("top5_flip_tta")}'
    )
  live = result.get('live_replicas', 1)
  return f'{line}  ({result["count"]} examples{_live(len(result["replicas"]), live)})'


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


# Wall-clock seconds between progress lines when no log row was written meanwhile: with the
# default log_every_steps a CPU run would otherwise say nothing for a minute or more.
LIVE_EVERY_S = 5.0


class Progress:
  """Training throughput and ETA between log points, not counting eval or checkpoint time; and
  live lines between log rows, at most every live_every_s seconds.

  Live lines cost no device sync: the loop hands them the last step the devices are known to
  have finished (the chunk it waited for anyway to bound its lead).
  """

  def __init__(
    self,
    total_steps: int,
    images_per_step: int,
    steps_per_epoch: int,
    start_step: int,
    live_every_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
  ):
    """images_per_step: the batch of every replica together. live_every_s: None takes
    LIVE_EVERY_S. clock: seconds, monotonic (tests pass their own)."""
    self.total_steps = total_steps
    self.images_per_step = images_per_step
    self.steps_per_epoch = steps_per_epoch
    self.start_step = start_step
    self._live_every_s = LIVE_EVERY_S if live_every_s is None else live_every_s
    self._clock = clock
    self._step = start_step
    self._time = clock()
    self._shown = self._time  # when the last line (log row or live) was written

  def restart(self, step: int) -> None:
    """Call after work that is not training (compile, eval, save) so it is not counted."""
    self._step = step
    self._time = self._clock()

  def images_per_second(self, step: int) -> float | None:
    """Since the last call or restart (None if no step since); call right after a fetch, just
    before the log row's line."""
    now = self._clock()
    rate = None
    if step > self._step:
      rate = (step - self._step) * self.images_per_step / max(now - self._time, 1e-9)
    self._step, self._time, self._shown = step, now, now
    return rate

  def _speed(self, step: int, images_per_second: float | None) -> str:
    if not images_per_second:
      return '(timing from the next log)'
    eta = (self.total_steps - step) * self.images_per_step / images_per_second
    return f'{images_per_second:8.1f} img/s  ETA {_duration(eta)}'

  def _position(self, step: int) -> str:
    return f'epoch {step / self.steps_per_epoch:7.2f}  step {step:>7}/{self.total_steps}'

  def live_line(self, done_step: int) -> str | None:
    """A line once live_every_s have passed since the last line, if any step was done since the
    last log row or restart: done_step (the last step known finished), images/s over those steps
    and the ETA. None when no line is due."""
    now = self._clock()
    if now - self._shown < self._live_every_s or done_step <= self._step:
      return None
    self._shown = now
    rate = (done_step - self._step) * self.images_per_step / max(now - self._time, 1e-9)
    return f'{self._position(done_step)}  {self._speed(done_step, rate)}'

  def line(self, step: int, rows: Sequence[dict], images_per_second: float | None) -> str:
    """rows: each replica's train row; a diverged one (with diverged_at) is left out."""
    live = [row for row in rows if 'diverged_at' not in row]
    return (
      f'{self._position(step)}  '
      f'loss {_spread([r["loss"] for r in live])}  '
      f'train top1 {_spread([r["top1"] for r in live])}  lr {live[0]["lr"]:.5f}  '
      f'{self._speed(step, images_per_second)}{_live(len(rows), len(live))}'
    )
