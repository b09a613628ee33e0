"""How a kill trial strikes a run: the run's checkpoint plan, the two kinds of kill, and a record
of what each kill hit (the workdir right after the process died, and the run's own log)."""

from __future__ import annotations

import dataclasses
import os
import time

from tests.stress.launch_child import Child
from tests.stress.run_comparison import (
  TMP_MARK,
  checkpoint_dir,
  complete_checkpoints,
  temporary_checkpoints,
)

TOTAL_STEPS = 24
CHECKPOINT_EVERY = 4
CHECKPOINT_STEPS = tuple(range(CHECKPOINT_EVERY, TOTAL_STEPS + 1, CHECKPOINT_EVERY))
POLL_S = 0.002


@dataclasses.dataclass(frozen=True)
class KillAtTime:
  """SIGKILL `seconds` after the start (drawn uniformly between start and expected end)."""

  seconds: float


@dataclasses.dataclass(frozen=True)
class KillDuringSave:
  """SIGKILL while a checkpoint is being written, `delay_s` after its temporary folder appears.

  Which save: of the checkpoint steps still ahead of this run (after the step it resumes from),
  the one at fraction `which` (0 <= which < 1) of the way along.
  """

  which: float
  delay_s: float = 0.0


Kill = KillAtTime | KillDuringSave


@dataclasses.dataclass
class KillRecord:
  """What a kill hit: the workdir right after the process died, and that run's own log."""

  planned: str  # 'random' or 'save'
  at_s: float  # seconds after the start of that run
  killed: bool  # False: the run had already ended by itself
  during_save: int | None  # the step whose temporary checkpoint folder this run left behind
  last_checkpoint: int | None  # the latest complete checkpoint in the workdir at the kill
  resumed_from: int | None  # the step this run had restored by then (its log)
  last_logged: int | None  # the last step this run logged a train line for (its log)

  def describe(self) -> str:
    if not self.killed:
      where = 'ended first'
    elif self.during_save is not None:
      where = f'saving {self.during_save}'
    elif self.last_logged is not None:
      where = f'after step {self.last_logged}'
    elif self.resumed_from is not None:
      where = f'restored {self.resumed_from}, before a step'
    else:
      where = 'starting up'
    return f'{self.planned} {self.at_s:.2f}s: {where}'


def temporary_identities(workdir) -> dict[str, tuple[int, int]]:
  """Temporary folder -> (inode, ctime): tells a folder this run made from a stale one.

  A killed save leaves `<step>.orbax-checkpoint-tmp`; the next save of that step removes it and
  makes it anew, so the name alone does not say which run was writing it.
  """
  out = {}
  for name in temporary_checkpoints(workdir):
    try:
      st = os.stat(checkpoint_dir(workdir) / name)
    except FileNotFoundError:
      continue
    out[name] = (st.st_ino, st.st_ctime_ns)
  return out


def save_target(workdir, which: float) -> int:
  """The checkpoint step a KillDuringSave aims at, for a run about to start in workdir."""
  done = complete_checkpoints(workdir)
  ahead = [s for s in CHECKPOINT_STEPS if s > (done[-1] if done else 0)] or [TOTAL_STEPS]
  return ahead[int(which * len(ahead))]


def kill_child(child: Child, workdir, kill: Kill, stale: dict[str, tuple[int, int]]) -> KillRecord:
  """Carries out `kill` on a running child and records what it hit.

  stale: temporary_identities(workdir) from before the child started.
  """
  if isinstance(kill, KillAtTime):
    planned = 'random'
    while child.alive() and child.elapsed() < kill.seconds:
      child.check_timeout()
      time.sleep(min(POLL_S * 5, max(kill.seconds - child.elapsed(), 0)))
  else:
    planned = 'save'
    target = f'{save_target(workdir, kill.which)}{TMP_MARK}'
    while child.alive() and not any(
      n.startswith(target) and stale.get(n) != ident
      for n, ident in temporary_identities(workdir).items()
    ):
      child.check_timeout()
      time.sleep(POLL_S)
    if kill.delay_s:
      time.sleep(kill.delay_s)
  killed = child.alive()
  at_s = child.elapsed()
  child.kill()
  during = [
    int(n.split('.')[0])
    for n, ident in temporary_identities(workdir).items()
    if stale.get(n) != ident
  ]
  return KillRecord(
    planned=planned,
    at_s=at_s,
    killed=killed,
    during_save=max(during) if (killed and during) else None,
    last_checkpoint=(complete_checkpoints(workdir) or [None])[-1],
    resumed_from=child.resumed_from(),
    last_logged=child.last_logged(),
  )
