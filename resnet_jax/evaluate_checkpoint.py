"""--mode=eval: restore a checkpoint of a run and evaluate it on every split it has, and on the
other test sets of config.eval.extra_datasets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import jax
from absl import logging

from resnet_jax import (
  checkpoint,
  console,
  distributed,
  ema,
  evaluation,
  extra_sets,
  guards,
  records,
  tfds_source,
  validation,
)
from resnet_jax.setup import Setup, prepare_tfds, setup

if TYPE_CHECKING:
  import ml_collections


def extra_data_dir(config: ml_collections.ConfigDict) -> str:
  """Where the other test sets are prepared: eval.extra_data_dir, or else dataset.data_dir."""
  return config.eval.extra_data_dir or config.dataset.data_dir


def _evaluate_extra_sets(
  config: ml_collections.ConfigDict, run: Setup, state: Any, step: int
) -> dict[str, Any]:
  """Each tfds test set of config.eval.extra_datasets (one on the devices at a time: all of
  CIFAR-10-C would not fit beside the model), then the means extra_sets.means names."""
  names = config.eval.extra_datasets
  results = {}
  for name in extra_sets.expand(names):
    (split,) = tfds_source.load(name, extra_data_dir(config), ('test',))
    results[name] = run.eval_fn(state, evaluation.eval_set(split, config.eval.batch_size, run.mesh))
    logging.info(console.eval_line(name, step, results[name]))
  means = {}
  for key, members in extra_sets.means(names).items():
    means[key] = evaluation.mean_of([results[member] for member in members], run.seeds)
    for suffix in ('', '_flip_tta'):
      if f'top1{suffix}' in means[key]:  # the mean error CIFAR-10-C tables quote
        means[key][f'error{suffix}'] = 1 - means[key][f'top1{suffix}']
    logging.info(console.eval_line(key, step, means[key]))
  return {**means, **results}


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Restores config.eval.step (-1: the latest), evaluates every split and extra test set,
  writes eval_<step>.json (or, where the workdir is read-only, prints it on stdout).

  Each split's result is evaluation.summarize's: the means over the live replicas, their
  standard deviations, and every replica's own numbers. A run with an EMA of its weights also
  has each split's result of the averaged weights, as <split>_ema.
  """
  validation.validate_config(config, jax.device_count())
  guards.check_same_model(records.read_config(workdir), config, workdir)
  manager, step = checkpoint.open_step(workdir, config.eval.step)
  reason = records.unwritable(workdir) if distributed.is_writer() else None
  if reason:
    # Evaluating someone else's read-only run is fine: the results still reach the user.
    logging.warning(
      '%s: the results will be printed as JSON on stdout, not written to %s.',
      reason,
      records.eval_path(workdir, step),
    )
  # Before the run is built: offline, a missing test set stops it within seconds.
  prepare_tfds(extra_sets.expand(config.eval.extra_datasets), extra_data_dir(config))
  run = setup(config)
  state = checkpoint.restore(manager, step, run.state)
  manager.close()
  results = {'step': step}
  for split_name, split in run.eval_sets.items():
    for suffix, evaluated in ema.evaluated_states(state).items():
      name = split_name + suffix
      results[name] = run.eval_fn(evaluated, split)
      logging.info(console.eval_line(name, step, results[name]))
  results.update(_evaluate_extra_sets(config, run, state, step))
  if distributed.is_writer():
    _write_or_print(workdir, step, results)
  return results


def _write_or_print(workdir: str, step: int, results: dict[str, Any]) -> None:
  """Writes eval_<step>.json; where that fails, prints the results as JSON on stdout instead."""
  try:
    logging.info('Wrote %s.', records.write_eval(workdir, step, results))
  except OSError as e:
    logging.warning(
      'Could not write %s (%s); the results:', records.eval_path(workdir, step), e.strerror
    )
    print(json.dumps(results, indent=2, sort_keys=True), flush=True)
