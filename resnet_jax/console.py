"""What a run says on the console: its opening lines, progress, evaluations, and nothing else.

Libraries log INFO lines nobody acts on (jax's "Unable to initialize backend 'tpu'", a dozen of
orbax's per checkpoint); quiet_libraries() keeps their warnings and errors and drops the rest.
"""

from __future__ import annotations

import logging as std_logging
import os
import time

from absl import logging

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def quiet_libraries(entry_point: str) -> None:
  """Drops log records below WARNING except this package's and the entry point file's."""
  ours = (_PACKAGE, os.path.abspath(entry_point))

  def keep(record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(ours)

  logging.get_absl_handler().addFilter(keep)


def opening_lines(
  *,
  model: str,
  dataset: str,
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
  return [
    f'{model} on {dataset}: {total_steps} steps ({epoch_steps} per epoch, '
    f'{total_steps / epoch_steps:.1f} epochs), global batch {batch_size}',
    f'devices: {devices}',
    f'workdir: {os.path.abspath(workdir)}',
    start,
  ]


def eval_line(split: str, step: int, result: dict[str, float]) -> str:
  """The console line of one evaluation; flip-TTA numbers, when evaluated, follow the plain ones."""
  line = (
    f'eval {split} at step {step}: loss {result["loss"]:.4f}  top1 {result["top1"]:.4f}  '
    f'top5 {result["top5"]:.4f}'
  )
  if 'top1_flip_tta' in result:
    line += (
      f'  flip TTA: loss {result["loss_flip_tta"]:.4f}  top1 {result["top1_flip_tta"]:.4f}'
      f'  top5 {result["top5_flip_tta"]:.4f}'
    )
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

  def line(
    self, step: int, loss: float, top1: float, lr: float, images_per_second: float | None
  ) -> str:
    if images_per_second:
      speed = f'{images_per_second:8.1f} img/s  ETA ' + _duration(
        (self.total_steps - step) * self.batch_size / images_per_second
      )
    else:
      speed = '(timing from the next log)'
    return (
      f'epoch {step / self.steps_per_epoch:7.2f}  step {step:>7}/{self.total_steps}  '
      f'loss {loss:.4f}  train top1 {top1:.4f}  lr {lr:.5f}  {speed}'
    )
