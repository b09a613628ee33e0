"""jax.profiler traces of chosen training steps (config.profile_steps)."""

import os
from typing import Any

import jax


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
