"""--mode=eval: restore a checkpoint of a run and evaluate it on every split it has."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
from absl import logging

from resnet_jax import checkpoint, console, distributed, records, validation
from resnet_jax.setup import setup

if TYPE_CHECKING:
  import ml_collections


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Restores config.eval.step (-1: the latest), evaluates every split, writes eval_<step>.json.

  Each split's result is evaluation.summarize's: the means over the live replicas, their
  standard deviations, and every replica's own numbers.
  """
  validation.validate_config(config, jax.device_count())
  manager, step = checkpoint.open_step(workdir, config.eval.step)
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
