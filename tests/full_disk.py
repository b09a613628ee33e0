"""launch.py in a child whose disk fills up at a chosen checkpoint save, as a user would meet it.

    python -m tests.full_disk SAVE LIMIT_BYTES launch.py's arguments...

The SAVE-th call of checkpoint.save (from 1) waits for the saves before it, then sets RLIMIT_FSIZE
to LIMIT_BYTES: every file written from then on is refused past that size, on any machine and
any file system. The child's stdout and stderr must be pipes, to which the limit does not apply.
SIGXFSZ is ignored: its default action kills the process, where a full disk only fails the
write; ignored, write() fails with EFBIG.
"""

import resource
import runpy
import signal
import sys

from resnet_jax import checkpoint
from tests.launching import REPO


def main() -> None:
  save_number, limit = int(sys.argv[1]), int(sys.argv[2])
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  save = checkpoint.save
  calls = 0

  def save_with_a_limit(*args, **kwargs) -> None:
    nonlocal calls
    calls += 1
    if calls == save_number:
      args[0].wait_until_finished()  # the saves before it complete, under no limit
      resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    save(*args, **kwargs)

  checkpoint.save = save_with_a_limit
  sys.argv = [str(REPO / 'launch.py'), *sys.argv[3:]]
  runpy.run_path(sys.argv[0], run_name='__main__')


if __name__ == '__main__':
  main()
