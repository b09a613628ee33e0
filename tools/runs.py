"""Finished runs as their workdirs hold them, for tools/results.py's table and tools/figures.py.

A run here is one seed's training. A workdir whose program trained num_replicas replicas at once
holds that many runs: replica k is the run of seed config.seed + k, its rows those tagged
`replica` k in metrics.jsonl. Rows of runs older than replicas carry no `replica`: they are
replica 0's, of the config's seed.

Only the standard library and resnet_jax.records (itself standard library only): no JAX needed.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import re
import statistics
from collections.abc import Callable
from typing import Any

from resnet_jax import records

DATASET_NAMES = {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100'}
# Overrides that change no result: where the data and the records are, how often the run logs,
# evaluates and saves, the compilation cache. (steps_per_call moves where the jitted calls end,
# which changes float rounding, not the experiment.)
BOOKKEEPING = (
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
  'eval.batch_size',
  'eval.flip_tta',
  'eval.step',
)
# Overrides on the command line that the table shows elsewhere (model, epochs, seeds) or that
# do not change what is computed (bookkeeping, replicas: replica k computes what seed + k alone
# would); the others are part of the recipe.
NOT_RECIPE = (
  'model.name',
  'seed',
  'num_replicas',
  'replica_groups',
  'num_train_steps',
  'num_epochs',
  *BOOKKEEPING,
)

# Config fields that do not make a different experiment: the seed is what a group varies, and
# the replicas of a program each compute what their seed alone would.
NOT_EXPERIMENT = ('seed', 'num_replicas', 'replica_groups')


@dataclasses.dataclass
class Run:
  """One seed's training: a workdir's files, or one replica's share of them.

  config is the workdir's config.json with `seed` set to this run's seed; rows are this run's
  rows of metrics.jsonl. workdir is shared by the num_replicas runs of one program.
  """

  workdir: str
  config: dict[str, Any]
  provenance: dict[str, Any]
  rows: list[dict[str, Any]]
  timeline: dict[str, Any] | None = None  # timeline.json; absent in runs older than it
  replica: int = 0  # its index among the replicas of the program that trained it

  def split(self, name: str) -> list[dict[str, Any]]:
    return [row for row in self.rows if row['split'] == name]

  @property
  def num_replicas(self) -> int:
    """The replicas its program trained together; configs older than replicas had one."""
    return self.config.get('num_replicas', 1)

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
  def diverged_at(self) -> int | None:
    """The step at which its loss or a gradient went NaN or infinite, if it did.

    Its program left it out from then on and trained the other replicas on; its rows from that
    log point on carry diverged_at instead of loss and top-1.
    """
    return next((row['diverged_at'] for row in self.rows if 'diverged_at' in row), None)

  @property
  def diverged_epoch(self) -> float | None:
    return None if self.diverged_at is None else self.diverged_at / self.steps_per_epoch

  @property
  def final_top1(self) -> float | None:
    """The last evaluation's test top-1: that of the final epoch, never the best.

    None without a test evaluation, and for a run that diverged: an evaluation before its
    divergence is not that of the run it was meant to be.
    """
    tests = self.split('test')
    return tests[-1]['top1'] if tests and self.diverged_at is None else None

  @property
  def train_seconds(self) -> float:
    """Its program's time in training steps: each log interval's steps x batch x replicas / its
    logged images/s, the rate of all replicas together.

    The replicas of a program trained at once, so each one's figure is the program's time, not a
    share of it. Compilation, evaluation and checkpoint saving fall outside the logged rates, so
    outside this sum; a row logged without a rate (nothing timed since the first call) adds
    nothing.
    """
    images_per_step = self.config['batch_size'] * self.num_replicas
    seconds, previous = 0.0, 0
    for row in self.split('train'):
      if row.get('images_per_second'):
        seconds += (row['step'] - previous) * images_per_step / row['images_per_second']
      previous = row['step']
    return seconds

  @property
  def framework(self) -> str:
    """'jax', or 'pytorch' for tools/parity.py's reference runs (provenance says so)."""
    return self.provenance.get('framework', 'jax')

  @property
  def model(self) -> str:
    return net_name(self.config['model']['name'], self.framework)

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


def load_runs(workdir: str) -> list[Run]:
  """A workdir's runs, one a replica in replica order (one for a run of one replica).

  Raises ValueError if it has no config.json, no metrics rows, or rows that do not match its
  num_replicas: a replica is never left out unsaid.
  """
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
  count = config.get('num_replicas', 1)
  by_replica: dict[int, list[dict[str, Any]]] = {k: [] for k in range(count)}
  for row in rows:
    k = row.get('replica', 0)  # rows older than replicas are the only replica's
    if k not in by_replica:
      raise ValueError(
        f'{workdir}/{records.METRICS} has rows of replica {k}, but its {records.CONFIG} '
        f'has num_replicas={count}.'
      )
    by_replica[k].append(row)
  silent = [k for k, mine in by_replica.items() if not mine]
  if silent:
    raise ValueError(
      f'{workdir}/{records.METRICS} has no rows of replica(s) {silent} of num_replicas={count}.'
    )
  timeline = records.read_timeline(workdir)
  return [
    Run(workdir, {**config, 'seed': config['seed'] + k}, provenance, mine, timeline, replica=k)
    for k, mine in by_replica.items()
  ]


def runs_under(folder: str) -> list[Run]:
  """Runs of every workdir (a folder with config.json) at any depth under folder."""
  return find_runs([root for root, _, files in os.walk(folder) if records.CONFIG in files])


def find_runs(patterns: list[str]) -> list[Run]:
  """Runs of every workdir the paths or globs name, each workdir's replicas in turn; folders
  without config.json are skipped."""
  workdirs = sorted({path for pattern in patterns for path in glob.glob(pattern) or [pattern]})
  return [
    run
    for workdir in workdirs
    if os.path.exists(os.path.join(workdir, records.CONFIG))
    for run in load_runs(workdir)
  ]


def group_by_seed(runs: list[Run]) -> list[list[Run]]:
  """Runs of one framework whose configs are equal but for NOT_EXPERIMENT, in order of
  appearance, each group sorted by seed.

  A program's replicas always share a group, and one of N replicas joins the runs of one
  replica of the same recipe: they are the same experiment.
  """
  groups: dict[str, list[Run]] = {}
  for run in runs:
    key = run.framework + json.dumps(
      {k: v for k, v in run.config.items() if k not in NOT_EXPERIMENT}, sort_keys=True
    )
    groups.setdefault(key, []).append(run)
  for group in groups.values():
    group.sort(key=lambda run: run.config['seed'])
  return list(groups.values())


def epochs_text(value: float) -> str:
  return f'{value:g}' if value == int(value) else f'{value:.2f}'


def joined(values) -> str:
  return ', '.join(dict.fromkeys(values))  # unique, in order


def net_name(model: str, framework: str = 'jax') -> str:
  """'ResNet-20', 'plain-56', 'PreAct ResNet-164', 'WRN-28-10', 'WRN-28-10 dropout',
  'ResNet-20 (PyTorch)' of a model (or queue entry) name; other names as they are."""
  if match := re.fullmatch(r'(resnet|plain|preact_resnet)(\d+)', model):
    family = {'resnet': 'ResNet', 'plain': 'plain', 'preact_resnet': 'PreAct ResNet'}[match[1]]
    name = f'{family}-{match[2]}'
  elif match := re.fullmatch(r'wrn(\d+)_(\d+)(_dropout)?', model):
    name = f'WRN-{match[1]}-{match[2]}' + (' dropout' if match[3] else '')
  else:
    name = model
  return name + (' (PyTorch)' if framework == 'pytorch' else '')


def duration_text(seconds: float) -> str:
  if seconds < 120:
    return f'{seconds:.0f} s'
  return f'{seconds / 60:.1f} min' if seconds < 7200 else f'{seconds / 3600:.1f} h'


def measured(group: list[Run], value: Callable[[Run], float | None], lacking: str) -> str:
  """Mean ± sample std of value(run) (a percentage) over the runs that have one; then which runs
  diverged, and how many others have none ('(1 without <lacking>)')."""
  values = [v for v in map(value, group) if v is not None]
  if not values:
    cell = 'none'
  elif len(values) == 1:
    cell = f'{values[0]:.2f}%'
  else:
    cell = f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}%'
  diverged = [run for run in group if run.diverged_at is not None]
  if diverged:
    cell += (
      f' **({len(diverged)} of {len(group)} diverged: '
      + ', '.join(
        f'seed {run.config["seed"]} at epoch {epochs_text(run.diverged_epoch)}' for run in diverged
      )
      + ')**'
    )
  without = len(group) - len(values) - len(diverged)
  return cell + (f' ({without} without {lacking})' if without else '')


def seeds_text(group: list[Run], planned: int | None = None) -> str:
  """The number of runs (of planned, if given); a seed that ran twice (as a replica and alone,
  say) is marked, since it is counted twice."""
  counts = collections.Counter(run.config['seed'] for run in group)
  repeated = [str(seed) for seed, count in counts.items() if count > 1]
  return (
    f'{len(group)}'
    + (f' / {planned}' if planned is not None else '')
    + (f' (seed {", ".join(repeated)} repeated)' if repeated else '')
  )
