"""The three ways training data reaches the train step, behind one interface.

    feed = feeds.make(train_batches, mesh, steps_per_call, replica_batches)
    step_fn = jax.jit(feed.wrap(train_step), in_shardings=(state_sharding, *feed.in_shardings))
    for step, inputs in feed.calls(start, end):
      state, metrics = step_fn(state, *inputs)     # the state reaches ``step``

- ``HostBatches``: one global batch per call, gathered on the host and sharded on the
  mesh's data axis (prefetched, so copies overlap compute);
- ``DeviceResident``: the training split lives on the devices, and each call runs
  ``steps_per_call`` steps (``lax.scan``) on the examples it gathers by index;
- ``ReplicaBatches``: a batch per vmapped replica (each with its own data order, and
  possibly its own training split), stacked on a leading replica axis.

Whichever it is, the examples of step ``s`` are ``TrainBatches(seed).indices(s)``, so the
paths give the same runs and resume exactly.
"""
from typing import Iterator

import jax
import numpy as np

from research.core import sharding, step as step_lib
from research.data import pipeline


def call_ends(start: int, end: int, steps_per_call: int) -> Iterator[int]:
  """The step after each train call from ``start`` to ``end``: at multiples of
  ``steps_per_call`` (and ``end``), so logging, evaluation and checkpoints fall on them.
  Lazy: ``end`` may be far away (benchmarks/throughput.py)."""
  while start < end:
    start = min((start // steps_per_call + 1) * steps_per_call, end)
    yield start


class HostBatches:
  def __init__(self, train: pipeline.TrainBatches, mesh: jax.sharding.Mesh):
    self.train = train
    self.in_shardings = (sharding.batch_sharding(mesh),)

  def wrap(self, train_step):
    return train_step

  def steps_in(self, inputs) -> int:
    return 1

  def local_batch(self, step: int) -> dict[str, np.ndarray]:
    return self.train.local_batch(step)

  def calls(self, start: int, end: int):
    batches = pipeline.prefetch(sharding.to_global_array(self.local_batch(s), self.in_shardings[0])
                                for s in range(start, end))
    yield from zip(range(start + 1, end + 1), ((b,) for b in batches))


def indices_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Arrays (calls or replicas, batch, ...) sharded on the batch axis."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, sharding.DATA_AXIS))


class DeviceResident:
  def __init__(self, train: pipeline.TrainBatches, mesh: jax.sharding.Mesh, steps_per_call: int):
    self.train, self.steps_per_call = train, steps_per_call
    self.batch_sharding = sharding.batch_sharding(mesh)
    self.in_shardings = (sharding.replicated(mesh), indices_sharding(mesh))
    self._arrays = None

  def wrap(self, train_step):
    return step_lib.make_multi_step(train_step, self.batch_sharding)

  def steps_in(self, inputs) -> int:
    return inputs[1].shape[0]

  def calls(self, start: int, end: int):
    if self._arrays is None:  # the split goes to the devices once, on the first call
      self._arrays = sharding.to_global_array(self.train.arrays, self.in_shardings[0])
    first = start
    for last in call_ends(start, end, self.steps_per_call):
      indices = sharding.to_global_array(self.train.local_step_indices(first, last),
                                         self.in_shardings[1])
      yield last, (self._arrays, indices)
      first = last


class ReplicaBatches(HostBatches):
  """``replicas``: each replica's TrainBatches (its seed; its split), of one batch size."""

  def __init__(self, replicas: list[pipeline.TrainBatches], mesh: jax.sharding.Mesh):
    self.replicas = replicas
    self.train = self.replicas[0]
    self.in_shardings = (indices_sharding(mesh),)

  def local_batch(self, step: int) -> dict[str, np.ndarray]:
    batches = [r.local_batch(step) for r in self.replicas]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def make(train: pipeline.TrainBatches, mesh: jax.sharding.Mesh, steps_per_call: int = 1,
         replica_batches: list[pipeline.TrainBatches] | None = None):
  """The feed for a run: replicas' batches (``replica_batches``: each replica's), the
  device-resident split (``steps_per_call > 1``), or host batches."""
  if replica_batches is not None:
    return ReplicaBatches(replica_batches, mesh)
  if steps_per_call > 1:
    return DeviceResident(train, mesh, steps_per_call)
  return HostBatches(train, mesh)
