"""The figures of tools/results.py: training curves, the degradation figure (the paper's Figures 1
and 6, small), JAX against PyTorch, and the paper's Figure 6 at full length (tools/paper.py). Needs matplotlib (pip install -r tools/requirements.txt).

Each replica of a workdir is a run of its own seed. A diverged replica's rows from its divergence
on have no loss or top-1: its curves end at its last logged values, marked x like a run stopped
early.
"""

from __future__ import annotations

import statistics

from tools.runs import Run, epochs_text, joined

PAPER_DEPTHS = (20, 32, 44, 56, 110)  # the paper's CIFAR nets, each as resnetN and plainN
DPI = 100


def _plot_splits(ax, run: Run, key: str, shown, color, label: str) -> None:
  """shown(row[key]) of train (dashed) and test (solid) rows against epochs; an x where it stopped
  or diverged. Rows without the key (a diverged replica's) are skipped."""
  for split, style in (('train', '--'), ('test', '-')):
    rows = [row for row in run.split(split) if key in row]
    ax.plot(
      [row['epoch'] for row in rows],
      [shown(row[key]) for row in rows],
      style,
      color=color,
      label=f'{label} {split}',
    )
    if (run.stopped_early or run.diverged_at is not None) and rows:
      ax.plot(rows[-1]['epoch'], shown(rows[-1][key]), 'x', color=color, markersize=9)


def _pyplot():
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit('The figures need matplotlib: pip install -r tools/requirements.txt') from e
  matplotlib.use('Agg')  # files only, no display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _finish(fig, axes, plt, path: str, xmax: float, xlabel: str = 'epoch') -> None:
  for ax in axes:
    ax.set(xlabel=xlabel, xlim=(0, xmax))
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
    _plot_splits(axes[0], run, 'loss', lambda loss: loss, color, label)
    _plot_splits(axes[1], run, 'top1', lambda top1: 100 * top1, color, label)
  first = group[0]
  title = f'{first.model}, {first.recipe.replace("`", "")}'
  stopped = [run for run in group if run.stopped_early]
  if stopped:
    title += '\nstopped early (x): ' + ', '.join(
      f'seed {r.config["seed"]} at epoch {epochs_text(r.epochs_done)} of {epochs_text(r.planned_epochs)}'
      for r in stopped
    )
  diverged = [run for run in group if run.diverged_at is not None]
  if diverged:
    title += '\ndiverged (x): ' + ', '.join(
      f'seed {r.config["seed"]} at epoch {epochs_text(r.diverged_epoch)}' for r in diverged
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
          label += f' (stopped at epoch {epochs_text(run.epochs_done)} of {epochs_text(run.planned_epochs)})'
        if run.diverged_at is not None:
          label += (
            f' (seed {run.config["seed"]} diverged at epoch {epochs_text(run.diverged_epoch)})'
          )
        _plot_splits(ax, run, 'top1', lambda top1: 100 * (1 - top1), color, label)
    ax.set(title=f'{title}-N', ylim=(0, 100))
  axes[0].set_ylabel('top-1 error (%): train dashed, test solid')
  _finish(fig, axes, plt, path, max(run.planned_epochs for run in runs))


def figure6(groups: dict[str, list[Run]], left_out: list[str], path: str) -> None:
  """The paper's Figure 6: train (thin) and test (bold) error of each net against iterations, the
  mean over its seeds at each logged step; plain nets left, ResNets right, one colour per depth.

  groups: each net's seeds by its name ('plain-20', 'ResNet-56'); left_out: the nets not run,
  named in the title. The error axis is the paper's 0-20%, which cuts off the first steps' errors
  as the paper's does, unless a curve ends above 20%.
  """
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  colors = plt.get_cmap('tab10').colors
  depths = list(dict.fromkeys(name.rsplit('-', 1)[-1] for name in groups))
  last = 0.0  # the highest error a curve ends at
  for name, group in groups.items():
    ax = axes[0 if name.startswith('plain') else 1]
    color = colors[depths.index(name.rsplit('-', 1)[-1]) % len(colors)]
    label = f'{name} ({len(group)} seed{"s" if len(group) > 1 else ""})' + ''.join(
      f', seed {run.config["seed"]} diverged at step {run.diverged_at}'
      for run in group
      if run.diverged_at is not None
    )
    for split, width in (('train', 0.7), ('test', 2.0)):
      steps, errors = _mean_error_by_step(group, split)
      ax.plot(
        [step / 1e4 for step in steps],
        errors,
        color=color,
        linewidth=width,
        label=label if split == 'test' else None,
      )
      last = max(last, errors[-1] if errors else 0.0)
  for ax, title in zip(axes, ('plain', 'ResNet')):
    ax.set_title(title)
  axes[0].set_ylim(0, 20 if last <= 20 else None)
  axes[0].set_ylabel('error (%): train thin, test bold')
  data = joined(run.provenance.get('data', '?') for group in groups.values() for run in group)
  fig.suptitle(
    f'Figure 6 at full length, data: {data}'
    + (f'; not run: {", ".join(left_out)}' if left_out else ''),
    fontsize=9,
  )
  xmax = max(row['step'] for group in groups.values() for run in group for row in run.rows)
  _finish(fig, axes, plt, path, xmax / 1e4, xlabel='iter. (1e4)')


def _mean_error_by_step(group: list[Run], split: str) -> tuple[list[int], list[float]]:
  """(logged steps, mean over the seeds of 100 (1 - top-1) there); a diverged seed's rows from
  its divergence on have no top-1 and are skipped."""
  by_step: dict[int, list[float]] = {}
  for run in group:
    for row in (row for row in run.split(split) if 'top1' in row):
      by_step.setdefault(row['step'], []).append(100 * (1 - row['top1']))
  steps = sorted(by_step)
  return steps, [statistics.mean(by_step[step]) for step in steps]


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
        tests = [row for row in run.split('test') if key in row]
        ax.plot(
          [row['epoch'] for row in tests],
          [scale * row[key] for row in tests],
          '-',
          color=color,
          label=f'{label} test',
        )
  first = runs[0]
  fig.suptitle(
    f'{joined(r.model.removesuffix(" (PyTorch)") for r in runs)}, '
    f'{first.recipe.replace("`", "")}: JAX and PyTorch on the same batches',
    fontsize=9,
  )
  axes[0].set_ylabel('loss: train (epoch mean) dashed, test solid')
  axes[1].set_ylabel('top-1 (%)')
  _finish(fig, axes, plt, path, max(run.planned_epochs for run in runs))


def _epoch_means(run: Run, key: str) -> tuple[list[int], list[float]]:
  """(epochs k, mean of row[key] over the train rows logged in epoch k, steps (k-1)*n+1..k*n);
  rows without the key (a diverged replica's) are skipped."""
  by_epoch: dict[int, list[float]] = {}
  for row in (row for row in run.split('train') if key in row):
    by_epoch.setdefault(-(-row['step'] // run.steps_per_epoch), []).append(row[key])
  epochs = sorted(by_epoch)
  return epochs, [statistics.mean(by_epoch[e]) for e in epochs]


def _shades(count: int) -> list[float]:
  """Colormap positions from dark to light, distinct for up to a handful of seeds."""
  return [0.9 - 0.45 * i / max(count - 1, 1) for i in range(count)]
