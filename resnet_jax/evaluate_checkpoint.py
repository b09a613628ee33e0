"""--mode=eval: restore a checkpoint of a run and evaluate it on every split it has."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import jax
from absl import logging

from resnet_jax import checkpoint, console, distributed, records, validation
from resnet_jax.errors import UserError
from resnet_jax.setup import setup

if TYPE_CHECKING:
  import ml_collections


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Restores config.eval.step (-1: the latest), evaluates every split, writes eval_<step>.json.

  Each split's result is evaluation.summarize's: the means over the live replicas, their
  standard deviations, and every replica's own numbers.
  """
  validation.validate_config(config, jax.device_count())
  if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
    raise UserError(
      f'No checkpoints in {workdir}: train first (--mode=train) or pass the '
      '--workdir of a trained run.'
    )
  manager = checkpoint.create_manager(workdir, create=False)
  steps = manager.all_steps()
  step = config.eval.step if config.eval.step >= 0 else (max(steps) if steps else None)
  if step is None or step not in steps:
    raise UserError(
      f'No checkpoint of step {config.eval.step if step is None else step} in '
      f'{checkpoint.checkpoint_dir(workdir)}; the saved steps are '
      f'{sorted(steps) or "none"}.'
    )
  run = setup(config)
  state = checkpoint.restore(manager, step, run.state)
  manager.close()
  results = {'step': step}
  for name, split in run.eval_sets.items():
    results[name] = run.eval_fn(state, split)
    logging.info(console.eval_line(name, step, results[name]))
  if distributed.is_writer():
    logging.info('Wrote %s.', records.write_eval(workdir, step, results))
  return results
