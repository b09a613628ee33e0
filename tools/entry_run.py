"""One entry's processes for tools/reproduce.py: train (stopping on a step or a deadline), probe
the step time, project the rest of the run, and copy its records without checkpoints.

A process is launch.py (or tools/parity.py --frameworks=torch for the PyTorch entry) with the
entry's config and overrides plus bookkeeping ones only (seed, replicas, data, cache, kept
checkpoints), so what it trains is the entry's recipe and its records say so.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

from resnet_jax import records
from tools import reproduction

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = (records.CONFIG, records.METRICS, records.PROVENANCE, records.TIMELINE, 'train.log')
TEST_IMAGES = 10_000
STOP_WAIT_S = 120  # for a run told to stop to save and exit, before it is killed
PREEMPTED_EXIT = 75  # launch.py's status for a run that saved and stopped on request
MARGIN = 1.05  # on every projection: evaluations and saves are estimated, not measured


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
          # tools/parity.py's PyTorch side dies of SIGTERM; it resumes from its last epoch.
          return PREEMPTED_EXIT if child.returncode == -signal.SIGTERM else child.wait()
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
