"""The evaluator contract, and what every evaluator shares.

A config lists its evaluations under ``config.evals``, one ConfigDict each:

    config.evals.val = dict(type="metrics", data="val", every_steps=1000)
    config.evals.report = dict(type="classification_report", data="test", prefix="test")
    config.evals.ood = dict(type="my_project.evaluators.ood", data=dict(name="fashion_mnist",
                            split="test"))

``type`` names a module ``research/evaluators/<type>.py`` (or, dotted, any importable
module) that defines ``Evaluator``. Fields every evaluation has:

    type         the evaluator
    data         a split of the run's own data (``"val"``, ``"test"``, ``"train"``), or a
                 ConfigDict of ``config.data`` fields to change, with ``split`` (e.g.
                 another TFDS dataset, or a bundled one); preprocessing is the run's
    every_steps  evaluate every that many training steps (and at the last); 0: never
                 during training
    final        also evaluate once training is done (and in ``--mode=eval``)
    prefix       the scalars' prefix in metrics and results (default: the evaluation's name)

Anything else is the evaluator's own (e.g. ``num_samples``). An evaluator is built once,
before training (its data is loaded then, so missing data fails fast), and
``run(state, step, scope)`` returns an ``Output``: scalars (logged as ``prefix/name``) and
image grids (written to TensorBoard and ``WORKDIR/images``); it writes its own files
(CSV, PNG) under ``context.report_dir(scope)``. ``scope`` is ``""``, or ``replica_I`` when
the run trains vmapped replicas (each replica is evaluated on its own; replicas with their
own training classes, ``replicas.train_labels``, have an evaluator each, whose context
loads that replica's splits and names its classes, ``context.train_labels``).
"""
import dataclasses
import os
import time
from typing import Callable, ClassVar

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from research import errors, registry
from research.core import dispatch, step as step_lib, writers

COMMON_FIELDS = ("type", "data", "every_steps", "final", "prefix")


@dataclasses.dataclass
class Output:
  scalars: dict[str, float] = dataclasses.field(default_factory=dict)
  images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # name -> (H, W, C)


@dataclasses.dataclass
class Context:
  """What an evaluator may use of the run."""
  task: object  # research.tasks.base.Task
  workdir: str
  rng: jax.Array  # the fixed evaluation key
  preprocess: Callable  # the run's evaluation preprocessing, (batch, rng) -> batch
  # data spec ("val", or a ConfigDict), any_labels=False -> device-resident masked batches;
  # any_labels: labels outside the classifier's classes are allowed (OOD data)
  load: Callable
  replicated: jax.sharding.Sharding
  batch_sharding: jax.sharding.Sharding
  # the classes the evaluated model trained on: data.train_labels, or its replica's
  # (replicas.train_labels); (): every class
  train_labels: tuple[int, ...] = ()

  def report_dir(self, scope: str) -> str | None:
    """Where evaluators write files: ``WORKDIR/reports[/replica_I]``; None on processes
    other than 0, which write nothing."""
    if jax.process_index() != 0:
      return None
    directory = os.path.join(self.workdir, "reports", scope)
    os.makedirs(directory, exist_ok=True)
    return directory

  def jit(self, fn):
    """``jax.jit`` of ``fn(state, batch, rng)`` with the run's shardings."""
    return jax.jit(fn, in_shardings=(self.replicated, self.batch_sharding, self.replicated),
                   out_shardings=self.replicated)


class Evaluator:
  """Base class: reads the common fields and loads the evaluation's data."""
  requires: ClassVar[frozenset[str]] = frozenset()  # task capabilities (tasks/base.py)
  fields: ClassVar[dict] = {}  # the evaluator's own fields and their defaults

  def __init__(self, name: str, config: ml_collections.ConfigDict, context: Context):
    self.name, self.config, self.context = name, config, context
    self.task = context.task
    self.batches = context.load(config.data)

  @classmethod
  def metric_names(cls, config: ml_collections.ConfigDict, task_cls) -> tuple[str, ...]:
    """The scalars ``run`` returns (without the prefix), for checking a gate up front."""
    return ()

  @classmethod
  def validate(cls, name: str, config: ml_collections.ConfigDict, task_cls) -> None:
    """Checks the evaluation's own fields; raises errors.ConfigError."""
    missing = sorted(set(cls.requires) - set(task_cls.capabilities))
    errors.require(not missing, f"evals.{name}.type", config.type,
                   f"an evaluator this task can feed (task {task_cls.__module__} lacks "
                   f"{', '.join(missing)})")
    unknown = sorted(set(config) - set(COMMON_FIELDS) - set(cls.fields))
    errors.require(not unknown, f"evals.{name}", unknown[:1],
                   f"fields among {sorted(set(COMMON_FIELDS) | set(cls.fields))}")

  def option(self, field: str):
    """The evaluator's own field, or its default."""
    return self.config.get(field, self.fields[field])

  def run(self, state, step: int, scope: str) -> Output:
    raise NotImplementedError


def evaluator_class(type_name: str) -> type[Evaluator]:
  return registry.import_member("evaluators", type_name, "Evaluator")


def prefix(name: str, config: ml_collections.ConfigDict) -> str:
  return config.get("prefix") or name


def enabled(config: ml_collections.ConfigDict) -> bool:
  return bool(config.get("type")) and (config.get("every_steps", 0) > 0 or config.get("final", True))


def shifted(context: Context, shift: Callable) -> Context:
  """The context whose preprocessing applies the op ``shift`` (research/data/preprocess.py)
  to the raw batch, then the run's: an evaluation of a shifted copy of a split (a flip, a
  corruption), its key folded from the batch's."""
  run_preprocess = context.preprocess

  def apply(batch, rng):
    return run_preprocess(shift(batch, jax.random.fold_in(rng, 1)), rng)

  return dataclasses.replace(context, preprocess=apply)


def predictions_fn(context: Context, fns: dict[str, Callable], keep: tuple[str, ...] = ()):
  """A jitted ``(state, batch, rng) -> {name: fn(...)} | {feature: batch[feature]} | mask``
  over a masked batch: each ``fn(params, model_state, preprocessed_batch, rng)`` is a
  prediction function of the task; ``keep`` names batch features to return beside them."""
  def predict(state, batch, rng):
    batch, mask = step_lib.split_mask(batch)
    preprocess_rng, predict_rng = jax.random.split(rng)
    batch = context.preprocess(batch, preprocess_rng)
    out = {name: fn(state.params, state.model_state, batch, predict_rng) for name, fn in fns.items()}
    out.update({k: batch[k] for k in keep if k in batch})
    return {**out, "mask": mask}

  return context.jit(predict)


PROGRESS_SECS = 30.0  # a long evaluation logs its progress this often


def gather(predict, state, batches: list, rng: jax.Array, name: str = "") -> dict:
  """``predict`` over every batch of a split, on the host: the real examples only, from
  all processes; batch ``i`` gets the key ``fold_in(rng, i)``. An evaluation that takes
  longer than PROGRESS_SECS logs how far it is and its ETA (``name`` says which)."""
  outputs, start, reported = [], time.perf_counter(), time.perf_counter()
  for i, batch in enumerate(batches):
    outputs.append(multihost_utils.process_allgather(
        predict(state, batch, jax.random.fold_in(rng, i)), tiled=True))
    now = time.perf_counter()
    if now - reported > PROGRESS_SECS and i + 1 < len(batches):
      eta = (now - start) / (i + 1) * (len(batches) - i - 1)
      logging.info("%s: batch %d/%d, %s elapsed, ETA %s", name or "evaluation", i + 1,
                   len(batches), writers.format_duration(now - start),
                   writers.format_duration(eta))
      reported = now
  keep = np.concatenate([o.pop("mask") for o in outputs]) > 0
  return jax.tree.map(lambda *parts: np.concatenate(parts)[keep], *outputs)


def mean_metrics(eval_step, state, batches: list, rng: jax.Array) -> dict[str, float]:
  """clu metrics of ``eval_step(state, batch, rng)`` merged over a whole split; the key of
  batch ``i`` is ``fold_in(rng, i)``."""
  total, run_ahead = None, dispatch.RunAhead()
  for i, batch in enumerate(batches):
    metrics = eval_step(state, batch, jax.random.fold_in(rng, i))
    total = dispatch.accumulate(total, metrics)
    run_ahead(metrics)
  return {k: float(v) for k, v in total.compute().items()}
