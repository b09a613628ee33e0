"""A disk that fills up mid-run: the save that finds no room stops the run with what to do, the
checkpoint before it is intact, and the same command resumes from it once there is room.

A file size limit (RLIMIT_FSIZE, tests/full_disk.py) stands in for the full disk: writes fail the
same way (EFBIG where a disk gives ENOSPC) on any machine and file system.
"""

import os
import re
import subprocess
import sys

from resnet_jax import records
from tests.launching import REPO, TIMEOUT_S, env, launch


def _train_rows(workdir) -> list[tuple[int, float, float]]:
  return [(r['step'], r['loss'], r['top1']) for r in records.read_metrics(str(workdir), 'train')]


def test_a_full_disk_stops_the_run_keeps_the_checkpoint_and_the_same_command_resumes(
  cifar_dir, tmp_path
):
  args = [
    '--config=configs/resnet_test.py',
    f'--config.dataset.data_dir={cifar_dir}',
    f'--workdir={tmp_path}',
  ]
  # The config's two saves, at steps 4 and 8 (test_launch.py compiles the same programs): the
  # second finds no room, which orbax reports when the run waits for it before exiting.
  full = subprocess.run(
    [sys.executable, '-m', 'tests.full_disk', '2', '8000', *args],
    cwd=REPO,
    env=env(4),
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )
  assert full.returncode == 2, full.stderr[-3000:]
  checkpoints = tmp_path / 'checkpoints'
  size = sum(f.stat().st_size for f in (checkpoints / '4').rglob('*') if f.is_file())
  # Not always the last line: orbax's threads may log one more as the process exits.
  (message,) = [line for line in full.stderr.splitlines() if line.startswith('Error: ')]
  assert re.fullmatch(
    re.escape(
      f'Error: Saving a checkpoint in {checkpoints} failed: a file would pass this process'
      "'s file size limit (EFBIG). It needs about "
    )
    + r'(\d+\.\d\d) MB'
    + re.escape(f' (the size of the checkpoint of step 4); the file system of {checkpoints} has ')
    + r'[\d,]+\.\d\d MB free\. '
    + re.escape(
      'The checkpoint of step 4 is intact: the run resumes from it. Raise the limit '
      '(ulimit -f), then run the same command again.'
    ),
    message,
  ), message
  needed = float(re.search(r'about (\S+) MB', message).group(1))
  assert abs(needed - size / 1e6) < 0.01, (needed, size)
  # One line per failure from orbax, no traceback, none of tensorstore's late callbacks.
  assert 'Traceback' not in full.stderr and 'Event loop is closed' not in full.stderr
  # Only the complete checkpoint counts; the log, written to the end, is whole.
  assert [n for n in os.listdir(checkpoints) if n.isdigit()] == ['4']
  rows = _train_rows(tmp_path)
  assert [step for step, *_ in rows] == [2, 4, 6, 8]

  resumed = launch(*args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resumed from the checkpoint of step 4.' in resumed.stderr
  # The failed save's temporary folder is gone with the space it took.
  assert sorted(os.listdir(checkpoints)) == ['4', '8']
  assert _train_rows(tmp_path) == rows  # the same steps again, bit for bit
