"""The device mesh and its shardings: replicas over the 'replica' axis, each batch over 'data'.

A run of N replicas on D devices forms r replica groups of D/r devices each (a mesh of shape
(r, D/r)): each group trains N/r of the replicas, each of them data-parallel (one BatchNorm over
its whole batch) across the group's devices. r = gcd(N, D) by default, so no device idles and no
data crosses between groups: 8 replicas on 8 devices train one a device, with no communication.
"""

import math
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

REPLICA_AXIS = 'replica'
DATA_AXIS = 'data'


def replica_groups(num_replicas: int, num_devices: int, requested: int = 0) -> int:
  """The number of replica groups: `requested`, or with 0 the default gcd(N, D)."""
  return requested or math.gcd(num_replicas, num_devices)


def make_mesh(devices: list | None = None, groups: int = 1) -> Mesh:
  """A (replica, data) mesh of `groups` rows; neighbouring devices (one host's) share a row."""
  devices = np.asarray(devices or jax.devices())
  return Mesh(devices.reshape(groups, -1), (REPLICA_AXIS, DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the devices of a replica group, the rest whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replica_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (replica) axis split over the replica groups; each group holds its replicas whole."""
  return NamedSharding(mesh, P(REPLICA_AXIS))


def over_replicas(fn: Callable, mesh: Mesh, in_axes: tuple[int | None, ...]) -> Callable:
  """fn mapped over the replica axis (axis 0 of the arguments whose in_axes is 0; the others
  shared), each replica group computing its own replicas only; outputs stacked on axis 0.

  jax.vmap alone leaves the partitioning to XLA, which turns the convolutions of N replicas into
  one grouped convolution and gathers every replica's activations onto every device. Here the
  replica axis is manual (shard_map): a group sees only its N / r replicas, vmapped; the data
  axis inside stays automatic, so each replica's batch is split over its group's devices just as
  without replicas.
  """
  in_specs = tuple(P(REPLICA_AXIS) if axis == 0 else P() for axis in in_axes)
  return jax.shard_map(
    jax.vmap(fn, in_axes=in_axes),
    mesh=mesh,
    in_specs=in_specs,
    out_specs=P(REPLICA_AXIS),
    axis_names={REPLICA_AXIS},
    check_vma=False,
  )


def replicate(tree, mesh: Mesh):
  """Places host arrays (or a pytree of them) on every device of the mesh, of every process.

  Each process contributes its own copy, which must be the same everywhere: every process loads
  the same dataset, so none has to receive it over the network.
  """
  sharding = replicated(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
  )
