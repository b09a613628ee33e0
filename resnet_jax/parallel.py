"""The device mesh and the two shardings everything uses: replicated, and split over 'data'."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh(devices: list | None = None) -> Mesh:
  """A 1-D mesh over the devices (default: all): pure data parallelism."""
  return Mesh(np.asarray(devices or jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the devices, the rest whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh):
  """Places host arrays (or a pytree of them) on every device of the mesh, of every process.

  Each process contributes its own copy, which must be the same everywhere: every process loads
  the same dataset, so none has to receive it over the network.
  """
  sharding = replicated(mesh)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
  )
