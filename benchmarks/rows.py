"""A row of benchmarks/throughput.py's table: the workload it times, and how it is timed."""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from typing import Protocol

# The workload of every row: SGD with momentum and weight decay on every parameter (BatchNorm's
# too, as torch.optim.SGD's weight_decay does), mean cross entropy, CIFAR-10 shapes.
DATASET = 'cifar10'
LEARNING_RATE = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


class Runner(Protocol):
  """One row's workload: a call runs one jitted call (K steps) or one PyTorch step, to the end."""

  def __call__(self) -> None: ...

  def begin(self) -> None:
    """Called before a round's warm-up and timed calls."""

  def end(self) -> int | None:
    """Called after them; returns the row's peak memory in bytes, None where unknown."""


@dataclasses.dataclass
class Row:
  """One line of the table: how to build its runner, and what it has measured so far."""

  model: str
  dtype: str
  framework: str
  variant: str
  make: Callable[[], Runner]
  steps_per_call: int = 1
  scan: bool = False  # the JAX data path's K steps a call as a lax.scan, not unrolled
  # Independent models trained together in one call (JAX's replica rows), each on its own batch:
  # a step trains replicas x batch images.
  replicas: int = 1
  may_fail: bool = False  # torch.compile: a failure becomes this row's result
  runner: Runner | None = None
  first_call_s: float | None = None
  step_s: list[float] = dataclasses.field(default_factory=list)  # per train step, all rounds
  peak_bytes: int | None = None
  error: str | None = None

  @property
  def label(self) -> str:
    """framework and variant, then K, scan and replicas where they differ from one plain step."""
    label = f'{self.framework} {self.variant}'
    if self.steps_per_call > 1 or self.scan:
      label += f' (K={self.steps_per_call}{", scan" if self.scan else ""})'
    return label if self.replicas == 1 else f'{label}, {self.replicas} replicas'


def measure(row: Row, warmup: int, steps: int) -> None:
  """One round of a row: on the first, build it and time its first call; then warm up and time.

  A row that may fail (torch.compile) records the failure as its result instead of raising.
  """
  if row.error:
    return
  try:
    if row.runner is None:
      row.runner = row.make()
      start = time.perf_counter()
      row.runner()  # compiles (JAX, torch.compile) and runs one call: the time includes that run
      row.first_call_s = time.perf_counter() - start
    row.runner.begin()
    for _ in range(warmup):
      row.runner()
    for _ in range(steps):
      start = time.perf_counter()
      row.runner()
      row.step_s.append((time.perf_counter() - start) / row.steps_per_call)
    peak = row.runner.end()
  except Exception as e:  # pylint: disable=broad-except
    if not row.may_fail:
      raise
    traceback.print_exc()
    message = str(e).strip().splitlines()
    row.error = f'{type(e).__name__}: {message[0] if message else ""}'
    row.runner = None
    return
  if peak is not None:
    row.peak_bytes = max(peak, row.peak_bytes or 0)
