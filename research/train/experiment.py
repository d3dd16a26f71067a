"""Building a run from its config: data, task, state, the train step, its feed and the
evaluations. ``build`` is what ``launch.py --mode=train`` runs before the loop."""
import dataclasses
import os
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from research import errors
from research.core import (checkpoint, optim, profiling, sharding, state as state_lib,
                           writers)
from research.data import feeds, pipeline, preprocess, splits
from research.evaluators import base as evaluators
from research.tasks import base as tasks_base
from research.train import (replicas as replicas_lib, validation, warm_start,
                            workdir as workdir_lib)


@dataclasses.dataclass
class Evaluation:
  """One entry of ``config.evals``, built."""
  name: str
  prefix: str
  every_steps: int  # 0: not during training
  final: bool
  evaluator: evaluators.Evaluator
  # replicas with their own data (replicas.train_labels): each one's evaluator, by scope
  by_scope: dict[str, evaluators.Evaluator] = dataclasses.field(default_factory=dict)

  def due(self, step: int, is_last: bool) -> bool:
    return bool(self.every_steps) and (step % self.every_steps == 0 or is_last)

  def evaluator_for(self, scope: str) -> evaluators.Evaluator:
    """The evaluator of the model in ``scope`` (``""`` or ``replica_I``)."""
    return self.by_scope.get(scope, self.evaluator)


def replica_data(config: ml_collections.ConfigDict, data: splits.RunData) -> list[splits.RunData]:
  """Each replica's data when the replicas have their own classes (replicas.train_labels),
  else none: they all read ``data``."""
  return [data.with_train_labels(labels) for labels in replicas_lib.train_labels(config)]


def make_evaluations(config: ml_collections.ConfigDict, task, workdir: str, data: splits.RunData,
                     mesh: jax.sharding.Mesh) -> list[Evaluation]:
  """The config's enabled evaluations, in their order, each with its data loaded. Replicas
  with their own classes get an evaluator each, on their own data (a replica's ``val``
  holds its classes, and ``anomaly_report`` takes them as the normal ones)."""
  replicated, batch_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)

  def context(source: splits.RunData) -> evaluators.Context:
    return evaluators.Context(
        task=task, workdir=workdir, rng=state_lib.run_rngs(config.seed)["eval"],
        preprocess=preprocess.parse(config.data.preprocess),
        load=lambda spec, any_labels=False: source.batches(spec, batch_sharding, any_labels),
        replicated=replicated, batch_sharding=batch_sharding,
        train_labels=tuple(source.config.get("train_labels") or ()))

  scoped = {replicas_lib.prefix(i): context(d) for i, d in enumerate(replica_data(config, data))}
  out = []
  for name, spec in config.get("evals", {}).items():
    if evaluators.enabled(spec):
      spec = spec.copy_and_resolve_references()
      with spec.unlocked():
        spec.data = spec.get("data", "val")
      make = evaluators.evaluator_class(spec.type)
      by_scope = {scope: make(name, spec, c) for scope, c in scoped.items()}
      evaluator = next(iter(by_scope.values())) if by_scope else make(name, spec, context(data))
      out.append(Evaluation(name, evaluators.prefix(name, spec), spec.get("every_steps", 0),
                            spec.get("final", True), evaluator, by_scope))
  return out


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.total_steps > 0:
    return config.total_steps
  return max(1, int(round(config.num_epochs * steps_per_epoch)))


def train_batches(config: ml_collections.ConfigDict,
                  data: splits.RunData) -> pipeline.TrainBatches:
  """The run's training batches (in the run's seed) over ``data``'s train split."""
  return pipeline.TrainBatches(data.arrays("train"), config.batch_size, config.seed,
                               config.data.get("labelled_batch_size", 0))


def shared_total_steps(config: ml_collections.ConfigDict,
                       trains: list[pipeline.TrainBatches]) -> int:
  """The run's step count: ``total_steps`` of each training split (replicas with their own
  classes have one each), which must agree, since vmapped replicas step together."""
  steps = sorted({total_steps(config, t.steps_per_epoch) for t in trains})
  if len(steps) > 1:
    sizes = sorted(t.size for t in trains)
    raise errors.ConfigError(
        f"replicas.train_labels: num_epochs={config.num_epochs} over the replicas' "
        f"{sizes[0]}..{sizes[-1]} training examples is {steps[0]}..{steps[-1]} steps, but "
        f"replicas train for one step count; set total_steps (the same for every replica), "
        f"or train a run per class")
  return steps[0]


def num_microbatches(config: ml_collections.ConfigDict) -> int:
  """How many parts the train step splits each batch into (``microbatch_size``; 0: one)."""
  return config.batch_size // config.microbatch_size if config.microbatch_size else 1


def train_preprocess(config: ml_collections.ConfigDict):
  """The preprocessing ops, then the augmentation ops (training only), as one chain."""
  return preprocess.parse("|".join(filter(None, [config.data.preprocess, config.data.augment])))


def make_train_step(config, task, adaptor, feed, mesh, num_steps: int):
  """The jitted train step the feed's calls go to: ``(state, *inputs) -> (state, metrics)``,
  the state donated."""
  compute_dtype = None if config.precision == "float32" else jax.numpy.dtype(config.precision)
  guards = ("params",) if config.optimizer.skip_nonfinite else ("loss", "grad_norm")
  step = adaptor.train_step(task, config.optimizer, num_steps, train_preprocess(config),
                            guards=guards, compute_dtype=compute_dtype,
                            microbatches=num_microbatches(config))
  replicated = sharding.replicated(mesh)
  return jax.jit(feed.wrap(step), in_shardings=(replicated, *feed.in_shardings),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def warn_if_xla_flags_missing(xla_flags: str) -> None:
  """``config.xla_flags`` reach XLA only through ``launch.apply_xla_flags``, before JAX starts
  its backend; a run built another way (e.g. in a notebook) would silently lack them."""
  if xla_flags and xla_flags not in os.environ.get("XLA_FLAGS", ""):
    logging.warning("config.xla_flags=%r are not in XLA_FLAGS, so XLA runs without them: "
                    "set them before JAX starts (launch.py does)", xla_flags)


def replica_batches(adaptor, train: pipeline.TrainBatches,
                    replica_trains: list[pipeline.TrainBatches]):
  """Each replica's training batches, in its own seed, on its own split (``replica_trains``)
  or on ``train``; None for a single run."""
  if adaptor.seeds is None:
    return None
  return [t.with_seed(seed) for t, seed in
          zip(replica_trains or [train] * adaptor.count(), adaptor.seeds)]


@dataclasses.dataclass
class Experiment:
  """Everything a training run needs, built once from the config."""
  config: ml_collections.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  train_data: pipeline.TrainBatches
  num_steps: int
  state: state_lib.TrainState
  checkpointer: checkpoint.Checkpointer
  task: tasks_base.Task
  adaptor: replicas_lib.Single | replicas_lib.Replicas
  feed: object  # research/data/feeds.py
  train_step: Callable  # (state, *inputs) -> (state, metrics); inputs from feed.calls
  evaluations: list[Evaluation]
  writer: object
  lock: workdir_lib.Lock

  def close(self) -> None:
    """Waits for pending checkpoint writes, flushes metrics and releases the workdir (also
    after an error)."""
    try:
      self.checkpointer.close()
    finally:
      try:
        self.writer.close()
      finally:
        self.lock.release()


@dataclasses.dataclass
class Setup:
  """A run's config checked against its workdir, and its training split: what ``build``
  starts from, and enough to tell a finished run without building it."""
  config: ml_collections.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  data: splits.RunData
  train: pipeline.TrainBatches
  num_steps: int
  checkpointer: checkpoint.Checkpointer
  config_changed: bool  # the workdir's run continues with changes (``check_config_changes``)
  lock: workdir_lib.Lock
  # replicas with their own classes (replicas.train_labels): each one's training split, in
  # the run's seed (the feed gives each its replica's); empty: every replica reads ``train``
  replica_trains: list[pipeline.TrainBatches] = dataclasses.field(default_factory=list)

  def close(self) -> None:
    """Waits for pending checkpoint writes and releases the workdir."""
    try:
      self.checkpointer.close()
    finally:
      self.lock.release()

  def finished_results(self) -> dict | None:
    """The results of a run that already trained to its last step with this config."""
    results = workdir_lib.read_results(self.workdir)
    if (results is None or self.config_changed
        or self.checkpointer.latest_step() != self.num_steps):
      return None
    return results if results.get("step") == self.num_steps else None


def check_config_changes(config: ml_collections.ConfigDict, workdir: str, step: int | None,
                         allow_changes: bool) -> bool:
  """A run that has a checkpoint continues only with the config it recorded, or, with
  ``allow_changes``, with the changes appended to ``config_history.jsonl``; returns whether
  there are changes."""
  if step is None or not os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
    return False
  changes = workdir_lib.config_changes(workdir_lib.read_config(workdir), config)
  if not changes:
    return False
  described = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
  if not allow_changes:
    raise errors.ConfigError(
        f"{workdir} holds a run (checkpoint at step {step}) with another config: {described}; "
        f"rerun with the config it recorded, use another --workdir, or continue with these "
        f"changes with --allow_config_changes (they are recorded in "
        f"{workdir_lib.CONFIG_HISTORY_FILE})")
  logging.warning("Continuing the run in %s from step %d with changes: %s", workdir, step,
                  described)
  workdir_lib.append_config_history(workdir, step, changes)
  return True


def classifier_classes(config: ml_collections.ConfigDict) -> int | None:
  """A single-label classifier's ``model.num_classes``: every split's labels must be below it."""
  if tasks_base.CLASSIFIER not in tasks_base.task_class(config).capabilities:
    return None
  return config.model.get("num_classes")


def check_history(workdir: str, checkpointer: checkpoint.Checkpointer,
                  config: ml_collections.ConfigDict, num_steps: int) -> None:
  """Refuses to start a run whose workdir says an earlier one got further than its
  checkpoints: checkpoints moved aside as unreadable and none left (starting over would
  silently drop them), metrics logged past a checkpoint that is gone (two histories would
  interleave), or a checkpoint past the last step."""
  latest = checkpointer.latest_step()
  if latest is not None:
    if latest > num_steps:
      raise errors.ConfigError(
          f"the checkpoint in {checkpointer.directory} is at step {latest}, past this config's "
          f"last step {num_steps}; train to at least step {latest} (total_steps), or evaluate "
          f"it with --mode=eval")
    return
  aside = f"{checkpointer.directory}_unreadable"
  if os.path.isdir(aside) and os.listdir(aside):
    raise errors.UserError(
        f"{workdir} has no readable checkpoint, and the unreadable ones of steps "
        f"{', '.join(sorted(os.listdir(aside), key=int))} are in {aside}; move that folder "
        f"out of the workdir (or delete it) to start over from step 0, or use another --workdir")
  path = os.path.join(workdir, writers.METRICS_FILE)
  logged = max((r.get("step", 0) for r in writers.read_metrics(workdir)), default=0) \
      if os.path.exists(path) else 0
  if logged > min(config.checkpoint_every_steps, num_steps):
    raise errors.UserError(
        f"{path} has records up to step {logged} but {checkpointer.directory} has no "
        f"checkpoint: they were deleted, and starting over would mix two runs' records; "
        f"delete the workdir's metrics.jsonl and events files too to start over, or use "
        f"another --workdir")


def setup(config: ml_collections.ConfigDict, workdir: str, allow_changes: bool = False) -> Setup:
  """Validates the config, loads the training split, completes the config from it, locks the
  workdir and, once the run is accepted for it (``check_config_changes``, ``check_history``),
  records the config in config.json: a refused run writes nothing."""
  validation.validate(config, workdir)
  warn_if_xla_flags_missing(config.get("xla_flags", ""))
  profiling.use_compilation_cache(config.compilation_cache_dir)
  data = splits.RunData(config.data, workdir, config.eval_batch_size,
                       num_classes=classifier_classes(config))
  replica_trains = [train_batches(config, d) for d in replica_data(config, data)]
  train = replica_trains[0] if replica_trains else train_batches(config, data)
  data.trained_spec = train.spec()  # every evaluation's data must fit the model
  tasks_base.task_class(config).complete_config(config, train.spec())
  validation.check_eval_memory(config, train.spec())  # the data known, nothing written yet
  num_steps = shared_total_steps(config, replica_trains or [train])
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise errors.UserError(f"{directory} is not a folder; it is where the run's checkpoints go: "
                           f"move it away, or use another --workdir")
  os.makedirs(workdir, exist_ok=True)  # the data loaded and the config is valid
  lock = workdir_lib.Lock(workdir)
  checkpointer = None
  try:
    checkpointer = checkpoint.Checkpointer(directory, config.keep_checkpoints)
    check_history(workdir, checkpointer, config, num_steps)
    changed = check_config_changes(config, workdir, checkpointer.latest_step(), allow_changes)
    workdir_lib.check_input_spec(workdir, train.spec(), fresh=checkpointer.latest_step() is None)
    workdir_lib.write_config(config, workdir)
    if data.labelled is not None:  # the run accepted: its labelled subset recorded or checked
      splits.record_labelled(workdir, config.data, data.labelled)
  except BaseException:
    if checkpointer is not None:
      checkpointer.close()
    lock.release()
    raise
  return Setup(config, workdir, sharding.make_mesh(), data, train, num_steps, checkpointer,
               changed, lock, replica_trains)


def build(config: ml_collections.ConfigDict, workdir: str, allow_changes: bool = False,
          prepared: Setup | None = None) -> Experiment:
  """The run ready to train: ``setup``, then the task, the newest checkpoint (if any), the
  train step with its feed, and the evaluations with their data."""
  prepared = prepared or setup(config, workdir, allow_changes)
  mesh, data, train, num_steps, checkpointer = (prepared.mesh, prepared.data, prepared.train,
                                                prepared.num_steps, prepared.checkpointer)
  try:
    task = tasks_base.make_task(config)
    adaptor = replicas_lib.from_config(config)
    optimizer = optim.make_optimizer(config.optimizer, num_steps)
    example = {k: v[:1] for k, v in train.local_batch(0).items()}
    init = state_lib.make_init(task, optimizer, preprocess.parse(config.data.preprocess))
    state = adaptor.init(init, example, sharding.replicated(mesh))
    if checkpointer.latest_step() is not None:
      state = checkpointer.restore(state)
      logging.info("Resumed from the checkpoint at step %d.", state_lib.step_of(state))
    else:
      state = jax.device_put(warm_start.apply(config, task, state, train.arrays,
                                              adaptor.count()), sharding.replicated(mesh))
    if adaptor.describe() is not None:
      workdir_lib.write_json(workdir, workdir_lib.REPLICAS_FILE, adaptor.describe())
    feed = feeds.make(train, mesh, config.steps_per_call,
                      replica_batches(adaptor, train, prepared.replica_trains))
    train_step = make_train_step(config, task, adaptor, feed, mesh, num_steps)
    evaluations = make_evaluations(config, task, workdir, data, mesh)
  except BaseException:
    prepared.close()  # orbax's threads would keep the process alive
    raise
  num_params = sum(np.size(p) for p in jax.tree.leaves(state.params)) // adaptor.count()
  logging.info("%d parameters; %d steps (%d per epoch), from step %d.",
               num_params, num_steps, train.steps_per_epoch, state_lib.step_of(state))
  return Experiment(config, workdir, mesh, train, num_steps, state, checkpointer, task, adaptor,
                    feed, train_step, evaluations, writers.create_writer(workdir), prepared.lock)

