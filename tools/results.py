"""Results of finished runs: a markdown table, training curves, and the degradation figure.

Reads only the files a run leaves in its workdir (config.json, metrics.jsonl, provenance.json and,
where the run wrote one, timeline.json) through resnet_jax.records, which imports only the
standard library: it needs neither JAX nor ml_collections. The figures need matplotlib
(pip install -r tools/requirements.txt). From the repository root:

  python -m tools.results results/h100_2026-11-27/resnet18_fast \\
      'results/h100_2026-11-27/degradation/*' --dataset_label='CIFAR-10 (JPEG copy)'
  python -m tools.results 'results/h100_2026-11-27/degradation/*' --degradation
  python -m tools.results 'results/cpu_2026-11-27/resnet20_short/seed*/*' --parity

The first prints the markdown table and writes each row's curves.png into its (first) workdir;
the second writes degradation.png and the third parity.png (the JAX runs of tools/parity.py
against its PyTorch runs) into the runs' common parent folder.

Runs whose configs differ only in `seed` make one row: their final test top-1 is given as
mean ± sample standard deviation. A run that ended before its configured length (killed, out of
time) is marked in the table and in the figures, never left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import statistics
import sys
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
# The depths of the paper's CIFAR nets, each as resnetN and as its plain twin plainN.
PAPER_DEPTHS = (20, 32, 44, 56, 110)
DPI = 100


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


def _epochs(value: float) -> str:
  return f'{value:g}' if value == int(value) else f'{value:.2f}'


def _duration(seconds: float) -> str:
  if seconds < 120:
    return f'{seconds:.0f} s'
  return f'{seconds / 60:.1f} min' if seconds < 7200 else f'{seconds / 3600:.1f} h'


def _joined(values) -> str:
  return ', '.join(dict.fromkeys(values))  # unique, in order


def table(groups: list[list[Run]], dataset_label: str | None = None) -> list[str]:
  """The markdown table, one line per group, then notes saying how each column was computed."""
  lines = [
    (
      '| model | dataset | recipe | epochs | test top-1 (final epoch) | seeds | train time '
      '| machine | date |'
    ),
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for group in groups:
    first = group[0]
    epochs = _epochs(first.planned_epochs)
    stopped = [run for run in group if run.stopped_early]
    if len(group) == 1 and stopped:
      epochs = f'**{_epochs(first.epochs_done)} of {epochs} (stopped early)**'
    elif stopped:
      epochs += (
        ' **(stopped early: '
        + ', '.join(f'seed {run.config["seed"]} at {_epochs(run.epochs_done)}' for run in stopped)
        + ')**'
      )
    top1s = [100 * run.final_top1 for run in group if run.final_top1 is not None]
    if not top1s:
      top1 = 'no test eval'
    elif len(top1s) == 1:
      top1 = f'{top1s[0]:.2f}%'
    else:
      top1 = f'{statistics.mean(top1s):.2f} ± {statistics.stdev(top1s):.2f}%'
    if len(top1s) < len(group):
      top1 += f' ({len(group) - len(top1s)} without a test eval)'
    seconds = statistics.mean(run.train_seconds for run in group)
    dataset = dataset_label or DATASET_NAMES.get(
      first.config['dataset']['name'], first.config['dataset']['name']
    )
    date = _joined(run.provenance.get('time', '?')[:10] for run in group)
    lines.append(
      f'| {first.model} | {dataset} | {first.recipe} | {epochs} | {top1} | '
      f'{len(group)} | {_duration(seconds)} | {_joined(r.machine for r in group)} | '
      f'{date} |'
    )
  return lines + [
    '',
    (
      'test top-1: the last evaluation of each run (its final epoch, not the best one); over '
      'several seeds the mean ± the sample standard deviation. A run stopped early gives the '
      'evaluation of its last epoch. train time: the training steps only, the sum over log '
      'intervals of steps x batch size / the images per second measured there (compilation, '
      "evaluation and checkpointing excluded), mean over seeds. machine: provenance.json's "
      'device_kind; date: its start time.'
    ),
  ]


def _plot_splits(ax, run: Run, value, color, label: str) -> None:
  """value(row) of train (dashed) and test (solid) rows against epochs; an x where it stopped."""
  for split, style in (('train', '--'), ('test', '-')):
    rows = run.split(split)
    ax.plot(
      [row['epoch'] for row in rows],
      [value(row) for row in rows],
      style,
      color=color,
      label=f'{label} {split}',
    )
    if run.stopped_early and rows:
      ax.plot(rows[-1]['epoch'], value(rows[-1]), 'x', color=color, markersize=9)


def _pyplot():
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit('The figures need matplotlib: pip install -r tools/requirements.txt') from e
  matplotlib.use('Agg')  # files only, no display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _finish(fig, axes, plt, path: str, xmax: float) -> None:
  for ax in axes:
    ax.set(xlabel='epoch', xlim=(0, xmax))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  plt.close(fig)


def curves(group: list[Run], path: str) -> None:
  """Loss and top-1 against epochs, train and test, one colour per seed."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  colors = plt.get_cmap('tab10').colors
  for i, run in enumerate(group):
    label, color = f'seed {run.config["seed"]}', colors[i % len(colors)]
    _plot_splits(axes[0], run, lambda row: row['loss'], color, label)
    _plot_splits(axes[1], run, lambda row: 100 * row['top1'], color, label)
  first = group[0]
  title = f'{first.model}, {first.recipe.replace("`", "")}'
  stopped = [run for run in group if run.stopped_early]
  if stopped:
    title += '\nstopped early (x): ' + ', '.join(
      f'seed {r.config["seed"]} at epoch {_epochs(r.epochs_done)} of {_epochs(r.planned_epochs)}'
      for r in stopped
    )
  fig.suptitle(title, fontsize=9)
  axes[0].set_ylabel('loss: train dashed, test solid')
  axes[1].set_ylabel('top-1 (%)')
  _finish(fig, axes, plt, path, max(run.planned_epochs for run in group))


def degradation(runs: list[Run], path: str) -> None:
  """The paper's Figures 1 and 6 in small: train and test error of plain nets and ResNets."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  colors = plt.get_cmap('tab10').colors
  for ax, family, title in ((axes[0], 'plain', 'plain'), (axes[1], 'resnet', 'ResNet')):
    for color, depth in zip(colors, PAPER_DEPTHS):  # one colour per depth in both panels
      for run in (r for r in runs if r.config['model']['name'] == f'{family}{depth}'):
        label = f'{title}-{depth}'
        if run.stopped_early:
          label += (
            f' (stopped at epoch {_epochs(run.epochs_done)} of {_epochs(run.planned_epochs)})'
          )
        _plot_splits(ax, run, lambda row: 100 * (1 - row['top1']), color, label)
    ax.set(title=f'{title}-N', ylim=(0, 100))
  axes[0].set_ylabel('top-1 error (%): train dashed, test solid')
  _finish(fig, axes, plt, path, max(run.planned_epochs for run in runs))


def parity(runs: list[Run], path: str) -> None:
  """JAX against the PyTorch reference on identical inputs: blues for JAX, oranges for PyTorch."""
  frameworks = {run.framework for run in runs}
  if frameworks != {'jax', 'pytorch'}:
    raise ValueError(
      f'--parity needs runs of both frameworks (tools/parity.py writes '
      f'them); these are {sorted(frameworks)} only.'
    )
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for framework, name, cmap in (('jax', 'JAX', 'Blues'), ('pytorch', 'PyTorch', 'Oranges')):
    mine = sorted((r for r in runs if r.framework == framework), key=lambda r: r.config['seed'])
    for shade, run in zip(_shades(len(mine)), mine):
      color, label = plt.get_cmap(cmap)(shade), f'{name} seed {run.config["seed"]}'
      for ax, key, scale in ((axes[0], 'loss', 1), (axes[1], 'top1', 100)):
        # Epoch means: single log points of the two frameworks part within a few steps
        # (float32 rounding), so only averages over an epoch can be compared by eye.
        epochs, means = _epoch_means(run, key)
        ax.plot(epochs, [scale * m for m in means], '--', color=color, label=f'{label} train')
        tests = run.split('test')
        ax.plot(
          [row['epoch'] for row in tests],
          [scale * row[key] for row in tests],
          '-',
          color=color,
          label=f'{label} test',
        )
  first = runs[0]
  fig.suptitle(
    f'{_joined(r.model.removesuffix(" (PyTorch)") for r in runs)}, '
    f'{first.recipe.replace("`", "")}: JAX and PyTorch on the same batches',
    fontsize=9,
  )
  axes[0].set_ylabel('loss: train (epoch mean) dashed, test solid')
  axes[1].set_ylabel('top-1 (%)')
  _finish(fig, axes, plt, path, max(run.planned_epochs for run in runs))


def _epoch_means(run: Run, key: str) -> tuple[list[int], list[float]]:
  """(epochs k, mean of row[key] over the train rows logged in epoch k, steps (k-1)*n+1..k*n)."""
  by_epoch: dict[int, list[float]] = {}
  for row in run.split('train'):
    by_epoch.setdefault(-(-row['step'] // run.steps_per_epoch), []).append(row[key])
  epochs = sorted(by_epoch)
  return epochs, [statistics.mean(by_epoch[e]) for e in epochs]


def _shades(count: int) -> list[float]:
  """Colormap positions from dark to light, distinct for up to a handful of seeds."""
  return [0.9 - 0.45 * i / max(count - 1, 1) for i in range(count)]


def _common_parent(runs: list[Run], name: str) -> str:
  return os.path.join(
    os.path.commonpath([os.path.dirname(os.path.abspath(run.workdir)) for run in runs]), name
  )


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('workdirs', nargs='+', help='run workdirs, as paths or globs')
  parser.add_argument(
    '--dataset_label',
    help='the dataset column of every row (default: the '
    "config's dataset, e.g. CIFAR-10); a workdir cannot tell which copy it read",
  )
  parser.add_argument('--no_curves', action='store_true', help='the table only, no figures')
  figure = parser.add_mutually_exclusive_group()
  figure.add_argument(
    '--degradation',
    action='store_true',
    help='instead of the table and curves, the degradation figure only',
  )
  figure.add_argument(
    '--parity',
    action='store_true',
    help='instead of the table and curves, the JAX-against-PyTorch figure only',
  )
  args = parser.parse_args(argv)
  try:
    runs = find_runs(args.workdirs)
    if not runs:
      raise ValueError(f'No run workdir (with a config.json) in {args.workdirs}.')
    if args.degradation or args.parity:
      path = _common_parent(runs, 'degradation.png' if args.degradation else 'parity.png')
      (degradation if args.degradation else parity)(runs, path)
      print(f'Wrote {path}.', file=sys.stderr)
      return
  except ValueError as e:
    raise SystemExit(str(e)) from e
  groups = group_by_seed(runs)
  print('\n'.join(table(groups, args.dataset_label)))
  if not args.no_curves:
    for group in groups:
      path = os.path.join(group[0].workdir, 'curves.png')
      curves(group, path)
      print(f'Wrote {path}.', file=sys.stderr)


if __name__ == '__main__':
  main()
