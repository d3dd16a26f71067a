"""One run or N vmap-parallel replicas of it, behind one adaptor the loop does not branch on.

    --config.replicas.seeds="(0, 1, 2)"                   # three seeds
    --config.replicas.learning_rates="(1e-3, 3e-3, 1e-2)" # a learning-rate grid
    config.replicas.train_labels = ((0,), (1,), (2,))     # each its own training classes
    (several given: replica i has seed i, learning rate i and training classes i)

Replica ``i`` is the run that its seed and learning rate would give alone: the same
initialization, data order, dropout and binarization keys, optimizer and schedule; with
``train_labels`` (optional, read with ``get``: configs without it resolve as before) it is
the run with ``data.train_labels = train_labels[i]``: its train and val splits keep those
classes (e.g. one-class models of ten classes as one run), and its evaluations know them
(research/train/experiment.py). The replicas share one step count: their classes' sizes
must give the same one (``total_steps`` does).
The TrainState gains a leading replica axis, every training batch too (each replica
reads its own data order, research/data/feeds.py), and the train step is ``jax.vmap``-ed
over both, each replica with its own learning rate, so small models fill the devices that
one run would leave idle. Metrics, images, reports and results are written per replica,
as ``replica_I/...``; ``replicas.json`` in the workdir maps each index to its seed and rate.
"""
import dataclasses
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research.core import gate, optim, state as state_lib, step as step_lib


@dataclasses.dataclass(frozen=True)
class Single:
  """A run of one model: the identity adaptor."""
  seed: int

  seeds = None  # the feed reads one data order (the config's seed)
  learning_rates = None  # the optimizer's own (config.optimizer.learning_rate)
  train_labels = ()  # the run's own data (config.data.train_labels)

  def batched_init(self, init_fn):
    """``init_fn(seed, example) -> TrainState`` as a pure ``init(example)``."""
    return lambda example: init_fn(self.seed, example)

  def init(self, init_fn, example, sharding):
    return state_lib.jit_init(self.batched_init(init_fn), out_shardings=sharding)(example)

  def train_step(self, task, optimizer_config, num_steps, preprocess, **step_options):
    optimizer = optim.make_optimizer(optimizer_config, num_steps)
    return step_lib.make_train_step(task, optimizer, preprocess, **step_options)

  def each(self, state) -> Iterator[tuple[str, state_lib.TrainState]]:
    """``(scope, state)`` of each model: here ``("", state)``."""
    yield "", state

  def compute(self, collection) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in collection.compute().items()}

  def expand(self, scalars: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in scalars.items()}

  def check_gate(self, spec: str, results: dict) -> bool | None:
    return gate.check(spec, results)

  def count(self) -> int:
    return 1

  def describe(self) -> dict | None:
    return None


def prefix(index: int) -> str:
  return f"replica_{index}"


@dataclasses.dataclass
class Replicas:
  seeds: tuple[int, ...]
  learning_rates: tuple[float, ...]
  train_labels: tuple[tuple[int, ...], ...] = ()  # each replica's classes; (): the run's data
  _take: object = dataclasses.field(default=None, init=False, repr=False, compare=False)

  def batched_init(self, init_fn):
    """``init_fn(seed, example) -> TrainState`` vmapped over the seeds, as ``init(example)``."""
    return lambda example: jax.vmap(init_fn, in_axes=(0, None))(jnp.asarray(self.seeds), example)

  def init(self, init_fn, example, sharding):
    return state_lib.jit_init(self.batched_init(init_fn), out_shardings=sharding)(example)

  def train_step(self, task, optimizer_config, num_steps, preprocess, **step_options):
    """``(states, batches) -> (states, metrics)``: the core's train step with each replica's
    optimizer (built for its learning rate), vmapped over replicas."""
    def replica_step(state, batch, learning_rate):
      optimizer = optim.make_optimizer(optimizer_config, num_steps, learning_rate)
      return step_lib.make_train_step(task, optimizer, preprocess, **step_options)(state, batch)

    rates = np.asarray(self.learning_rates, np.float32)
    return lambda states, batches: jax.vmap(replica_step)(states, batches, rates)

  def take(self, states, index: int):
    """Replica ``index``'s TrainState (jitted, replicated: works across processes)."""
    if self._take is None:
      replicated = jax.tree.leaves(states)[0].sharding
      self._take = jax.jit(lambda states, i: jax.tree.map(lambda x: x[i], states),
                           out_shardings=replicated)
    return self._take(states, index)

  def each(self, states):
    for i in range(len(self.seeds)):
      yield prefix(i), self.take(states, i)

  def compute(self, collection) -> dict[str, np.ndarray]:
    """clu's ``compute()`` per replica (metrics stacked on a leading axis)."""
    collection = jax.tree.map(np.asarray, collection)  # replicated: every process holds all
    per_replica = [jax.tree.map(lambda x: x[i], collection).compute() for i in range(self.count())]
    return {k: np.stack([np.asarray(r[k]) for r in per_replica]) for k in per_replica[0]}

  def expand(self, scalars: dict) -> dict[str, float]:
    """Per-replica arrays under ``key`` become ``replica_I/key``; scalars stay as they are."""
    out = {}
    for key, value in scalars.items():
      value = np.asarray(value)
      if value.ndim == 0:
        out[key] = float(value)
      else:
        out.update({f"{prefix(i)}/{key}": float(v) for i, v in enumerate(value)})
    return out

  def check_gate(self, spec: str, results: dict) -> bool | None:
    """The gate holds when it holds for every replica."""
    checks = []
    for i in range(self.count()):
      head = prefix(i) + "/"
      checks.append(gate.check(spec, {k[len(head):]: v for k, v in results.items()
                                      if k.startswith(head)}))
    return None if checks[0] is None else all(checks)

  def count(self) -> int:
    return len(self.seeds)

  def describe(self) -> dict:
    """What ``replicas.json`` records: each replica's scope, seed and learning rate (and its
    training classes, when it has its own)."""
    out = {prefix(i): {"seed": s, "learning_rate": r}
           for i, (s, r) in enumerate(zip(self.seeds, self.learning_rates))}
    for i, labels in enumerate(self.train_labels):
      out[prefix(i)]["train_labels"] = list(labels)
    return out


def train_labels(config: ml_collections.ConfigDict) -> tuple[tuple[int, ...], ...]:
  """``replicas.train_labels`` as tuples (an optional field: () when absent or empty)."""
  return tuple(tuple(labels) for labels in config.replicas.get("train_labels", ()))


def from_config(config: ml_collections.ConfigDict) -> Single | Replicas:
  """The config's replicas, or a single run when the ``replicas`` fields are empty."""
  seeds, rates = tuple(config.replicas.seeds), tuple(config.replicas.learning_rates)
  labels = train_labels(config)
  count = max(len(seeds), len(rates), len(labels))
  if count == 0:
    return Single(config.seed)
  return Replicas(seeds or (config.seed,) * count,
                  rates or (config.optimizer.learning_rate,) * count, labels)
