"""Results of finished runs: a markdown table, training curves, and the degradation figure.

Reads only the files a run leaves in its workdir (config.json, metrics.jsonl, provenance.json and,
where the run wrote one, timeline.json) through resnet_jax.records, which imports only the
standard library: it needs neither JAX nor ml_collections. The figures need matplotlib
(pip install -r tools/requirements.txt). From the repository root:

  python -m tools.results results/h100_2026-11-27/resnet18_fast \\
      'results/h100_2026-11-27/degradation/*' --dataset_label='CIFAR-10 (JPEG copy)'
  python -m tools.results 'results/h100_2026-11-27/degradation/*' --degradation
  python -m tools.results 'results/cpu_2026-11-27/resnet20_short/seed*/*' --parity

The first prints the markdown table and writes each row's curves.png into its (first) workdir,
once: the replicas of a workdir are always in one row; the second writes degradation.png and the
third parity.png (the JAX runs of tools/parity.py against its PyTorch runs) into the runs' common
parent folder.

  python -m tools.results --paper [RESULTS_DIR] [--queue=paper|test] [--write_readme]

prints the paper's Table 6 beside ours for every entry of tools/reproduction.py's queue, run or
not, and draws its Figure 6 at full length into RESULTS_DIR (default results/): tools/paper.py.

A run is one seed's training: a workdir whose program trained num_replicas replicas at once holds
that many, replica k the run of seed config.seed + k. Runs whose configs differ only in `seed`,
`num_replicas` or `replica_groups` make one row (a program of 4 replicas and 4 programs of one,
of the same recipe, are the same experiment): their final test top-1 is given as mean ± sample
standard deviation. A run that ended before its configured length (killed, out of time) is marked
in the table and in the figures, never left out; so is a replica that diverged, whose curves end
there and which the mean leaves out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from tools import paper
from tools.figures import curves, degradation, parity
from tools.reproduction import QUEUES
from tools.runs import (
  DATASET_NAMES,
  Run,
  duration_text,
  epochs_text,
  find_runs,
  group_by_seed,
  joined,
  measured,
  seeds_text,
)


def _top1(group: list[Run]) -> str:
  """The final test top-1's mean ± sample std over the runs that have one, and why others lack it."""
  return measured(
    group, lambda run: None if run.final_top1 is None else 100 * run.final_top1, 'a test eval'
  )


def _train_time(group: list[Run]) -> str:
  """The mean train_seconds of the group's programs, apart for each number of replicas."""
  by_replicas: dict[int, list[float]] = {}
  # One run per workdir: its replicas share their program's time.
  for run in {run.workdir: run for run in group}.values():
    by_replicas.setdefault(run.num_replicas, []).append(run.train_seconds)
  return ', '.join(
    duration_text(statistics.mean(seconds)) + (f' ({count} replicas together)' if count > 1 else '')
    for count, seconds in by_replicas.items()
  )


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
    epochs = epochs_text(first.planned_epochs)
    stopped = [run for run in group if run.stopped_early]
    if len(group) == 1 and stopped:
      epochs = f'**{epochs_text(first.epochs_done)} of {epochs} (stopped early)**'
    elif stopped:
      epochs += (
        ' **(stopped early: '
        + ', '.join(
          f'seed {run.config["seed"]} at {epochs_text(run.epochs_done)}' for run in stopped
        )
        + ')**'
      )
    dataset = dataset_label or DATASET_NAMES.get(
      first.config['dataset']['name'], first.config['dataset']['name']
    )
    date = joined(run.provenance.get('time', '?')[:10] for run in group)
    lines.append(
      f'| {first.model} | {dataset} | {first.recipe} | {epochs} | {_top1(group)} | '
      f'{seeds_text(group)} | {_train_time(group)} | {joined(r.machine for r in group)} | '
      f'{date} |'
    )
  return lines + [
    '',
    (
      'test top-1: the last evaluation of each run (its final epoch, not the best one); over '
      'several seeds the mean ± the sample standard deviation. A run stopped early gives the '
      'evaluation of its last epoch. A replica that diverged (its loss or a gradient went NaN '
      'or infinite, and its program trained the others on without it) has none: the row says '
      'which, and the mean ± std is over the others. seeds: the runs in the row, each replica '
      'of a program of several counting as one; a seed in it twice (run as a replica and '
      'alone, say) counts twice and is marked repeated. train time: the training steps only, the sum '
      'over log intervals of steps x batch size x replicas / the images per second of all '
      'replicas together measured there (compilation, evaluation and checkpointing excluded), '
      'mean over the programs (workdirs) of the row. A program of N replicas trained them at '
      'once, so its time is the wall time of all N, given apart as "(N replicas together)". '
      "machine: provenance.json's device_kind; date: its start time."
    ),
  ]


def _common_parent(runs: list[Run], name: str) -> str:
  return os.path.join(
    os.path.commonpath([os.path.dirname(os.path.abspath(run.workdir)) for run in runs]), name
  )


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument(
    'workdirs',
    nargs='*',
    help='run workdirs, as paths or globs; with --paper, the folder to search (default results)',
  )
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
  figure.add_argument(
    '--paper',
    action='store_true',
    help="instead, the paper's Table 6 and Figure 6: the queue's entries against the runs "
    'under one folder (tools/paper.py)',
  )
  parser.add_argument('--queue', choices=QUEUES, default='paper', help='with --paper: the queue')
  parser.add_argument(
    '--write_readme', action='store_true', help="with --paper: also into README.md's table block"
  )
  args = parser.parse_args(argv)
  if args.paper:
    if len(args.workdirs) > 1:
      parser.error(f'--paper takes one folder, not {len(args.workdirs)}.')
    try:
      paper.report(
        args.workdirs[0] if args.workdirs else 'results',
        QUEUES[args.queue],
        args.write_readme,
        draw=not args.no_curves,
      )
    except ValueError as e:
      raise SystemExit(str(e)) from e
    return
  if not args.workdirs or args.write_readme or args.queue != 'paper':
    parser.error('give run workdirs; --queue and --write_readme go with --paper.')
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
