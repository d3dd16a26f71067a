"""Devices as one Mesh with a data axis: batches are split on it, parameters replicated.

Nothing here branches on the platform; multi-host runs call
``jax.distributed.initialize()`` first and each process feeds its own slice of
every global batch.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def to_global_array(local_batch, sharding: NamedSharding):
  """Assembles each process's local numpy batch into one global jax.Array."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
