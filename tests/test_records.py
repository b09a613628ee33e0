"""metrics.jsonl survives what interrupts its writer: a kill mid-rewrite, a torn line, no room."""

import errno
import json
import logging
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from resnet_jax import errors, records
from resnet_jax.errors import UserError
from tests.launching import REPO

# A child that opens the log of a resumed run (which rewrites metrics.jsonl without the rows past
# its step) and stops inside the rewrite until it is killed: half-way through writing the
# temporary file, or with the file written and synced but not yet renamed over the old one.
_KILLED_IN_THE_REWRITE = """
import os, sys, time
from resnet_jax import records

workdir, moment, step = sys.argv[1], sys.argv[2], int(sys.argv[3])

def stop_here():
  print('stopped', flush=True)
  time.sleep(30)

class HalfWritten:
  def __init__(self, f):
    self.f = f
  def __enter__(self):
    return self
  def __exit__(self, *exc):
    self.f.close()
  def write(self, data):
    self.f.write(data[: len(data) // 2])
    self.f.flush()
    stop_here()

def open_to_write_half(path, mode='r', **kwargs):
  return HalfWritten(open(path, mode)) if mode == 'wb' else open(path, mode, **kwargs)

def replace_later(source, destination, replace=os.replace):
  stop_here()
  replace(source, destination)

if moment == 'writing':
  records.open = open_to_write_half
else:
  os.replace = replace_later
records.MetricsLog(workdir, step, seeds=())
"""

# A child that writes a row to a metrics.jsonl whose next version passes the file size limit.
_WRITES_PAST_THE_LIMIT = """
import os, resource, signal, sys
from resnet_jax import records
from resnet_jax.errors import UserError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG, as a shell lets it
log = records.MetricsLog(sys.argv[1], 1000, seeds=[0])
size = os.path.getsize(log.path)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, resource.RLIM_INFINITY))
try:
  log.write(1001, 'train', [{'loss': 0.5, 'top1': 0.25}])
except UserError as e:
  print(e)
"""


def _lines(steps) -> list[str]:
  return [json.dumps({'step': s, 'split': 'train', 'loss': 1 / s}) + '\n' for s in steps]


def _temporary_files(workdir: pathlib.Path) -> list[pathlib.Path]:
  return sorted(workdir.glob(records.METRICS + '.tmp-*'))


@pytest.mark.parametrize('moment', ['writing', 'renaming'])
def test_a_kill_inside_the_rewrite_leaves_the_old_file_whole(tmp_path, moment):
  lines = _lines(range(1, 20_001))  # about 1 MB
  path = tmp_path / records.METRICS
  path.write_text(''.join(lines))
  child = subprocess.Popen(
    [sys.executable, '-c', _KILLED_IN_THE_REWRITE, str(tmp_path), moment, '10000'],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    stopped = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
  finally:
    child.kill()
    _, stderr = child.communicate(timeout=30)
  assert stopped == 'stopped\n', stderr
  assert path.read_text() == ''.join(lines)
  (temporary,) = _temporary_files(tmp_path)  # what the kill left behind
  assert temporary.stat().st_size == len(''.join(lines[:10_000])) // (
    2 if moment == 'writing' else 1
  )
  # The next run's rewrite completes, and clears what the killed one left.
  records.MetricsLog(str(tmp_path), 10_000, seeds=())
  assert path.read_text() == ''.join(lines[:10_000])
  assert not _temporary_files(tmp_path)


def test_a_torn_last_line_is_left_out_with_a_warning_and_the_rewrite_drops_it(tmp_path, caplog):
  lines = _lines(range(1, 6))
  path = tmp_path / records.METRICS
  path.write_text(''.join(lines) + lines[0][:20])  # a sixth row cut short, as a full disk leaves it
  with caplog.at_level(logging.WARNING):
    rows = records.read_metrics(str(tmp_path))
  assert [r['step'] for r in rows] == [1, 2, 3, 4, 5]
  (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert f'Left out the last line of {path}: it is cut short' in warning
  assert 'the 5 rows before it are complete' in warning
  records.MetricsLog(str(tmp_path), 5, seeds=())
  assert path.read_text() == ''.join(lines)


def test_a_damaged_line_before_the_last_stops_with_its_number(tmp_path):
  lines = _lines(range(1, 6))
  lines[2] = lines[2][:20] + '\n'
  (tmp_path / records.METRICS).write_text(''.join(lines))
  with pytest.raises(UserError, match=r'metrics.jsonl, line 3, is not a JSON row') as error:
    records.MetricsLog(str(tmp_path), 5, seeds=())
  assert 'Repair or delete that line, or move the file aside' in str(error.value)


def test_a_write_that_finds_no_room_says_so_and_leaves_the_file_as_it_was(tmp_path):
  path = tmp_path / records.METRICS
  before = ''.join(_lines(range(1, 201)))
  path.write_text(before)
  result = subprocess.run(
    [sys.executable, '-c', _WRITES_PAST_THE_LIMIT, str(tmp_path)],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  message = result.stdout.strip()
  assert re.fullmatch(
    re.escape(f"Writing {path} failed: a file would pass this process's file size limit (EFBIG).")
    + r' It needs about 0\.01 MB \(the new file\); the file system of '
    + re.escape(str(tmp_path))
    + r' has [\d,]+\.\d\d MB free\. metrics\.jsonl is as it was before\. Raise the limit '
    r'\(ulimit -f\), then run the same command again\.',
    message,
  ), message
  assert path.read_text() == before
  assert not _temporary_files(tmp_path)


def _raised_from(cause: BaseException) -> ValueError:
  try:
    try:
      raise cause
    except BaseException as e:
      raise ValueError('orbax: a commit failed') from e
  except ValueError as e:
    return e


@pytest.mark.parametrize(
  'error, code',
  [
    (OSError(errno.ENOSPC, 'No space left on device'), errno.ENOSPC),
    (_raised_from(OSError(errno.EDQUOT, 'Disk quota exceeded')), errno.EDQUOT),
    # tensorstore's error, as orbax raises it on a full disk
    (
      ValueError(
        'OUT_OF_RANGE: Error writing "w/0" in OCDBT database at local file "/c/": Failed to '
        "write 471590 bytes to file 7: No space left on device [os_error_code='28']"
      ),
      errno.ENOSPC,
    ),
    (OSError(errno.EACCES, 'Permission denied'), None),
    (ValueError("[os_error_code='2']"), None),
  ],
)
def test_a_write_that_found_no_room_is_told_from_other_failures(error, code):
  assert errors.no_room_errno(error) == code


def test_on_a_full_disk_the_message_says_to_free_space(tmp_path):
  with pytest.raises(UserError) as raised:
    with errors.no_room_is_user_error(
      'Writing X', str(tmp_path), lambda: (2_500_000, 'the new file', 'X is as it was.')
    ):
      raise OSError(errno.ENOSPC, 'No space left on device')
  assert re.fullmatch(
    r'Writing X failed: no space left on the device \(ENOSPC\)\. It needs about 2\.50 MB \(the '
    r'new file\); the file system of \S+ has [\d,]+\.\d\d MB free\. X is as it was\. Free some '
    r'space, then run the same command again\.',
    str(raised.value),
  ), raised.value
