"""One `python -m launch` run as a child process: killable with everything it started, bounded
in time, its output in a log file that says which step it resumed from and how far it got."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
# One of a run's opening lines (console.opening_lines) says where a resumed run starts.
_RESUMED = re.compile(r'Resumed from the checkpoint of step (\d+)')
_PROGRESS = re.compile(r'step +(\d+)/\d+ +loss')  # console.Progress's line at each log step


class Child:
  """One launch run in its own process group (a kill takes all of it), output to a log file.

  The command runs in the repository root.
  """

  def __init__(self, command: list[str], env: dict[str, str], log_path, timeout_s: float):
    self.log_path = pathlib.Path(log_path)
    self.timeout_s = timeout_s
    self.start = time.monotonic()
    # The child writes to its own copy of the file descriptor; this process needs none.
    with open(self.log_path, 'w') as log:
      self.proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
      )

  def elapsed(self) -> float:
    return time.monotonic() - self.start

  def alive(self) -> bool:
    return self.proc.poll() is None

  def kill(self) -> None:
    try:
      os.killpg(self.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
    self.proc.wait()

  def check_timeout(self) -> None:
    if self.elapsed() > self.timeout_s:
      self.kill()
      raise TimeoutError(
        f'launch ran past {self.timeout_s} s; log: {self.log_path}\n' + self.log_tail()
      )

  def wait(self) -> int:
    """Waits for the end (killing it past the timeout); returns the exit status."""
    try:
      self.proc.wait(timeout=max(self.timeout_s - self.elapsed(), 0.1))
    except subprocess.TimeoutExpired:
      self.check_timeout()
    return self.proc.returncode

  def log_text(self) -> str:
    return self.log_path.read_text(errors='replace')

  def log_tail(self, chars: int = 3000) -> str:
    return self.log_text()[-chars:]

  def resumed_from(self) -> int | None:
    """The step this run restored, from its log; None when it started from scratch."""
    found = _RESUMED.findall(self.log_text())
    return int(found[0]) if found else None

  def last_logged(self) -> int | None:
    """The last step this run printed a progress line for; None before its first."""
    found = _PROGRESS.findall(self.log_text())
    return int(found[-1]) if found else None
