"""Finished runs as their workdirs hold them, for tools/results.py's table and tools/figures.py.

Only the standard library and resnet_jax.records (itself standard library only): no JAX needed.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import Any

from resnet_jax import records

DATASET_NAMES = {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100'}
# Overrides on the command line that the table shows elsewhere (model, epochs, seeds) or that
# do not change what is computed (paths, cadences); the others are part of the recipe.
NOT_RECIPE = (
  'model.name',
  'seed',
  'num_train_steps',
  'num_epochs',
  'dataset.source',
  'dataset.data_dir',
  'steps_per_call',
  'log_every_steps',
  'log_every_epochs',
  'eval_every_steps',
  'eval_every_epochs',
  'checkpoint_every_steps',
  'checkpoint_every_epochs',
  'keep_checkpoints',
  'allow_config_change',
  'shared_workdir_timeout_s',
  'compilation_cache_dir',
  'profile_steps',
)


@dataclasses.dataclass
class Run:
  """One workdir's files, and what the table and figures need from them."""

  workdir: str
  config: dict[str, Any]
  provenance: dict[str, Any]
  rows: list[dict[str, Any]]
  timeline: dict[str, Any] | None = None  # timeline.json; absent in runs older than it

  def split(self, name: str) -> list[dict[str, Any]]:
    return [row for row in self.rows if row['split'] == name]

  @property
  def steps_per_epoch(self) -> int:
    if self.timeline:
      return self.timeline['epoch_steps']
    row = next(row for row in self.rows if row['epoch'] > 0)
    return round(row['step'] / row['epoch'])

  @property
  def planned_epochs(self) -> float:
    if self.timeline:
      return self.timeline['total_steps'] / self.timeline['epoch_steps']
    steps = self.config['num_train_steps']
    return steps / self.steps_per_epoch if steps > 0 else self.config['num_epochs']

  @property
  def epochs_done(self) -> float:
    return max(row['step'] for row in self.rows) / self.steps_per_epoch

  @property
  def stopped_early(self) -> bool:
    return self.epochs_done < self.planned_epochs

  @property
  def final_top1(self) -> float | None:
    """The last evaluation's test top-1: that of the final epoch, never the best."""
    tests = self.split('test')
    return tests[-1]['top1'] if tests else None

  @property
  def train_seconds(self) -> float:
    """Time in training steps: each log interval's steps x batch / its logged images/s.

    Compilation, evaluation and checkpoint saving fall outside the logged rates, so outside this
    sum; a row logged without a rate (nothing timed since the first call) adds nothing.
    """
    seconds, previous = 0.0, 0
    for row in self.split('train'):
      if row.get('images_per_second'):
        seconds += (row['step'] - previous) * self.config['batch_size'] / row['images_per_second']
      previous = row['step']
    return seconds

  @property
  def framework(self) -> str:
    """'jax', or 'pytorch' for tools/parity.py's reference runs (provenance says so)."""
    return self.provenance.get('framework', 'jax')

  @property
  def model(self) -> str:
    match = re.fullmatch(r'(resnet|plain)(\d+)', self.config['model']['name'])
    name = (
      self.config['model']['name']
      if not match
      else f'{"ResNet" if match[1] == "resnet" else "plain"}-{match[2]}'
    )
    return name + (' (PyTorch)' if self.framework == 'pytorch' else '')

  @property
  def recipe(self) -> str:
    """The config file of the command, and the overrides that change the recipe."""
    command = self.provenance.get('command', [])
    config = next((arg.split('=', 1)[1] for arg in command if arg.startswith('--config=')), '?')
    overrides = [arg[len('--config.') :] for arg in command if arg.startswith('--config.')]
    overrides = [o for o in overrides if o.split('=', 1)[0] not in NOT_RECIPE]
    return ', '.join(f'`{item}`' for item in [config, *overrides])

  @property
  def machine(self) -> str:
    count = len(self.provenance.get('devices', [])) or 1
    kind = self.provenance.get('device_kind', '?')
    return kind if count == 1 else f'{count}x {kind}'


def load_run(workdir: str) -> Run:
  """Reads a workdir; raises ValueError if it has no config.json or no metrics rows."""
  config = records.read_config(workdir)
  if config is None:
    raise ValueError(f'{workdir} has no {records.CONFIG}: not a run workdir.')
  # Absent if the run died before writing it: its columns read '?'.
  provenance = records.read_json(os.path.join(workdir, records.PROVENANCE)) or {}
  try:
    rows = records.read_metrics(workdir)
  except FileNotFoundError:
    rows = []
  if not rows:
    raise ValueError(f'{workdir}/{records.METRICS} has no rows: the run logged nothing.')
  return Run(workdir, config, provenance, rows, records.read_timeline(workdir))


def find_runs(patterns: list[str]) -> list[Run]:
  """Runs of every workdir the paths or globs name; folders without config.json are skipped."""
  workdirs = sorted({path for pattern in patterns for path in glob.glob(pattern) or [pattern]})
  return [load_run(w) for w in workdirs if os.path.exists(os.path.join(w, records.CONFIG))]


def group_by_seed(runs: list[Run]) -> list[list[Run]]:
  """Runs of one framework whose configs are equal but for `seed`, in order of appearance."""
  groups: dict[str, list[Run]] = {}
  for run in runs:
    key = run.framework + json.dumps(
      {k: v for k, v in run.config.items() if k != 'seed'}, sort_keys=True
    )
    groups.setdefault(key, []).append(run)
  for group in groups.values():
    group.sort(key=lambda run: run.config['seed'])
  return list(groups.values())


def epochs_text(value: float) -> str:
  return f'{value:g}' if value == int(value) else f'{value:.2f}'


def joined(values) -> str:
  return ', '.join(dict.fromkeys(values))  # unique, in order
