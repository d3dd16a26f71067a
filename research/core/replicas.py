"""vmap-parallel runs: N replicas of one experiment trained by one jitted step.

    --config.replicas.seeds="(0, 1, 2)"                   # three seeds
    --config.replicas.learning_rates="(1e-3, 3e-3, 1e-2)" # a learning-rate grid
    (both given: replica i has seed i and learning rate i)

Replica ``i`` is the run that its seed and learning rate would give alone: the same
initialization, data order, dropout and binarization keys, optimizer and schedule.
The TrainState gains a leading replica axis, every training batch too (each replica
reads its own data order), and the train step is ``jax.vmap``-ed over both and over
the learning rate, so small models fill the devices that one run would leave idle.
Metrics, images, reports and results are written per replica, as ``replica_I/...``.
"""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.core import gate, optim, step as step_lib
from research.data import pipeline


@dataclasses.dataclass(frozen=True)
class Replicas:
  seeds: tuple[int, ...]
  learning_rates: tuple[float, ...]

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "Replicas | None":
    """The config's replicas; None for a single run (``replicas`` fields empty)."""
    seeds, rates = tuple(config.replicas.seeds), tuple(config.replicas.learning_rates)
    count = max(len(seeds), len(rates))
    if count == 0:
      return None
    return cls(seeds or (config.seed,) * count,
               rates or (config.optimizer.learning_rate,) * count)

  def __len__(self) -> int:
    return len(self.seeds)

  def prefix(self, index: int) -> str:
    return f"replica_{index}"


def make_init(init_fn, seeds: tuple[int, ...]):
  """``init_fn(seed, example) -> TrainState`` vmapped over the seeds."""
  return lambda example: jax.vmap(init_fn, in_axes=(0, None))(jnp.asarray(seeds), example)


def make_train_step(task, optimizer_config: ml_collections.ConfigDict, num_steps: int,
                    preprocess, **step_options):
  """``(states, batches, learning_rates) -> (states, metrics)``: the core's train step
  (``step_options`` as ``step.make_train_step`` takes them) with each replica's optimizer
  (built for its learning rate), vmapped over replicas."""
  def replica_step(state, batch, learning_rate):
    optimizer = optim.make_optimizer(optimizer_config, num_steps, learning_rate)
    return step_lib.make_train_step(task, optimizer, preprocess, **step_options)(state, batch)

  return jax.vmap(replica_step)


class TrainBatches:
  """Each replica's training batch at a step, stacked on a leading replica axis."""

  def __init__(self, train: pipeline.TrainBatches, seeds: tuple[int, ...]):
    self.replicas = [pipeline.TrainBatches(train.arrays, train.global_batch_size, seed)
                     for seed in seeds]

  def local_batch(self, step: int) -> dict[str, np.ndarray]:
    batches = [r.local_batch(step) for r in self.replicas]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def make_take(replicated: jax.sharding.NamedSharding):
  """A jitted ``take(states, i)``: replica ``i``'s TrainState (works across processes)."""
  return jax.jit(lambda states, index: jax.tree.map(lambda x: x[index], states),
                 out_shardings=replicated)


def compute(collection, replicas: "Replicas | None") -> dict[str, np.ndarray]:
  """clu's ``compute()``; with replicas, per replica (stacked metrics on a leading axis)."""
  if replicas is None:
    return {k: np.asarray(v) for k, v in collection.compute().items()}
  collection = jax.tree.map(np.asarray, collection)  # replicated: every process holds all
  per_replica = [jax.tree.map(lambda x: x[i], collection).compute() for i in range(len(replicas))]
  return {k: np.stack([np.asarray(r[k]) for r in per_replica]) for k in per_replica[0]}


def expand_scalars(scalars: dict) -> dict[str, float]:
  """Per-replica arrays under ``key`` become ``replica_I/key``; scalars stay as they are."""
  out = {}
  for key, value in scalars.items():
    value = np.asarray(value)
    if value.ndim == 0:
      out[key] = float(value)
    else:
      out.update({f"replica_{i}/{key}": float(v) for i, v in enumerate(value)})
  return out


def check_gate(spec: str, results: dict, replicas: Replicas) -> bool | None:
  """The gate holds when it holds for every replica."""
  checks = []
  for i in range(len(replicas)):
    head = replicas.prefix(i) + "/"
    own = {k[len(head):]: v for k, v in results.items() if k.startswith(head)}
    checks.append(gate.check(spec, own))
  return None if checks[0] is None else all(checks)
