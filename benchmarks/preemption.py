"""Preemption latency: from SIGTERM or SIGINT to the exit of a run, its checkpoint committed.

Each trial starts `python launch.py` in a fresh workdir (a run far longer than the trial, no
eval or checkpoint of its own before the signal), waits until it trains (its 'First call'
line), waits --delays seconds more and sends the signal; the trial 'compile' sends it as soon as
the run announces its start, while the first chunk compiles (the first trial, so its
compilation cache is cold). A run exits with status 75 once its checkpoint is written; the
trial times that exit and reads the child's log and workdir:

  progress step  the step of the last progress line before the signal (a lower bound on where
                 the devices were; lines come every few seconds)
  seen at        the step the devices had finished when the loop saw the signal ('SIGTERM
                 received at step N'): the end of the chunk running at the signal
  saved          the checkpoint's step: `seen at` plus the chunk already queued (at most one)
  exit s         seconds from the signal to the exit, the checkpoint committed
  chunk s        steps_per_call * batch / img/s of the run's last progress line: a chunk's time

The bound: exit s <= the rest of the running chunk + one chunk + the save (and, for 'compile',
the rest of the compilation). From the repository root:

  python -m benchmarks.preemption                         # resnet20 on a fake archive
  python -m benchmarks.preemption --data_dir DIR          # on a CIFAR-10 archive folder there
  python -m benchmarks.preemption --config configs/resnet_test.py --delays 1 --signals SIGTERM

The child runs with this process's environment (JAX_PLATFORMS, JAX_NUM_CPU_DEVICES, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import signal
import sys
import tempfile
import time

from resnet_jax import records
from tests import fake_cifar
from tests.stress.launch_child import Child

PREEMPTED_EXIT = 75  # launch.py's status for a run stopped after saving
TRIAL_TIMEOUT_S = 900
_PROGRESS = re.compile(r'step +(\d+)/\d+ .*?([\d.]+) img/s')  # log rows and live lines
_SEEN = re.compile(r'received at step (\d+): saving a checkpoint at step (\d+)')
_STOPPED = re.compile(r'after saving the checkpoint of step (\d+)')


@dataclasses.dataclass
class Trial:
  signal: str
  when: str  # 'compile', or seconds after the first call
  progress_step: int | None = None
  seen_at: int | None = None
  saved: int | None = None
  exit_s: float | None = None
  chunk_s: float | None = None
  status: str = ''


def _wait_for(child: Child, text: str) -> None:
  while text not in child.log_text():
    child.check_timeout()
    if not child.alive():
      raise RuntimeError(f'launch ended before {text!r}:\n{child.log_tail()}')
    time.sleep(0.05)


def _chunk_seconds(workdir: pathlib.Path, log: str) -> float | None:
  """One chunk's time at the rate of the run's last progress line (it may follow the signal)."""
  rates = _PROGRESS.findall(log)
  config, timeline = records.read_config(str(workdir)), records.read_timeline(str(workdir))
  if not rates or config is None or timeline is None:
    return None
  images = timeline['steps_per_call'] * config['batch_size'] * config['num_replicas']
  return images / float(rates[-1][1])


def run_trial(command: list[str], workdir: pathlib.Path, trial: Trial, logs: pathlib.Path) -> Trial:
  log_path = logs / f'{trial.signal}_{trial.when}.log'
  child = Child([*command, f'--workdir={workdir}'], dict(os.environ), log_path, TRIAL_TIMEOUT_S)
  try:
    if trial.when == 'compile':
      _wait_for(child, 'Starting fresh')
    else:
      _wait_for(child, 'First call')
      time.sleep(float(trial.when))
    before = child.log_text()
    sent = time.monotonic()
    child.proc.send_signal(getattr(signal, trial.signal))
    code = child.wait()
    trial.exit_s = time.monotonic() - sent
  finally:
    child.kill()
  log = child.log_text()
  steps = _PROGRESS.findall(before)
  trial.progress_step = int(steps[-1][0]) if steps else None
  trial.chunk_s = _chunk_seconds(workdir, log)
  if seen := _SEEN.search(log):
    trial.seen_at = int(seen.group(1))
  stopped = _STOPPED.search(log)
  if stopped:
    trial.saved = int(stopped.group(1))
  committed = stopped and (workdir / 'checkpoints' / stopped.group(1)).is_dir()
  if code == PREEMPTED_EXIT and committed:
    trial.status = 'saved'
  else:
    trial.status = f'exit {code}' + ('' if committed else ', no checkpoint')
  return trial


def table(trials: list[Trial]) -> str:
  def cell(value, spec=''):
    return '-' if value is None else format(value, spec)

  lines = [
    '| signal | sent | progress step | seen at | saved | exit s | chunk s | status |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for t in trials:
    sent = 'during compilation' if t.when == 'compile' else f'{t.when} s after the first call'
    lines.append(
      f'| {t.signal} | {sent} | {cell(t.progress_step)} | {cell(t.seen_at)} | {cell(t.saved)} '
      f'| {cell(t.exit_s, ".1f")} | {cell(t.chunk_s, ".2f")} | {t.status} |'
    )
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/resnet20.py')
  parser.add_argument(
    '--data_dir', default='', help='a CIFAR-10 archive folder; default: a fake one (5120 train)'
  )
  parser.add_argument('--signals', default='SIGTERM,SIGINT')
  parser.add_argument('--delays', default='5,20', help='seconds after the first call')
  parser.add_argument('--no_compile_trial', action='store_true')
  parser.add_argument('--out', default='', help='also write the table to this file')
  parser.add_argument('overrides', nargs='*', help='more --config.field=value for every run')
  args = parser.parse_args(argv)
  scratch = pathlib.Path(tempfile.mkdtemp(prefix='resnet_jax_preemption_'))
  data_dir = args.data_dir
  if not data_dir:
    data_dir = str(scratch / 'cifar10')
    # 40 steps an epoch at batch 128: a multiple of steps_per_call, so one call length.
    fake_cifar.write_cifar10(pathlib.Path(data_dir), records_per_batch=1024, test_records=512)
  never = 10**6  # no eval or periodic checkpoint during a trial
  command = [
    sys.executable,
    'launch.py',
    f'--config={args.config}',
    '--config.dataset.source=archive',
    f'--config.dataset.data_dir={os.path.abspath(data_dir)}',
    f'--config.num_train_steps={never}',
    '--config.eval_every_epochs=0',
    f'--config.eval_every_steps={never}',
    '--config.checkpoint_every_epochs=0',
    f'--config.checkpoint_every_steps={never}',
    f'--config.compilation_cache_dir={scratch / "cache"}',
    *args.overrides,
  ]
  signals = args.signals.split(',')
  trials = [] if args.no_compile_trial else [Trial(signals[0], 'compile')]
  trials += [Trial(s, w) for w in args.delays.split(',') if w for s in signals]
  logs = scratch / 'logs'
  logs.mkdir()
  for i, trial in enumerate(trials):
    run_trial(command, scratch / f'run_{i}', trial, logs)
    print(trial, file=sys.stderr, flush=True)
  out = table(trials)
  print(out)
  print(f'logs: {logs}')
  if args.out:
    pathlib.Path(args.out).write_text(out + '\n')


if __name__ == '__main__':
  main()
