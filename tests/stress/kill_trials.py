"""Kill-and-resume trials: SIGKILL a training run mid-run, start it again, demand the same result.

Training randomness is a pure function of (seed, step) and a run resumes from its latest orbax
checkpoint, so a run that is killed (at any moment, even while a checkpoint is being written)
and started again must end bit for bit where an uninterrupted run ends. Each trial:

1. starts `python -m launch` in the repository root (the tiny resnet_test net on a fake 80-image
   CIFAR-10 archive, 24 steps, a checkpoint every 4) in a fresh workdir;
2. SIGKILLs it, either while a checkpoint is being written (a `<step>.orbax-checkpoint-tmp*`
   folder is polled for in workdir/checkpoints) or at a uniformly random time between the start
   and the expected end (the duration of an uninterrupted run with a warm compilation cache);
3. starts the same command again, optionally killing it once more, and lets the last one finish;
4. compares with the uninterrupted reference run: every array of the final checkpoint (bytes,
   dtype and shape), the final test eval row, every metrics.jsonl row (images_per_second, a
   timing, aside), and that metrics.jsonl holds no (step, split) twice.

Two uninterrupted runs are compared first: a difference there is not the resume's fault.

  python -m tests.stress.kill_trials --trials 20 --seed 0    # from the repository root

tests/test_kill_resume.py runs three trials with these same functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import random
import shutil
import sys
import tempfile
import time

from tests.stress.kills import (
  CHECKPOINT_EVERY,
  CHECKPOINT_STEPS,
  TOTAL_STEPS,
  Kill,
  KillAtTime,
  KillDuringSave,
  KillRecord,
  kill_child,
  temporary_identities,
)
from tests.stress.launch_child import Child
from tests.stress.run_comparison import (
  Comparison,
  Reference,
  compare,
  load_reference,
)

# resnet_test (steps_per_call 2, keep_checkpoints 2), long enough that kills land mid-run: six
# checkpoints, three evals. About 4-5 s a run on 2 CPU cores once the compilation cache is warm.
TRIAL_FLAGS = (
  '--config=configs/resnet_test.py',
  f'--config.num_train_steps={TOTAL_STEPS}',
  f'--config.checkpoint_every_steps={CHECKPOINT_EVERY}',
  '--config.log_every_steps=2',
  '--config.eval_every_steps=8',
)
CHILD_TIMEOUT_S = 240  # every child is bounded: a hung run fails its trial, not the caller


# ------------------------------------------------------------------------------------------------
# Running launch


def write_archive(directory: str | os.PathLike) -> pathlib.Path:
  """The fake CIFAR-10 tarball the trials train on (80 learnable train images, 20 test).

  The same archive as tests/conftest.py's cifar_dir fixture, which tests/test_kill_resume.py uses.
  """
  from tests import fake_cifar  # pylint: disable=g-import-not-at-top

  directory = pathlib.Path(directory)
  fake_cifar.write_cifar10(
    directory, records_per_batch=16, test_records=20, learnable=True, form='tarball'
  )
  return directory


def child_env(cache_dir: str | os.PathLike) -> dict[str, str]:
  """Four CPU devices, and a shared persistent compilation cache so children start fast."""
  return {
    **os.environ,
    'JAX_NUM_CPU_DEVICES': '4',
    'JAX_PLATFORMS': 'cpu',
    'JAX_COMPILATION_CACHE_DIR': os.path.abspath(cache_dir),
    'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
  }


def launch_command(data_dir: str | os.PathLike, workdir: str | os.PathLike) -> list[str]:
  """`python -m launch` with the trial flags; Child runs it in the repository root."""
  return [
    sys.executable,
    '-m',
    'launch',
    *TRIAL_FLAGS,
    f'--config.dataset.data_dir={os.path.abspath(data_dir)}',
    f'--workdir={os.path.abspath(workdir)}',
  ]


def start_run(data_dir, workdir, cache_dir, log_path, timeout_s: float = CHILD_TIMEOUT_S) -> Child:
  """The trial command in workdir, as a killable child logging to log_path."""
  return Child(launch_command(data_dir, workdir), child_env(cache_dir), log_path, timeout_s)


def run_to_end(
  data_dir, workdir, cache_dir, log_path, timeout_s: float = CHILD_TIMEOUT_S
) -> tuple[float, Child]:
  """An uninterrupted run; returns (wall seconds, the child). Raises if it fails."""
  child = start_run(data_dir, workdir, cache_dir, log_path, timeout_s)
  code = child.wait()
  if code != 0:
    raise RuntimeError(f'launch exited with {code}; log: {log_path}\n{child.log_tail()}')
  return child.elapsed(), child


# ------------------------------------------------------------------------------------------------
# Trials


@dataclasses.dataclass
class TrialResult:
  kills: list[KillRecord]
  resumed_from: list[int | None]  # per restart: the step it restored (None: from scratch)
  comparison: Comparison
  seconds: float

  @property
  def identical(self) -> bool:
    return self.comparison.identical


def run_trial(
  kills: list[Kill],
  data_dir,
  trial_dir,
  cache_dir,
  reference: Reference,
  timeout_s: float = CHILD_TIMEOUT_S,
) -> TrialResult:
  """A fresh workdir under trial_dir; each kill hits one run, then a last run finishes."""
  start = time.monotonic()
  trial_dir = pathlib.Path(trial_dir)
  workdir = trial_dir / 'work'
  trial_dir.mkdir(parents=True, exist_ok=True)
  records, resumed = [], []
  for i, kill in enumerate(kills):
    stale = temporary_identities(workdir)
    child = start_run(data_dir, workdir, cache_dir, trial_dir / f'run{i}.log', timeout_s)
    records.append(kill_child(child, workdir, kill, stale))
    if i:
      resumed.append(child.resumed_from())
  child = start_run(data_dir, workdir, cache_dir, trial_dir / f'run{len(kills)}.log', timeout_s)
  code = child.wait()
  if code != 0:
    raise RuntimeError(
      f'the resumed launch exited with {code}; log: {child.log_path}\n' + child.log_tail()
    )
  resumed.append(child.resumed_from())
  return TrialResult(records, resumed, compare(workdir, reference), time.monotonic() - start)


def make_reference(data_dir, base_dir, cache_dir, timeout_s: float = CHILD_TIMEOUT_S) -> Reference:
  """Two uninterrupted runs: the first fills the compilation cache, the second is timed.

  Both must end identically, or no kill trial could be: that is checked here.
  """
  base_dir = pathlib.Path(base_dir)
  run_to_end(data_dir, base_dir / 'reference0', cache_dir, base_dir / 'reference0.log', timeout_s)
  seconds, _ = run_to_end(
    data_dir, base_dir / 'reference', cache_dir, base_dir / 'reference.log', timeout_s
  )
  reference = load_reference(base_dir / 'reference', seconds)
  again = compare(base_dir / 'reference0', reference)
  if not again.identical:
    raise AssertionError(
      'two uninterrupted runs differ, so kill trials cannot be judged: ' + again.problems()
    )
  return reference


def plan_trials(n: int, seed: int, expected_s: float, max_kills: int = 2) -> list[list[Kill]]:
  """Seeded kill plans: even trials first kill during a save, odd ones at a random time.

  The first kills of even trials aim at the saves of steps 4, 8, 12, ... in turn (from scratch).

  Each trial gets 1..max_kills kills; those after the first are each a save or random kill.
  """
  rng = random.Random(seed)

  def draw(during_save: bool, stratum: int | None = None) -> Kill:
    if during_save:
      which = rng.random()
      if stratum is not None:  # spread the first save kills over all the checkpoint steps
        which = (stratum % len(CHECKPOINT_STEPS) + which) / len(CHECKPOINT_STEPS)
      return KillDuringSave(which=which, delay_s=rng.uniform(0, 0.05))
    return KillAtTime(seconds=rng.uniform(0, expected_s))

  plans = []
  for i in range(n):
    kills = [draw(i % 2 == 0, i // 2)]
    for _ in range(rng.randint(1, max_kills) - 1):
      kills.append(draw(rng.random() < 0.5))
    plans.append(kills)
  return plans


def _fmt_resumed(resumed):
  return ', '.join('scratch' if s is None else str(s) for s in resumed)


def table(results: list[TrialResult]) -> str:
  lines = [
    (
      '| trial | kills (planned, time after start: what it hit) | resumed from | '
      'arrays | final eval | rows | dups | identical |'
    ),
    '|---|---|---|---|---|---|---|---|',
  ]
  for i, r in enumerate(results):
    c = r.comparison
    lines.append(
      f'| {i} | {"; ".join(k.describe() for k in r.kills)} | {_fmt_resumed(r.resumed_from)} | '
      f'{"equal" if not c.array_diffs else f"{len(c.array_diffs)} differ"} | '
      f'{"equal" if c.final_eval_equal else "differs"} | '
      f'{"equal" if not c.row_diffs else f"{len(c.row_diffs)} differ"} | '
      f'{len(c.duplicates)} | {"yes" if r.identical else "NO"} |'
    )
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--trials', type=int, default=20)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--max_kills', type=int, default=2, help='kills per trial, at most')
  parser.add_argument(
    '--dir',
    default='',
    help='where workdirs go (default: a temporary folder, deleted at the end unless --keep)',
  )
  parser.add_argument('--keep', action='store_true', help='keep the workdirs and logs')
  parser.add_argument('--data_dir', default='', help='a CIFAR-10 archive (default: a fake one)')
  parser.add_argument(
    '--cache_dir', default='', help='the compilation cache children share (default: under --dir)'
  )
  parser.add_argument(
    '--timeout', type=float, default=CHILD_TIMEOUT_S, help='seconds each launch run may take'
  )
  args = parser.parse_args(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.ERROR)  # orbax's read-only and metadata notes on each restore

  base = pathlib.Path(args.dir or tempfile.mkdtemp(prefix='resnet_jax_kill_trials_'))
  base.mkdir(parents=True, exist_ok=True)
  try:
    data_dir = args.data_dir or write_archive(base / 'cifar10')
    cache_dir = args.cache_dir or base / 'compilation_cache'
    reference = make_reference(data_dir, base, cache_dir, args.timeout)
    print(
      f'reference: {reference.seconds:.2f} s uninterrupted, final step {reference.step}, '
      f'{len(reference.arrays)} arrays; two uninterrupted runs identical',
      flush=True,
    )
    results = []
    for i, kills in enumerate(
      plan_trials(args.trials, args.seed, reference.seconds, args.max_kills)
    ):
      result = run_trial(kills, data_dir, base / f'trial{i}', cache_dir, reference, args.timeout)
      results.append(result)
      c = result.comparison
      print(
        f'trial {i}: {"; ".join(k.describe() for k in result.kills)} -> resumed from '
        f'{_fmt_resumed(result.resumed_from)}: '
        f'{"identical" if result.identical else "DIFFERS: " + c.problems()} '
        f'({result.seconds:.1f} s)',
        flush=True,
      )
      if c.leftover_tmp or c.checkpoints != reference.checkpoints:
        print(
          f'  note: checkpoints left {c.checkpoints} (reference {reference.checkpoints}), '
          f'temporary folders left {c.leftover_tmp}',
          flush=True,
        )
    print()
    print(table(results))
    print()
    saves = sum(k.during_save is not None for r in results for k in r.kills)
    kills = sum(k.killed for r in results for k in r.kills)
    print(f'{kills} kills, {saves} of them while a checkpoint was being written')
    identical = sum(r.identical for r in results)
    print(f'{len(results)} trials, {identical} identical')
    return 0 if identical == len(results) else 1
  finally:
    if args.keep or args.dir:
      print(f'workdirs and logs: {base}')
    else:
      shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
  # The comparisons restore on the host: keep this process off any accelerator.
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  sys.exit(main())
