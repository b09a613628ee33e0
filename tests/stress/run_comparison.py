"""A finished run's results as files hold them, and their bit-for-bit comparison with another's.

Used by tests/stress/kill_trials.py and tests/test_kill_resume.py: the final checkpoint's arrays
(restored as numpy, whatever device count wrote them), metrics.jsonl (read with
resnet_jax.records), and which checkpoint folders orbax completed.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
from typing import Any

from resnet_jax import records

TMP_MARK = '.orbax-checkpoint-tmp'  # orbax's name for a checkpoint still being written
TIMING_KEYS = ('images_per_second',)  # wall-clock measurements: differ between any two runs


def checkpoint_dir(workdir) -> pathlib.Path:
  return pathlib.Path(workdir) / 'checkpoints'


def complete_checkpoints(workdir) -> list[int]:
  """Step folders orbax has finalised (renamed from their temporary name)."""
  directory = checkpoint_dir(workdir)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def temporary_checkpoints(workdir) -> list[str]:
  return sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(checkpoint_dir(workdir), f'*{TMP_MARK}*'))
  )


def read_rows(workdir) -> list[dict[str, Any]]:
  """Every row of workdir's metrics.jsonl; none if the run never wrote one."""
  if not (pathlib.Path(workdir) / records.METRICS).exists():
    return []
  return records.read_metrics(str(workdir))


def restore_final(workdir) -> tuple[int, dict[str, Any]]:
  """(step, {path: numpy array}) of the latest checkpoint, restored on the host.

  The step comes from resnet_jax.checkpoint's manager (as a resume finds it); the arrays are
  restored as numpy, so any process can read a checkpoint saved on any number of devices.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from resnet_jax import checkpoint  # pylint: disable=g-import-not-at-top

  manager = checkpoint.create_manager(str(workdir), create=False)
  try:
    step = manager.latest_step()
    directory = pathlib.Path(manager.directory)
  finally:
    manager.close()
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {checkpoint_dir(workdir)}')
  path = directory / str(step) / 'default'  # the item orbax's single-item manager writes
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path)
  tree = getattr(getattr(tree, 'item_metadata', tree), 'tree', tree)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
  return step, {
    jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(state)
  }


def duplicate_rows(rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
  seen, twice = set(), []
  for row in rows:
    key = (row['step'], row['split'])
    if key in seen:
      twice.append(key)
    seen.add(key)
  return twice


def _final_eval(rows):
  tests = [r for r in rows if r['split'] == 'test']
  return {k: tests[-1].get(k) for k in ('step', 'loss', 'top1', 'top5')} if tests else None


def _untimed(rows):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@dataclasses.dataclass
class Reference:
  """What an uninterrupted run ends with."""

  workdir: pathlib.Path
  seconds: float  # wall time of the warm uninterrupted run: the expected end of a trial's run
  step: int
  arrays: dict[str, Any]
  rows: list[dict[str, Any]]
  checkpoints: list[int]


def load_reference(workdir, seconds: float) -> Reference:
  step, arrays = restore_final(workdir)
  return Reference(
    pathlib.Path(workdir), seconds, step, arrays, read_rows(workdir), complete_checkpoints(workdir)
  )


@dataclasses.dataclass
class Comparison:
  step: int | None
  array_diffs: list[str]  # paths whose dtype, shape or bytes differ, or that one side lacks
  final_eval_equal: bool
  row_diffs: list[str]  # metrics.jsonl rows (timings aside) that differ from the reference's
  duplicates: list[tuple[int, str]]
  checkpoints: list[int]  # complete checkpoints left in the workdir
  leftover_tmp: list[str]  # temporary checkpoint folders left in the workdir

  @property
  def identical(self) -> bool:
    return (
      not self.array_diffs and self.final_eval_equal and not self.row_diffs and not self.duplicates
    )

  def problems(self) -> str:
    out = []
    if self.array_diffs:
      out.append(f'{len(self.array_diffs)} arrays differ: {", ".join(self.array_diffs[:5])}')
    if not self.final_eval_equal:
      out.append('final test eval row differs')
    if self.row_diffs:
      out.append(f'metrics.jsonl rows differ: {"; ".join(self.row_diffs[:3])}')
    if self.duplicates:
      out.append(f'duplicate (step, split) rows: {self.duplicates}')
    return '; '.join(out)


def compare(workdir, reference: Reference) -> Comparison:
  step, arrays = restore_final(workdir)
  diffs = []
  if step != reference.step:
    diffs.append(f'<step {step}, reference {reference.step}>')
  for name in sorted(set(arrays) | set(reference.arrays)):
    a, b = arrays.get(name), reference.arrays.get(name)
    if (
      a is None
      or b is None
      or a.dtype != b.dtype
      or a.shape != b.shape
      or a.tobytes() != b.tobytes()
    ):
      diffs.append(name)
  rows = read_rows(workdir)
  ours, theirs = _untimed(rows), _untimed(reference.rows)
  row_diffs = [f'{a} vs {b}' for a, b in zip(ours, theirs) if a != b]
  if len(ours) != len(theirs):
    row_diffs.append(f'{len(ours)} rows, reference {len(theirs)}')
  return Comparison(
    step=step,
    array_diffs=diffs,
    final_eval_equal=_final_eval(rows) == _final_eval(reference.rows)
    and _final_eval(rows) is not None,
    row_diffs=row_diffs,
    duplicates=duplicate_rows(rows),
    checkpoints=complete_checkpoints(workdir),
    leftover_tmp=temporary_checkpoints(workdir),
  )
