"""Advances the reproduction queue (tools/reproduction.py) by what fits one GPU window.

  python -m tools.reproduce status                      # the queue: seeds committed, what is next
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
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from resnet_jax import records
from tools import reproduction
from tools.runs import Run, load_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = (records.CONFIG, records.METRICS, records.PROVENANCE, records.TIMELINE, 'train.log')
TEST_IMAGES = 10_000
STOP_WAIT_S = 120  # for a run told to stop to save and exit, before it is killed
MARGIN = 1.1  # on every projection: evaluations and saves are estimated, not measured


def results_folder(device_kind: str, when: datetime.date) -> str:
  """'h200_2026-12-02' for 'NVIDIA H200': the GPU's model number, or the kind's first word."""
  match = re.search(r'\b([A-Z]\d{2,4})\b', device_kind)
  name = match[1] if match else (device_kind.split() or ['device'])[0]
  return f'{name.lower()}_{when.isoformat()}'


def committed_runs(results_dirs: list[str]) -> list[Run]:
  """Every run under the folders (each workdir once, however many of them hold it)."""
  runs = []
  paths = {
    os.path.realpath(path)
    for results_dir in results_dirs
    for path in glob.glob(os.path.join(results_dir, '**', records.CONFIG), recursive=True)
  }
  for path in sorted(paths):
    try:
      runs += load_runs(os.path.dirname(path))
    except ValueError as e:  # a workdir that logged nothing is no seed of anything
      print(f'reproduce: skipped {os.path.dirname(path)}: {e}', file=sys.stderr)
  return runs


def newest_projection(results_dir: str, entry: str, device_kind: str) -> dict | None:
  found = [
    records.read_json(path)
    for path in glob.glob(
      os.path.join(results_dir, '**', 'reproduction', entry, 'projection.json'), recursive=True
    )
  ]
  found = [p for p in found if p and p.get('device_kind') == device_kind]
  return max(found, key=lambda p: p['date'], default=None)


def benchmark_step_seconds(
  results_dir: str, device_kind: str, model: str, dtype: str, batch_size: int
) -> dict[int, float]:
  """N -> seconds per step of N replicas in one program, the newest committed speed rows."""
  rows = []
  for path in glob.glob(os.path.join(results_dir, '**', 'speed.jsonl'), recursive=True):
    with open(path) as f:
      rows += [json.loads(line) for line in f if line.strip()]
  steps = {}
  for row in sorted(rows, key=lambda r: r.get('date', '')):
    if (
      row.get('device_kind') == device_kind
      and (row.get('model'), row.get('dtype'), row.get('batch_size')) == (model, dtype, batch_size)
      and row.get('framework') == 'JAX'
      and row.get('variant') == 'data path'
      and row.get('steps_per_call') == 1
      and not row.get('xla_flags')
      and not row.get('error')
    ):
      steps[row['replicas']] = row['replicas'] * batch_size / row['images_per_second']
  return steps


@dataclasses.dataclass
class Child:
  """One training or evaluation process of an entry: its command and workdir."""

  entry: reproduction.Entry
  workdir: str
  seed: int
  replicas: int
  args: argparse.Namespace

  @property
  def metrics_dir(self) -> str:  # tools/parity.py writes its PyTorch run one folder down
    return (
      os.path.join(self.workdir, 'torch') if self.entry.framework == 'pytorch' else self.workdir
    )

  def command(self, *extra: str) -> list[str]:
    main = ['-m', 'tools.parity', '--frameworks=torch'] if self.entry.framework == 'pytorch' else []
    return [
      sys.executable,
      *(main or ['launch.py']),
      *self.entry.launch_args(),
      f'--config.seed={self.seed}',
      *([f'--config.num_replicas={self.replicas}'] if self.entry.framework == 'jax' else []),
      '--config.dataset.source=archive',
      f'--config.dataset.data_dir={self.args.data_dir}',
      f'--config.compilation_cache_dir={self.args.cache_dir}',
      '--config.keep_checkpoints=1',
      f'--workdir={self.workdir}',
      *extra,
    ]

  def rows(self) -> list[dict]:
    try:
      return records.read_metrics(self.metrics_dir, 'train')
    except FileNotFoundError:
      return []

  def run(self, deadline: float | None, stop_at_step: int | None = None, *extra: str) -> int:
    """Runs it to the end, or until stop_at_step is logged or the deadline: then SIGTERM (the
    run saves a checkpoint and exits). Returns the exit status."""
    os.makedirs(self.workdir, exist_ok=True)
    with open(os.path.join(self.workdir, 'train.log'), 'a') as log:
      child = subprocess.Popen(self.command(*extra), cwd=REPO, stdout=log, stderr=log)
      while child.poll() is None:
        time.sleep(0.5)
        reached = stop_at_step and any(r['step'] >= stop_at_step for r in self.rows())
        if reached or (deadline and time.time() > deadline):
          child.send_signal(signal.SIGTERM)
          try:
            child.wait(STOP_WAIT_S)
          except subprocess.TimeoutExpired:
            child.kill()
          break
      return child.wait()


@dataclasses.dataclass
class Projection:
  """What a probe measured, and what the rest of its run should cost."""

  device_kind: str
  step_s: float  # one step of one replica
  overhead_s: float  # start, data, compilation: what a process pays before its first step
  total_steps: int
  done_steps: int
  evals: int
  batch_size: int

  def seconds(self, steps: int, step_s: float, replicas: int) -> float:
    """A process that trains `steps` steps of `replicas` replicas at step_s, then the flip-TTA
    evaluation (its own process); an evaluation costs a third of a step an image."""
    eval_s = self.evals * replicas * TEST_IMAGES * self.step_s / self.batch_size / 3
    return MARGIN * (self.overhead_s + steps * step_s + eval_s) + self.overhead_s


def probe(child: Child, deadline: float | None) -> Projection | None:
  """Starts child's run and stops it once it logged --probe_steps steps; None if it never did."""
  start = time.time()
  child.run(deadline, child.args.probe_steps)
  rows = [r for r in child.rows() if r.get('images_per_second')]
  timeline = records.read_timeline(child.metrics_dir)
  provenance = records.read_json(os.path.join(child.metrics_dir, records.PROVENANCE))
  if not rows or not timeline or not provenance:
    return None
  last = rows[-1]
  step_s = child.replicas * timeline_batch(child) / last['images_per_second']
  # Seen when the probe's row was: at most a poll later than it was written.
  wall = time.time() - start
  return Projection(
    provenance['device_kind'],
    step_s,
    max(0.0, wall - last['step'] * step_s),
    timeline['total_steps'],
    last['step'],
    timeline['total_steps'] // timeline['eval_every'],
    timeline_batch(child),
  )


def timeline_batch(child: Child) -> int:
  return records.read_config(child.metrics_dir)['batch_size']


def copy_records(child: Child, out: str) -> str:
  """The run's records (and its eval JSON) under out, without checkpoints; returns the folder."""
  dest = os.path.join(out, os.path.basename(child.workdir))
  os.makedirs(dest, exist_ok=True)
  names = [*RECORDS, *(os.path.basename(p) for p in glob.glob(f'{child.metrics_dir}/eval_*.json'))]
  for name in names:
    if os.path.exists(os.path.join(child.metrics_dir, name)):
      shutil.copy2(os.path.join(child.metrics_dir, name), dest)
  if child.metrics_dir != child.workdir and os.path.exists(f'{child.workdir}/train.log'):
    shutil.copy2(f'{child.workdir}/train.log', dest)
  path = os.path.join(dest, records.PROVENANCE)
  if os.path.exists(path):  # what this tool knows and the run could not
    provenance = records.read_json(path)
    records.write_json(
      path, {**provenance, 'data': child.args.data_label, 'reproduction_entry': child.entry.name}
    )
  return dest


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


def _finish(child: Child, deadline: float | None) -> bool:
  """Runs child to its end, then the flip-TTA evaluation; copies its records; True if complete."""
  child.run(deadline)
  rows, timeline = child.rows(), records.read_timeline(child.metrics_dir)
  complete = bool(rows) and timeline is not None and rows[-1]['step'] == timeline['total_steps']
  if complete and child.entry.framework == 'jax':
    child.run(None, None, '--mode=eval', '--config.eval.flip_tta=True')
  provenance = records.read_json(os.path.join(child.metrics_dir, records.PROVENANCE)) or {}
  out = entry_out(child.args, child.entry, provenance.get('device_kind', 'unknown'))
  print(
    f'reproduce: {child.entry.name} seeds {child.seed}..{child.seed + child.replicas - 1}: '
    + (
      'trained' if complete else f'stopped by the budget at step {rows[-1]["step"] if rows else 0}'
    )
    + f'; records in {copy_records(child, out)}',
    flush=True,
  )
  return complete


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
    return 'trained' if _finish(child, None) else 'failed'
  start = time.time()
  proj = probe(child, args.deadline)
  if proj is None:
    print(f'reproduce: {entry.name}: the probe logged no timed step; see {workdir}/train.log')
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
  return 'trained' if _finish(child, args.deadline) else 'stopped'


def device_kind() -> str:
  """This machine's first JAX device kind, asked of a child so this process holds no GPU."""
  code = 'import jax; print(jax.devices()[0].device_kind)'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  return out.stdout.strip().splitlines()[-1]


def _too_long(args: argparse.Namespace) -> set[str]:
  """Entries a window on this GPU kind measured too short for one seed (none with --entry)."""
  if args.entry or not args.budget_s:
    return set()
  return {
    entry.name
    for entry in reproduction.QUEUES[args.queue]
    if (newest_projection(args.results, entry.name, args.device_kind) or {}).get('fits') is False
  }


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
  args.scratch = tempfile.mkdtemp(prefix='reproduce_')
  args.cache_dir = args.cache_dir or os.path.join(args.scratch, 'compilation_cache')
  args.device_kind = device_kind()
  passed: set[str] = set()
  while True:
    runs = committed_runs([args.results, args.out_dir])
    entry = next_entry(args, runs, passed | _too_long(args))
    if entry is None:
      print('reproduce: no entry left that this window can advance.')
      return 0
    if args.deadline and args.deadline - time.time() < args.min_left_s:
      print(f'reproduce: under {args.min_left_s} s left; {entry.name} is next.')
      return 0
    outcome = advance(entry, args, runs)
    if outcome in ('stopped', 'no time'):
      print(f'reproduce: the budget is spent; {entry.name} is next.')
      return 0
    if outcome != 'trained':
      passed.add(entry.name)


def status(args: argparse.Namespace) -> int:
  """Each entry's committed seeds and the newest projection of any GPU kind."""
  runs = committed_runs([args.results])
  print('| entry | framework | config | seeds | newest projection |')
  print('|---|---|---|---|---|')
  for entry in reproduction.QUEUES[args.queue]:
    found = [
      records.read_json(p)
      for p in glob.glob(
        os.path.join(args.results, '**', 'reproduction', entry.name, 'projection.json'),
        recursive=True,
      )
    ]
    newest = max(found, key=lambda p: p['date'], default=None)
    projected = '-'
    if newest:
      projected = (
        f'{newest["seconds_per_seed"] / 60:.1f} min a seed on {newest["device_kind"]} '
        f'({newest["date"]})' + ('' if newest['fits'] else ': needs a longer window')
      )
    have = len(reproduction.seeds_of(entry, runs))
    overrides = ' '.join(entry.overrides)
    print(
      f'| {entry.name} | {entry.framework} | `{entry.config}` {overrides} | '
      f'{have} / {entry.seeds} | {projected} |'
    )
  return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
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
  names = [e.name for e in reproduction.QUEUES[args.queue]]
  if getattr(args, 'entry', None) and args.entry not in names:
    parser.error(f'--entry {args.entry} is not in the {args.queue} queue: {", ".join(names)}')
  if args.command == 'run' and (args.budget_s < 0 or args.replicas < 1 or args.probe_steps < 1):
    parser.error('--budget_s must be at least 0, --replicas and --probe_steps at least 1')
  if args.command == 'run' and not args.budget_s and not args.entry:
    parser.error('--budget_s 0 (no limit) needs --entry: which entry to run to completion')
  return args


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  return status(args) if args.command == 'status' else run(args)


if __name__ == '__main__':
  sys.exit(main())
