"""The paper's Table 6 and Figure 6 at full length: the reproduction queue against what ran.

  python -m tools.results --paper [RESULTS_DIR] [--queue=paper|test] [--write_readme]

finds every run workdir under RESULTS_DIR (default results/), takes each queue entry's seeds
(tools.reproduction.seeds_of: the same config and overrides, trained to the last step) and prints
the table: one row per entry in queue order, run or not. It writes RESULTS_DIR/figure6.png
(tools.figures.figure6) when a Figure 6 entry has runs, and with --write_readme puts the table in
README.md between BEGIN and END, where tests/test_results.py checks it is up to date.

An entry without seeds reads 'not run', or 'not run: needs a longer window' where the newest
projection.json that tools/reproduce.py left for it says one seed does not fit its window.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from resnet_jax import records
from tools.figures import figure6
from tools.reproduction import Entry, is_seed_of, newest_projections, seeds_of
from tools.runs import Run, duration_text, joined, measured, net_name, runs_under, seeds_text

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')
BEGIN, END = '<!-- paper-table -->', '<!-- /paper-table -->'
FIGURE = 'figure6.png'
NOTE = (
  "ours: 100 minus each seed's last test top-1 (never its best), in %; over several seeds the "
  'mean ± the sample standard deviation. A seed that diverged is marked and left out of the '
  'mean. flip TTA: the same with the logits averaged over each image and its mirror image, from '
  "the `eval_<last step>.json` of `--mode=eval --config.eval.flip_tta=True`; '-' without one. "
  "seeds: the seeds that trained to their last step, of the entry's planned number; data: "
  "provenance.json's `data`, '?' where it has none. **The data column matters**: the paper's "
  'errors are on CIFAR-10, and errors on CIFAR-10 (JPEG copy) are not comparable with them (a '
  'model trained on real CIFAR-10 is said to lose about 10 points of top-1 on the copy; not '
  'measured here): they stand side by side, nothing more.'
)


def flip_tta_error(run: Run) -> float | None:
  """The test error (%) with flip TTA at run's last step, from that step's eval_<step>.json;
  None without one, and for a replica that diverged."""
  last = max(row['step'] for row in run.rows)
  evaluation = records.read_json(os.path.join(run.workdir, f'eval_{last}.json')) or {}
  replicas = evaluation.get('test', {}).get('replicas', [])
  mine = next((r for r in replicas if r['replica'] == run.replica), {})
  return 100 * (1 - mine['top1_flip_tta']) if 'top1_flip_tta' in mine else None


def _error(run: Run) -> float | None:
  return None if run.final_top1 is None else 100 * (1 - run.final_top1)


def _row(entry: Entry, runs: list[Run], projection: dict[str, Any] | None, source: int) -> str:
  seeds = seeds_of(entry, runs)
  stopped = sum(is_seed_of(run, entry) and run.stopped_early for run in runs)
  count = seeds_text(seeds, entry.seeds) + (f' (+{stopped} stopped early)' if stopped else '')
  if seeds:
    live = [run for run in seeds if run.diverged_at is None]
    has_flip = any(flip_tta_error(run) is not None for run in live)
    ours = measured(seeds, _error, 'a test eval')
    flip = measured(live, flip_tta_error, 'a flip-TTA eval') if has_flip else '-'
    data = joined(run.provenance.get('data', '?') for run in seeds)
    machine = joined(run.machine for run in seeds)
    date = joined(run.provenance.get('time', '?')[:10] for run in seeds)
  else:
    ours, flip, data, machine, date = 'not run', '-', '-', '-', '-'
    if projection and not projection['fits']:
      ours += (
        f': needs a longer window (one seed about {duration_text(projection["seconds_per_seed"])}'
        f' on {projection["device_kind"]})'
      )
  net = entry.net or net_name(entry.name.removesuffix('_pytorch'), entry.framework)
  return (
    f'| {net} | {entry.published_text} [{source}] | {ours} | {flip} | {count} | {data} | '
    f'{machine} | {date} |'
  )


def table(queue: tuple[Entry, ...], runs: list[Run], results_dir: str) -> list[str]:
  """The markdown table, a row per entry of queue in its order, then its sources and notes."""
  projections = newest_projections(results_dir)
  sources = list(dict.fromkeys(entry.source for entry in queue))
  lines = [
    '| net | published test error (%) | ours: test error | ours: flip TTA | seeds | data | machine '
    '| date |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for entry in queue:
    source = sources.index(entry.source) + 1
    lines.append(_row(entry, runs, projections.get(entry.name), source))
  return [*lines, '', ' '.join(f'[{i}] {s}.' for i, s in enumerate(sources, 1)) + ' ' + NOTE]


def _readme_parts(path: str) -> tuple[str, str, str]:
  """README's text up to BEGIN, between BEGIN and END, and from END."""
  with open(path) as f:
    text = f.read()
  if BEGIN not in text or END not in text:
    raise ValueError(f'{path} has no {BEGIN} ... {END} block to hold the table.')
  start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
  return text[:start], text[start:end], text[end:]


def readme_table(path: str = README) -> str:
  """The block of README at path that write_readme rewrites."""
  return _readme_parts(path)[1]


def block(lines: list[str]) -> str:
  """The README block of the table's lines."""
  return '\n' + '\n'.join(lines) + '\n'


def write_readme(lines: list[str], path: str = README) -> None:
  """Replaces README's block with the table's lines; nothing else in it changes."""
  before, _, after = _readme_parts(path)
  records.write_text(path, before + block(lines) + after)


def draw_figure6(queue: tuple[Entry, ...], runs: list[Run], results_dir: str) -> str:
  """Writes results_dir/figure6.png from the queue's Figure 6 entries that have seeds; returns
  what it did, naming the entries left out."""
  seeds = {net_name(entry.name): seeds_of(entry, runs) for entry in queue if entry.figure6}
  drawn = {name: group for name, group in seeds.items() if group}
  left_out = [name for name, group in seeds.items() if not group]
  if not drawn:
    missing = ', '.join(left_out) if left_out else 'its Figure 6 entries (the queue has none)'
    return f'{FIGURE} not drawn: no runs of {missing} under {results_dir}.'
  path = os.path.join(results_dir, FIGURE)
  figure6(drawn, left_out, path)
  return f'Wrote {path}' + (f', without {", ".join(left_out)} (not run).' if left_out else '.')


def report(results_dir: str, queue: tuple[Entry, ...], write: bool, draw: bool = True) -> None:
  """Prints the table of queue against the runs under results_dir; with write, puts it in
  README.md; with draw, draws Figure 6."""
  if not os.path.isdir(results_dir):
    raise ValueError(f'{results_dir} is not a folder: no results to compare.')
  runs = runs_under(results_dir)
  lines = table(queue, runs, results_dir)
  print('\n'.join(lines))
  if write:
    write_readme(lines)
    print(f'Wrote the table into {README}.', file=sys.stderr)
  if draw:
    print(draw_figure6(queue, runs, results_dir), file=sys.stderr)
