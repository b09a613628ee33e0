"""A run's durations in steps: every epoch-based field resolved once, and the chunk plan.

Config fields may count in steps or in epochs (`eval_every_epochs=1`, `schedule.warmup_epochs=2`);
the epoch length depends on the batch size and on the validation split, so the conversion happens
here, once, from the real number of training examples. Nothing else reads an epoch field.

The loop runs `steps_per_call` steps per jitted call, but must stop exactly at every eval and
checkpoint step so the state it evaluates or saves is that step's. The chunk plan is a pure
function of the absolute step: calls end at multiples of `steps_per_call`, at epoch ends (a call
reads one epoch's order), at multiples of the eval and checkpoint cadences and at the last step, and a stretch shorter than `steps_per_call` runs as
power-of-two pieces, largest first (so at most 1 + log2(steps_per_call) programs are compiled).
A resumed run starts at one of these points and continues with exactly the calls an uninterrupted
run would make. Log rows need no stop of their own: every call returns per-step metrics.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
  import ml_collections


@dataclasses.dataclass(frozen=True)
class Timeline:
  """Every duration of a run, in steps."""

  epoch_steps: int
  total_steps: int
  warmup_steps: int
  boundaries: tuple[int, ...]  # piecewise schedule: the steps where the rate drops
  log_every: int
  eval_every: int
  checkpoint_every: int
  steps_per_call: int

  def is_log_step(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.total_steps

  def is_eval_step(self, step: int) -> bool:
    return step % self.eval_every == 0 or step == self.total_steps

  def is_checkpoint_step(self, step: int) -> bool:
    return step % self.checkpoint_every == 0 or step == self.total_steps

  def next_stop(self, step: int) -> int:
    """The first step after `step` at which a jitted call must end."""
    every = (self.steps_per_call, self.epoch_steps, self.eval_every, self.checkpoint_every)
    return min(*(_next_multiple(step, n) for n in every), self.total_steps)

  def call_lengths(self, step: int) -> list[int]:
    """The lengths of the jitted calls that take the run from `step` to its next stop."""
    remaining = self.next_stop(step) - step
    if remaining == self.steps_per_call:
      return [remaining]
    return [1 << bit for bit in reversed(range(remaining.bit_length())) if remaining >> bit & 1]

  def chunk_stops(self) -> tuple[int, ...]:
    """The periods (epoch, eval, checkpoint) that add stops between multiples of steps_per_call.

    Two runs with the same steps_per_call and the same chunk_stops make the same calls, so a
    resume may change the log cadence (or an aligned one) without changing what it computes.
    """
    periods = (self.epoch_steps, self.eval_every, self.checkpoint_every)
    return tuple(sorted({every for every in periods if every % self.steps_per_call}))


def _next_multiple(step: int, every: int) -> int:
  return (step // every + 1) * every


def epoch_steps(num_train_examples: int, batch_size: int) -> int:
  """Full batches only: each epoch drops a different remainder, as its permutation differs."""
  return num_train_examples // batch_size


def _steps(steps: int, epochs: float, epoch_length: int) -> int:
  """The value in steps of a field given in steps or (when steps is 0) in epochs."""
  return steps if steps else max(1, round(epochs * epoch_length))


def resolve(config: ml_collections.ConfigDict, num_train_examples: int) -> Timeline:
  """Every duration of the (validated) config in steps, for a training set of that size."""
  epoch = epoch_steps(num_train_examples, config.batch_size)
  total = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * epoch
  sched = config.schedule
  if sched.boundary_epochs:
    boundaries = tuple(round(e * epoch) for e in sched.boundary_epochs)
  else:
    boundaries = tuple(sched.boundaries)
  return Timeline(
    epoch_steps=epoch,
    total_steps=total,
    warmup_steps=sched.warmup_steps or round(sched.warmup_epochs * epoch),
    boundaries=boundaries,
    log_every=_steps(config.log_every_steps, config.log_every_epochs, epoch),
    eval_every=_steps(config.eval_every_steps, config.eval_every_epochs, epoch),
    checkpoint_every=_steps(config.checkpoint_every_steps, config.checkpoint_every_epochs, epoch),
    steps_per_call=config.steps_per_call,
  )
