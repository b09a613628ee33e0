"""The one exception type for mistakes a user can fix, and the message for a write with no room.

Only the standard library: records.py, which tools import without JAX, raises these too.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
from collections.abc import Callable, Iterator


class UserError(Exception):
  """Bad input: launch.py prints the message without a traceback and exits non-zero.

  The message must say what was wrong and what to do about it.
  """


# The errnos of a write that found no room: what each means, and what to do.
_NO_ROOM = {
  errno.ENOSPC: ('no space left on the device', 'Free some space'),
  errno.EDQUOT: ('the disk quota is used up', 'Free some space or raise the quota'),
  errno.EFBIG: (
    "a file would pass this process's file size limit",
    'Raise the limit (ulimit -f)',
  ),
}
# tensorstore, orbax's writer, raises ValueError with the errno in its text: [os_error_code='28'].
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def no_room_errno(error: BaseException) -> int | None:
  """ENOSPC, EDQUOT or EFBIG when error, or an exception that led to it, is a write that found no
  room (Python's OSError, or tensorstore's message); None when it failed for another reason."""
  seen: BaseException | None = error
  while seen is not None:
    code = seen.errno if isinstance(seen, OSError) else None
    if code is None and (match := _OS_ERROR_CODE.search(str(seen))):
      code = int(match.group(1))
    if code in _NO_ROOM:
      return code
    seen = seen.__cause__ or seen.__context__
  return None


def megabytes(num_bytes: float) -> str:
  return f'{num_bytes / 1e6:,.2f} MB'


@contextlib.contextmanager
def no_room_is_user_error(
  failed: str, folder: str, room: Callable[[], tuple[int, str, str]]
) -> Iterator[None]:
  """Raises UserError in place of an exception that is a write finding no room, saying what
  failed (`failed`: 'Writing X') and why, the room needed, the folder's free space, what was kept
  and what to do. room(), called only then: (bytes needed, what they are, what was kept)."""
  try:
    yield
  except Exception as e:
    code = no_room_errno(e)
    if code is None:
      raise
    num_bytes, what, kept = room()
    reason, remedy = _NO_ROOM[code]
    raise UserError(
      f'{failed} failed: {reason} ({errno.errorcode[code]}). It needs about '
      f'{megabytes(num_bytes)} ({what}); the file system of {folder} has '
      f'{megabytes(shutil.disk_usage(folder).free)} free. {kept} {remedy}, then run the same '
      'command again.'
    ) from e
