"""Runs launch.py in child processes as a user would, with a shared compilation cache."""

import os
import pathlib
import subprocess
import sys
import tempfile

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


def launch(*args: str, cwd: pathlib.Path = REPO, devices: int = 4) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, str(REPO / 'launch.py'), *args],
    cwd=cwd,
    env=env(devices),
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )
