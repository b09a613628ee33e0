"""Advances the reproduction queue (tools/reproduction.py) by what fits one GPU window.

  python -m tools.reproduce status                      # the queue: seeds committed, what is next
  python -m tools.reproduce where                       # this GPU's results folder: h200_2026-12-02
  python -m tools.reproduce run --data_dir DIR --data_label 'CIFAR-10 (JPEG copy)' \\
      --budget_s 420 --out_dir OUT                       # one window's work
  python -m tools.reproduce run --entry resnet110 --budget_s 0 --data_dir DIR \\
      --data_label 'CIFAR-10' --out_dir results          # one entry to completion, on your GPU

`run` takes the first entry whose committed seeds (every run under --results that
reproduction.seeds_of counts) fall short of its target, skipping those that a window on this GPU
kind measured too short for one seed. It trains seeds not yet committed as launch.py would
(tools/parity.py --frameworks=torch for the PyTorch entry), the first one as a probe: after
--probe_steps steps it is stopped (SIGTERM: it saves) and timed, the whole run projected from its
step time, and the replica count chosen that fits what is left of the budget: 1 (the probe resumes
where it stopped), or more where the committed speed rows of this GPU (benchmarks/window.py's
speed.jsonl) say N replicas in one program fit (a fresh run of N). Then `--mode=eval` with flip
TTA on the final checkpoint, and the records, without checkpoints, are copied to
OUT/<gpu>_<date>/reproduction/<entry>/<workdir>/; an entry that cannot fit gets a
projection.json there instead, so later windows pass it by. It goes on with the next entry while
the budget lasts. Budget 0: no limit, no probe; the entry named by --entry runs all its missing
seeds. A run stopped by the budget is copied too, and counts for nothing (stopped_early).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

from benchmarks.window import device_kind, speed_rows
from resnet_jax import records
from tools import reproduction
from tools.entry_run import PREEMPTED_EXIT, Child, Projection, copy_records, probe
from tools.runs import Run, runs_under

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def results_folder(device_kind: str, when: datetime.date) -> str:
  """'h200_2026-12-02' for 'NVIDIA H200': the GPU's model number, or the kind's first word."""
  match = re.search(r'\b([A-Z]\d{2,4})\b', device_kind)
  name = match[1] if match else (device_kind.split() or ['device'])[0]
  return f'{name.lower()}_{when.isoformat()}'


def committed_runs(results_dirs: list[str]) -> list[Run]:
  """Every run under the folders, each once however many of the folders hold it."""
  runs = {}
  for folder in results_dirs:
    for run in runs_under(folder) if os.path.isdir(folder) else []:
      runs.setdefault((os.path.realpath(run.workdir), run.replica), run)
  return list(runs.values())


def benchmark_step_seconds(
  results_dir: str, device_kind: str, model: str, dtype: str, batch_size: int
) -> dict[int, float]:
  """N -> seconds per step of N replicas in one program, the newest committed speed rows."""
  steps = {}
  for row in sorted(speed_rows(pathlib.Path(results_dir)), key=lambda r: r.get('date', '')):
    if (
      row.get('device_kind') == device_kind
      and (row.get('model'), row.get('dtype'), row.get('batch_size')) == (model, dtype, batch_size)
      and row.get('framework') == 'JAX'
      and row.get('variant') == 'data path'
      and row.get('steps_per_call') == 1
      and not row.get('scan')
      and not row.get('xla_flags')
      and not row.get('error')
    ):
      steps[row['replicas']] = row['replicas'] * batch_size / row['images_per_second']
  return steps


def missing_seeds(entry: reproduction.Entry, runs: list[Run]) -> list[int]:
  """The lowest seeds entry has no counted run of, as many as it still needs."""
  have = {run.config['seed'] for run in reproduction.seeds_of(entry, runs)}
  need = entry.seeds - len(have)
  return [seed for seed in range(entry.seeds + len(have)) if seed not in have][: max(need, 0)]


def _write_projection(out: str, entry: str, proj: Projection, seconds: float, budget: float):
  os.makedirs(out, exist_ok=True)
  records.write_json(
    os.path.join(out, 'projection.json'),
    {
      'entry': entry,
      'device_kind': proj.device_kind,
      'date': datetime.date.today().isoformat(),
      'budget_s': budget,
      'seconds_per_seed': round(seconds),
      'step_ms': round(proj.step_s * 1e3, 3),
      'fits': seconds <= budget,
    },
  )


def entry_out(args: argparse.Namespace, entry: reproduction.Entry, device_kind: str) -> str:
  folder = results_folder(device_kind, datetime.date.today())
  return os.path.join(args.out_dir, folder, 'reproduction', entry.name)


def _finish(child: Child, deadline: float | None) -> str:
  """Runs child to its end, then the flip-TTA evaluation, and copies its records. Returns
  'trained', 'stopped' (by the deadline: it saved and exited) or 'failed'."""
  code = child.run(deadline)
  rows, timeline = child.rows(), records.read_timeline(child.metrics_dir)
  complete = bool(rows) and timeline is not None and rows[-1]['step'] == timeline['total_steps']
  if complete and child.entry.framework == 'jax':
    code = child.run(None, None, '--mode=eval', '--config.eval.flip_tta=True')
  outcome = (
    'trained' if complete and code == 0 else 'stopped' if code == PREEMPTED_EXIT else 'failed'
  )
  provenance = records.read_json(os.path.join(child.metrics_dir, records.PROVENANCE)) or {}
  out = entry_out(child.args, child.entry, provenance.get('device_kind', 'unknown'))
  last = rows[-1]['step'] if rows else 0
  said = {
    'trained': 'trained',
    'stopped': f'stopped by the budget at step {last}',
    'failed': f'failed (exit status {code}) at step {last}',
  }[outcome]
  print(
    f'reproduce: {child.entry.name} seeds {child.seed}..{child.seed + child.replicas - 1}: '
    f'{said}; records and train.log in {copy_records(child, out)}',
    flush=True,
  )
  return outcome


def advance(entry: reproduction.Entry, args: argparse.Namespace, runs: list[Run]) -> str:
  """One program of entry's missing seeds, if it fits; returns what happened: 'trained',
  'stopped' (the budget ran out), 'too long' (one seed cannot fit a window), 'no time' or
  'failed'."""
  seeds = missing_seeds(entry, runs)
  workdir = os.path.join(args.scratch, entry.name, f'seed{seeds[0]}')
  child = Child(entry, workdir, seeds[0], 1, args)
  if not args.budget_s:
    replicas = 1 if entry.framework == 'pytorch' else min(args.replicas, len(seeds))
    child = dataclasses.replace(
      child, replicas=replicas, workdir=f'{workdir}-{seeds[0] + replicas - 1}'
    )
    return _finish(child, None)
  start = time.time()
  proj = probe(child, args.deadline)
  if proj is None:
    kept = copy_records(child, entry_out(args, entry, args.device_kind))
    print(f'reproduce: {entry.name}: the probe logged no timed step; see {kept}/train.log')
    return 'failed'
  out = entry_out(args, entry, proj.device_kind)
  remaining = proj.seconds(proj.total_steps - proj.done_steps, proj.step_s, 1)
  per_seed = time.time() - start + remaining
  _write_projection(out, entry.name, proj, per_seed, args.budget_s)
  if per_seed > args.budget_s:
    print(
      f'reproduce: {entry.name} needs a longer window: one seed about {per_seed / 60:.1f} min '
      f'on {proj.device_kind} ({proj.step_s * 1e3:.2f} ms a step), over the '
      f'{args.budget_s / 60:.1f} min budget.'
    )
    return 'too long'
  left = args.deadline - time.time()
  config = records.read_config(child.metrics_dir)
  bench = benchmark_step_seconds(
    args.results,
    proj.device_kind,
    config['model']['name'],
    config['model']['dtype'],
    config['batch_size'],
  )
  fits = [
    n
    for n in range(2, len(seeds) + 1)
    if entry.framework == 'jax'
    and {1, n} <= bench.keys()
    and proj.seconds(proj.total_steps, proj.step_s * bench[n] / bench[1], n) <= left
  ]
  if fits:  # more seeds in one fresh program than the probe's one resumed
    shutil.rmtree(workdir)
    child = dataclasses.replace(
      child, replicas=fits[-1], workdir=f'{workdir}-{seeds[0] + fits[-1] - 1}'
    )
  elif remaining > left:
    return 'no time'
  return _finish(child, args.deadline)


def _too_long(args: argparse.Namespace) -> set[str]:
  """Entries whose newest projection on this GPU kind says one seed takes longer than this
  budget (none with --entry): a longer window may fit what a shorter one did not."""
  if args.entry or not args.budget_s:
    return set()
  newest = reproduction.newest_projections(args.results, args.device_kind)
  return {name for name, p in newest.items() if p['seconds_per_seed'] > args.budget_s}


def next_entry(args: argparse.Namespace, runs: list[Run], passed: set[str]):
  """The first entry short of seeds that this call has not passed by, or None."""
  for entry in reproduction.QUEUES[args.queue]:
    if args.entry and entry.name != args.entry:
      continue
    if entry.name in passed or not missing_seeds(entry, runs):
      continue
    return entry
  return None


def run(args: argparse.Namespace) -> int:
  args.deadline = time.time() + args.budget_s if args.budget_s else None
  args.device_kind = device_kind(dict(os.environ))
  if args.device_kind is None:
    print('reproduce: JAX found no device (above); nothing was run.', file=sys.stderr)
    return 1
  # The runs' workdirs and their checkpoints: what is kept is copied out of it.
  with tempfile.TemporaryDirectory(prefix='reproduce_') as args.scratch:
    args.cache_dir = args.cache_dir or os.path.join(args.scratch, 'compilation_cache')
    failed = _advance_while_the_budget_lasts(args)
  if failed:
    print(f'reproduce: failed: {", ".join(failed)} (their train.log says why)', file=sys.stderr)
  return 1 if failed else 0


def _advance_while_the_budget_lasts(args: argparse.Namespace) -> list[str]:
  """Advances entry after entry; returns those that failed."""
  passed: set[str] = set()
  failed = []
  while True:
    runs = committed_runs([args.results, args.out_dir])
    entry = next_entry(args, runs, passed | _too_long(args))
    if entry is None:
      print('reproduce: no entry left that this window can advance.')
      break
    if args.deadline and args.deadline - time.time() < args.min_left_s:
      print(f'reproduce: under {args.min_left_s} s left; {entry.name} is next.')
      break
    outcome = advance(entry, args, runs)
    if outcome in ('stopped', 'no time'):
      print(f'reproduce: the budget is spent; {entry.name} is next.')
      break
    if outcome != 'trained':
      passed.add(entry.name)
      failed += [entry.name] if outcome == 'failed' else []
  return failed


def status(args: argparse.Namespace) -> int:
  """Each entry's committed seeds and its newest projection, of any GPU kind."""
  runs = committed_runs([args.results])
  newest = reproduction.newest_projections(args.results)
  print('| entry | framework | config | seeds | newest projection |')
  print('|---|---|---|---|---|')
  for entry in reproduction.QUEUES[args.queue]:
    projected = '-'
    if entry.name in newest:
      p = newest[entry.name]
      projected = (
        f'{p["seconds_per_seed"] / 60:.1f} min a seed on {p["device_kind"]} ({p["date"]})'
        + ('' if p['fits'] else ': needs a longer window')
      )
    have = len(reproduction.seeds_of(entry, runs))
    print(
      f'| {entry.name} | {entry.framework} | {" ".join(entry.launch_args())} | '
      f'{have} / {entry.seeds} | {projected} |'
    )
  return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
  sub.add_parser('where', help="prints this machine's results folder name, e.g. h200_2026-12-02")
  for name in ('status', 'run'):
    command = sub.add_parser(name)
    command.add_argument('--queue', choices=sorted(reproduction.QUEUES), default='paper')
    command.add_argument('--results', default=os.path.join(REPO, 'results'))
  run_parser = sub.choices['run']
  run_parser.add_argument('--data_dir', required=True, help='the archive source: CIFAR-10 .bin')
  run_parser.add_argument(
    '--data_label',
    required=True,
    choices=('CIFAR-10 (JPEG copy)', 'CIFAR-10'),
    help='what --data_dir holds: written beside every number',
  )
  run_parser.add_argument('--out_dir', required=True, help='writes OUT/<gpu>_<date>/reproduction')
  run_parser.add_argument('--budget_s', type=float, default=420, help='0: no limit, no probe')
  run_parser.add_argument('--entry', help='only this entry (also one a window found too long)')
  run_parser.add_argument('--replicas', type=int, default=1, help='per program, with budget 0')
  run_parser.add_argument('--probe_steps', type=int, default=300)
  run_parser.add_argument('--min_left_s', type=float, default=60, help='start nothing with less')
  run_parser.add_argument('--cache_dir', help='compilation cache (default: a fresh one)')
  args = parser.parse_args(argv)
  names = [e.name for e in reproduction.QUEUES[getattr(args, 'queue', 'paper')]]
  if getattr(args, 'entry', None) and args.entry not in names:
    parser.error(f'--entry {args.entry} is not in the {args.queue} queue: {", ".join(names)}')
  if args.command == 'run' and (args.budget_s < 0 or args.replicas < 1 or args.probe_steps < 1):
    parser.error('--budget_s must be at least 0, --replicas and --probe_steps at least 1')
  if args.command == 'run' and not args.budget_s and not args.entry:
    parser.error('--budget_s 0 (no limit) needs --entry: which entry to run to completion')
  return args


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  if args.command == 'where':
    kind = device_kind(dict(os.environ))
    print(results_folder(kind or 'unknown', datetime.date.today()))
    return 0 if kind else 1
  return status(args) if args.command == 'status' else run(args)


if __name__ == '__main__':
  sys.exit(main())
