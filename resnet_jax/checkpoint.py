"""Checkpoints through orbax: save every N steps and at the end, keep N, resume from the latest.

Restores always go onto the current run's shardings (an abstract target built from a freshly
initialised state), so a checkpoint written on one device count restores onto another.
"""

import contextlib
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from resnet_jax import distributed, errors
from resnet_jax.errors import UserError
from resnet_jax.train_step import TrainState, saved_fields


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def create_manager(workdir: str, keep: int = 1, create: bool = True) -> ocp.CheckpointManager:
  """create=False opens an existing folder read-only (for --mode=eval): nothing is written."""
  if create:
    # A save that failed (no room) or was killed leaves its temporary folder: removed when the
    # next run opens the folder, so the space it took is free again.
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, cleanup_tmp_directories=True
    )
  else:
    options = ocp.CheckpointManagerOptions(create=False, read_only=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def open_step(workdir: str, step: int) -> tuple[ocp.CheckpointManager, int]:
  """A read-only manager of workdir's checkpoints, and the step to restore: `step`, or with -1
  the latest. Raises UserError, naming the saved steps, when there is no such checkpoint."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise UserError(
      f'No checkpoints in {workdir}: train first (--mode=train) or give the workdir of a '
      'trained run.'
    )
  manager = create_manager(workdir, create=False)
  steps = manager.all_steps()
  chosen = step if step >= 0 else (max(steps) if steps else None)
  if chosen is None or chosen not in steps:
    manager.close()
    raise UserError(
      f'No checkpoint of step {step if chosen is None else chosen} in '
      f'{checkpoint_dir(workdir)}; the saved steps are {sorted(steps) or "none"}.'
    )
  return manager, chosen


def save(manager: ocp.CheckpointManager, step: int, state: TrainState) -> None:
  """Starts an asynchronous save; orbax writes to a temporary folder and renames it when done.

  The save before it is waited for first: orbax reports its failure here. A failure for lack of
  room (a full disk, a quota, a file size limit) raises UserError; older checkpoints are intact
  (orbax deletes one beyond keep_checkpoints only once the new one is complete).
  """
  with _no_room_is_user_error(manager, state):
    manager.save(step, args=ocp.args.StandardSave(saved_fields(state)))


def finish(manager: ocp.CheckpointManager, state: Any) -> None:
  """Waits for the save in flight, then closes the manager; a save that found no room raises
  UserError, as in save()."""
  with _no_room_is_user_error(manager, state):
    manager.wait_until_finished()
  manager.close()


def _no_room_is_user_error(
  manager: ocp.CheckpointManager, state: Any
) -> contextlib.AbstractContextManager[None]:
  folder = str(manager.directory)

  def room() -> tuple[int, str, str]:
    # Complete checkpoints only: orbax renames a step's folder to its number once it is whole.
    steps = sorted(int(name) for name in os.listdir(folder) if name.isdigit())
    if not steps:
      size = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
      return size, "the state's size", 'No checkpoint was saved: the run starts afresh.'
    latest = os.path.join(folder, str(steps[-1]))
    size = sum(
      os.path.getsize(os.path.join(d, name)) for d, _, names in os.walk(latest) for name in names
    )
    return (
      size,
      f'the size of the checkpoint of step {steps[-1]}',
      f'The checkpoint of step {steps[-1]} is intact: the run resumes from it.',
    )

  return errors.no_room_is_user_error(f'Saving a checkpoint in {folder}', folder, room)


def restore(manager: ocp.CheckpointManager, step: int, template: Any, partial: bool = False) -> Any:
  """Restores `step` onto the shardings and dtypes of `template` (a state of this run, or its
  abstract shapes).

  A TrainState template restores as a TrainState (an EMA-less one from a checkpoint without
  one). partial: template is a dict of some of the saved state's fields (of a TrainState, say,
  all but opt_state); only those are read.
  """
  is_state = isinstance(template, TrainState)
  tree = saved_fields(template) if is_state else template
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  if partial:
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    args = ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True)
  else:
    args = ocp.args.StandardRestore(abstract)
  try:
    restored = manager.restore(step, args=args)
  except Exception as e:  # orbax raises many types; all mean this folder cannot be used.
    raise UserError(
      f'Could not restore the checkpoint of step {step} in {manager.directory}: '
      f'{type(e).__name__}: {e}\nEither it was written by a different model or dataset, or '
      'with an EMA of the weights where this config has none or the other way round (use the '
      'config that trained it, or another --workdir), or it is damaged. '
      'Nothing was deleted.'
    ) from e
  return TrainState(**restored) if is_state else restored


def restore_latest(
  manager: ocp.CheckpointManager, template: Any, workdir: str, unreadable_means_damaged: bool
) -> Any | None:
  """The newest checkpoint that restores, or None if there is none.

  With unreadable_means_damaged (the saved run had this model and dataset), a checkpoint that
  fails to restore (on any process) is moved to workdir/corrupt_checkpoints/<step>-<time> by
  process 0, never deleted, and the one before it is tried. Otherwise the failure is the
  user's to resolve: nothing is moved.
  A checkpoint whose writer died mid-save is never a candidate: orbax writes into a temporary
  folder and renames it only once complete.
  """
  while (step := manager.latest_step()) is not None:
    try:
      restored, error = restore(manager, step, template), None
    except UserError as e:
      restored, error = None, e
    # Every process must take the same branch, or one would wait for the others forever.
    failed = distributed.failed_processes(error is None)
    if not failed:
      return restored
    error = error or UserError(
      f'The checkpoint of step {step} in {manager.directory} could not '
      f'be restored on process(es) {failed}; see their messages.'
    )
    if not unreadable_means_damaged:
      raise error
    if distributed.is_writer():
      aside = os.path.join(
        os.path.abspath(workdir), 'corrupt_checkpoints', f'{step}-{time.strftime("%Y%m%dT%H%M%S")}'
      )
      os.makedirs(os.path.dirname(aside), exist_ok=True)
      shutil.move(os.path.join(checkpoint_dir(workdir), str(step)), aside)
      logging.warning(
        'The checkpoint of step %d could not be restored; moved it to %s and '
        'trying the one before it.',
        step,
        aside,
      )
    distributed.wait_for_all(f'checkpoint {step} moved aside')
    manager.reload()
  return None
