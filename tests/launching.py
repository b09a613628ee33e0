"""Runs launch.py in child processes as a user would, with a shared compilation cache."""

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 240  # a hung child fails its test instead of the CI run
# One persistent compilation cache for every child: each compiles the same tiny programs.
COMPILATION_CACHE = tempfile.mkdtemp(prefix='resnet_jax_test_cache_')


def env(devices: int) -> dict[str, str]:
  """A child's environment: CPU only, `devices` CPU devices, the shared cache."""
  return {
    **os.environ,
    'JAX_NUM_CPU_DEVICES': str(devices),
    'JAX_PLATFORMS': 'cpu',
    'JAX_COMPILATION_CACHE_DIR': COMPILATION_CACHE,
  }


def launch(
  *args: str, cwd: pathlib.Path = REPO, devices: int = 4, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess:
  """prefix: a command that runs launch.py's, as `unshare ... sh -c '...' ...` does."""
  return subprocess.run(
    [*prefix, sys.executable, str(REPO / 'launch.py'), *args],
    cwd=cwd,
    env=env(devices),
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )


@contextlib.contextmanager
def read_only(folder: pathlib.Path) -> Iterator[list[str]]:
  """Makes folder read-only to the launches run under the command prefix this yields.

  Not root: by its mode. Root, whom modes do not stop: by a read-only bind mount, in a user and
  mount namespace of the child's own (unshare), the read-only file system a user may meet.
  """
  if os.geteuid() != 0:
    modes = {path: path.stat().st_mode for path in [folder, *folder.rglob('*')] if path.is_dir()}
    for path in modes:
      path.chmod(0o555)
    try:
      yield []
    finally:
      for path, mode in modes.items():
        path.chmod(mode)
    return
  script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
  prefix = ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script, str(folder)]
  if shutil.which('unshare') is None or subprocess.run([*prefix, 'true']).returncode != 0:
    pytest.skip('run as root, and no user namespace (unshare) to mount a read-only folder in')
  yield prefix
