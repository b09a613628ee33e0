"""Several processes through JAX's own runtime: starting it, and decisions every process shares.

Each process runs the same program on its own devices; jax.distributed connects them, and one
jax.sharding.Mesh spans every device of every process. Whatever one process decides alone (a
lock, a file it cannot see) is shared with the others here, so that no process exits while the
others wait for it in a collective.
"""

import os
import secrets
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from resnet_jax.errors import UserError

MODES = ('auto', 'on', 'off')


def announced_process_count() -> int:
  """How many processes the platform says this job has; 1 where it says nothing.

  SLURM (srun) and Open MPI (mpirun) set these variables in every task; on a Cloud TPU pod
  slice under GKE, TPU_WORKER_HOSTNAMES lists the hosts. JAX reads the same variables to find
  the coordinator, so initialising with no arguments then works.
  """
  for variable in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE'):
    if os.environ.get(variable, '').isdigit():
      return int(os.environ[variable])
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  return len(hosts.split(',')) if hosts else 1


def initialize(
  mode: str,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  timeout_s: int = 300,
) -> None:
  """Starts jax.distributed when asked or announced; must run before anything uses a device.

  mode: 'on' always initialises (missing arguments are detected by JAX: SLURM, Open MPI, Cloud
  TPU); 'auto' initialises only when the three arguments are given or the platform announces
  several processes, so a plain one-GPU VM runs as a single process; 'off' never does.
  """
  given = {
    'coordinator_address': coordinator_address,
    'num_processes': num_processes,
    'process_id': process_id,
  }
  named = sorted(k for k, v in given.items() if v is not None)
  if mode not in MODES:
    raise UserError(f'--distributed={mode!r}; choose one of {", ".join(MODES)}.')
  if mode == 'off':
    if named:
      raise UserError(
        f'--{", --".join(named)} given with --distributed=off: remove, or use --distributed=on.'
      )
    return
  if named and len(named) < 3:
    missing = sorted(set(given) - set(named))
    raise UserError(
      f'--{", --".join(named)} given without --{", --".join(missing)}: name all '
      'three (or none, on a platform JAX detects: SLURM, Open MPI, Cloud TPU).'
    )
  if mode == 'auto' and not named and announced_process_count() <= 1:
    return
  if num_processes is not None and not 0 <= process_id < num_processes:
    raise UserError(f'--process_id={process_id} must be in [0, {num_processes}).')
  try:
    jax.distributed.initialize(
      coordinator_address, num_processes, process_id, initialization_timeout=timeout_s
    )
  except (ValueError, RuntimeError) as e:
    raise UserError(
      f'Could not start the multi-process runtime: {e}\nWith --distributed=on on a machine '
      "that is no SLURM, Open MPI or Cloud TPU job, give --coordinator_address (process 0's "
      'host:port, reachable by every process), --num_processes and --process_id.'
    ) from e


def is_writer() -> bool:
  """Process 0 alone writes logs, metrics, TensorBoard events and the run's records."""
  return jax.process_index() == 0


def process_zero_value(value: int) -> int:
  """Process 0's value, on every process (the value itself when there is one process)."""
  if jax.process_count() == 1:
    return value
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def failed_processes(ok: bool) -> list[int]:
  """The indices of the processes whose `ok` is False; every process gets the same list."""
  if jax.process_count() == 1:
    return [] if ok else [0]
  oks = multihost_utils.process_allgather(np.int32(ok))
  return [int(i) for i in np.flatnonzero(np.asarray(oks) == 0)]


def wait_for_all(name: str) -> None:
  """A barrier: returns once every process has reached the same name."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def check_shared_workdir(workdir: str, timeout_s: float) -> None:
  """Refuses, on every process, a workdir that some process does not see as process 0 does.

  Multi-host checkpoints need storage every host sees (NFS, a bucket mounted with FUSE);
  on local disks orbax would wait forever for files written elsewhere. Process 0 writes a probe
  file; each process looks for it for up to timeout_s (NFS may show new files late).
  """
  if jax.process_count() == 1:
    return
  token = process_zero_value(secrets.randbits(31))  # a fresh name: no stale probe can count
  probe = os.path.join(workdir, f'.probe-{token:08x}')
  if is_writer():
    with open(probe, 'w') as f:
      f.write('written by process 0 to check that every process sees this workdir\n')
  deadline = time.monotonic() + timeout_s
  while not (seen := os.path.exists(probe)) and time.monotonic() < deadline:
    time.sleep(0.2)
  blind = failed_processes(seen)
  if is_writer():
    os.remove(probe)
  if blind:
    raise UserError(
      f'Process(es) {", ".join(map(str, blind))} cannot see the workdir {workdir} that process '
      f'0 writes to (waited {timeout_s:g} s for a probe file). Every process must see the same '
      'workdir: NFS or a bucket mounted on every host (e.g. with gcsfuse), given as the same '
      'path.'
    )
