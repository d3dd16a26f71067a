"""The one training loop: every task and model runs through ``train_and_evaluate``.

    state, metrics = train_step(state, batch)      # jitted once, state donated
    periodically: log train metrics, evaluate on validation, write images, checkpoint
    at the end: evaluate on test, check the gate

The loop never syncs with the devices except when it logs, evaluates or saves; it only
waits for the call two before the one it just queued (``dispatch.RunAhead``), so the
devices always have the next calls queued.
"""
import dataclasses
import json
import os
import time
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import periodic_actions
from jax.experimental import multihost_utils

from research.core import (checkpoint, dispatch, errors, gate, optim, preemption,
                           replicas as replicas_lib, sharding, state as state_lib, step as step_lib,
                           validation, writers)
from research.data import pipeline, preprocess, text
from research.evaluation import images as images_lib
from research.tasks import base as tasks_base


@dataclasses.dataclass
class Data:
  train: pipeline.TrainBatches
  val: list  # global eval batches, device-resident
  test: list


def load_data(config: ml_collections.ConfigDict, batch_sharding, workdir: str) -> Data:
  """Loads all three splits before anything compiles, so missing data fails fast; text is
  encoded on the host by the workdir's tokenizer."""
  arrays = {name: pipeline.load_split(config.data, config.data[f"{name}_split"], f"{name}_split")
            for name in ("train", "val", "test")}
  arrays = text.encode_splits(config.data, arrays, workdir)

  def device_batches(split):
    return [sharding.to_global_array(b, batch_sharding)
            for b in pipeline.eval_batches(arrays[split], config.eval_batch_size)]

  return Data(train=pipeline.TrainBatches(arrays["train"], config.batch_size, config.seed),
              val=device_batches("val"), test=device_batches("test"))


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.total_steps > 0:
    return config.total_steps
  return max(1, int(round(config.num_epochs * steps_per_epoch)))


def evaluate(eval_step, state, batches: list, rng: jax.Array) -> dict[str, float]:
  """Metrics over a whole split; the eval key depends only on the batch index."""
  total, run_ahead = None, dispatch.RunAhead()
  for i, batch in enumerate(batches):
    metrics = eval_step(state, batch, jax.random.fold_in(rng, i))
    total = dispatch.accumulate(total, metrics)
    run_ahead(metrics)
  return {k: float(v) for k, v in total.compute().items()}


EVAL_KEY = 0  # fixed, so runs with any seed are scored on the same binarized images


def run_rngs(seed: int) -> dict[str, jax.Array]:
  """The run's root keys: parameter init and training from the seed; evaluation fixed."""
  init, train = jax.random.split(jax.random.PRNGKey(seed))
  return {"init": init, "train": train, "eval": jax.random.PRNGKey(EVAL_KEY)}


def make_init(task, optimizer, preprocess_fn):
  """``init(seed, example) -> TrainState``: the task's variables initialised on
  ``example``'s shapes (pure; vmapped over seeds for replicas)."""
  def init(seed, example):
    rngs = run_rngs(seed)
    variables = task.init_variables(rngs["init"], preprocess_fn(example, rngs["init"]))
    params, model_state = state_lib.split_variables(variables)
    return state_lib.create_train_state(params, model_state, optimizer, rngs["train"])

  return init


# The initialisation runs once: compiled without XLA's backend optimisations on CPU it
# is ready in a third of the time (cnn_fast: 1.4 s instead of 4.2 s of start-up) and
# gives the same parameters to float rounding (tests/test_startup.py).
CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def jit_init(init_fn, **jit_kwargs):
  """``jax.jit`` for a one-off initialisation function."""
  options = CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
  return jax.jit(init_fn, compiler_options=options, **jit_kwargs)


def init_state(task, optimizer, preprocess_fn, example: dict, seed: int) -> state_lib.TrainState:
  """A fresh TrainState for ``seed``."""
  return jit_init(make_init(task, optimizer, preprocess_fn))(seed, example)


def prefixed(prefix: str, metrics: dict) -> dict:
  return {f"{prefix}/{k}": v for k, v in metrics.items()}


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def checked_scalars(train_metrics, checkpointer: checkpoint.Checkpointer,
                    replicas: replicas_lib.Replicas | None = None) -> dict[str, np.ndarray]:
  """The window's train metrics (arrays over replicas, if any); raises
  errors.NonFiniteError when a guard fired."""
  scalars = replicas_lib.compute(train_metrics, replicas)
  fired = {k[len(step_lib.GUARD_PREFIX):]: scalars.pop(k) for k in list(scalars)
           if k.startswith(step_lib.GUARD_PREFIX)}  # per replica: the first step of any
  fired = {name: int(steps[steps >= 0].min()) for name, steps in fired.items()
           if np.any(steps >= 0)}
  if fired:
    name, step = min(fired.items(), key=lambda item: item[1])
    raise errors.NonFiniteError(
        f"training diverged: {name} is not finite at step {step}; the last good checkpoint "
        f"(step {checkpointer.latest_step()}) is kept in {checkpointer.directory}. Lower "
        f"optimizer.learning_rate, clip gradients (optimizer.grad_clip_norm) or skip such "
        f"updates (optimizer.skip_nonfinite=True)")
  return scalars


class Evaluator:
  """Validation metrics and image summaries, written at each evaluation."""

  def __init__(self, task, preprocess_fn, eval_step, data: Data, writer, workdir: str, rng,
               replicas: replicas_lib.Replicas | None = None, replicated=None):
    self.eval_step, self.data, self.writer, self.workdir, self.rng = (
        eval_step, data, writer, workdir, rng)
    self.replicas, self.replicated = replicas, replicated
    if replicas is not None:
      self.take = replicas_lib.make_take(replicated)

    def images(params, model_state, batch):
      batch, _ = step_lib.split_mask(batch)
      return task.images(params, model_state, preprocess_fn(batch, rng), rng)

    self.images = jax.jit(images)
    self.task = task
    if task.predict is not None:
      def predict(params, model_state, batch, rng):
        batch, mask = step_lib.split_mask(batch)
        preprocess_rng, predict_rng = jax.random.split(rng)
        outputs = task.predict(params, model_state, preprocess_fn(batch, preprocess_rng), predict_rng)
        return {**outputs, "mask": mask}

      self.predict = jax.jit(predict)

  def per_replica(self, fn, state, *args) -> dict[str, float]:
    """``fn(state, *args, name)``, or with replicas each replica's, under ``replica_I/``."""
    if self.replicas is None:
      return fn(state, *args, "")
    results = {}
    for i in range(len(self.replicas)):
      name = self.replicas.prefix(i)
      results.update(prefixed(name, fn(self.take(state, i), *args, name)))
    return results

  def metrics(self, state, split: str) -> dict[str, float]:
    return self.per_replica(lambda state, name: prefixed(
        split, evaluate(self.eval_step, state, getattr(self.data, split), self.rng)), state)

  def report(self, state, split: str) -> dict[str, float]:
    """The task's split-level evaluation (e.g. confusion matrix, calibration); process 0
    writes its files to ``workdir/reports`` (``reports/replica_I``). Empty for tasks
    without one."""
    if self.task.predict is None:
      return {}
    return self.per_replica(self._report, state, split)

  def _report(self, state, split: str, name: str) -> dict[str, float]:
    outputs = [multihost_utils.process_allgather(
        self.predict(state.params, state.model_state, batch, jax.random.fold_in(self.rng, i)),
        tiled=True) for i, batch in enumerate(getattr(self.data, split))]
    outputs = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    keep = outputs.pop("mask") > 0
    predictions = {k: v[keep] for k, v in outputs.items()}
    directory = os.path.join(self.workdir, "reports", name) if jax.process_index() == 0 else None
    return prefixed(split, self.task.report(predictions, directory, split))

  def __call__(self, state, step: int) -> dict[str, float]:
    metrics = self.metrics(state, "val")
    self.writer.write_scalars(step, metrics)
    self.write_images(state, step)
    return metrics

  def write_images(self, state, step: int) -> None:
    self.per_replica(self._write_images, state, step)

  def _write_images(self, state, step: int, name: str) -> dict:
    summaries = self.images(state.params, state.model_state, self.data.val[0])
    grids = {"_".join(filter(None, [name, k])): images_lib.make_grid(np.asarray(v), columns=8)
             for k, v in summaries.items()}
    if not grids:
      return {}
    self.writer.write_images(step, {k: g[None] for k, g in grids.items()})
    if jax.process_index() == 0:
      for key, grid in grids.items():
        images_lib.save_png(os.path.join(self.workdir, "images", f"{key}_{step:08d}.png"), grid)
    return {}


INPUT_SPEC_FILE = "input_spec.json"


def check_input_spec(workdir: str, spec: dict, fresh: bool) -> None:
  """Records the training data's per-example shapes and dtypes on a fresh run; any later
  run in the workdir (resume, eval) must feed the same, or it gets a clear error."""
  path = os.path.join(workdir, INPUT_SPEC_FILE)
  if fresh or not os.path.exists(path):
    if jax.process_index() == 0:
      with open(path, "w") as f:
        json.dump(spec, f)
    return
  with open(path) as f:
    recorded = json.load(f)
  for name, (shape, dtype) in spec.items():
    if name in recorded and (list(shape), dtype) != (list(recorded[name][0]), recorded[name][1]):
      raise errors.ConfigError(
          f"the data's {name} is {tuple(shape)} {dtype}, but the model in {workdir} was "
          f"trained on {tuple(recorded[name][0])} {recorded[name][1]}; use the dataset and "
          f"preprocessing it was trained with, or another --workdir")


@dataclasses.dataclass
class Experiment:
  """Everything a run needs, built once from the config: data, task, state, steps, outputs."""
  config: ml_collections.ConfigDict
  workdir: str
  data: Data
  batch_sharding: jax.sharding.NamedSharding
  num_steps: int
  state: state_lib.TrainState
  checkpointer: checkpoint.Checkpointer
  train_step: Callable  # (state, *inputs) -> (state, metrics); inputs from train_calls
  writer: object
  evaluator: Evaluator
  device_train: dict | None = None  # the training split on device (steps_per_call > 1)
  indices_sharding: jax.sharding.NamedSharding | None = None
  replicas: replicas_lib.Replicas | None = None  # vmap-parallel replicas of the run

  def close(self) -> None:
    """Waits for pending checkpoint writes and flushes metrics (also after an error)."""
    self.checkpointer.close()
    self.writer.close()


def use_compilation_cache(directory: str) -> None:
  """Compiled steps persist in ``directory`` and later runs load them instead of compiling."""
  if directory:
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def num_microbatches(config: ml_collections.ConfigDict) -> int:
  """How many parts the train step splits each batch into (``microbatch_size``; 0: one)."""
  return config.batch_size // config.microbatch_size if config.microbatch_size else 1


def make_train_fn(config, task, optimizer, guards, replicated, batch_sharding, indices_sharding,
                  num_steps: int, replicas: replicas_lib.Replicas | None = None):
  """The jitted train and eval steps: one step per call fed a batch, or with
  ``steps_per_call > 1`` that many steps per call gathered from the device-resident split,
  or with replicas one vmapped step fed a batch per replica and their learning rates."""
  preprocess_fn = preprocess.parse(config.data.preprocess)
  # Augmentation ops follow the preprocessing ops in one chain, in training only.
  train_preprocess_fn = preprocess.parse(
      "|".join(filter(None, [config.data.preprocess, config.data.augment])))
  compute_dtype = None if config.precision == "float32" else jax.numpy.dtype(config.precision)
  step_options = dict(guards=guards, compute_dtype=compute_dtype,
                      microbatches=num_microbatches(config))
  train_step = step_lib.make_train_step(task, optimizer, train_preprocess_fn, **step_options)
  train_in_shardings = None
  if replicas is not None:  # batches stacked on a replica axis, as the indices are
    train_step = replicas_lib.make_train_step(task, config.optimizer, num_steps,
                                              train_preprocess_fn, **step_options)
    train_in_shardings = (indices_sharding, replicated)
  elif config.steps_per_call > 1:
    train_step = step_lib.make_multi_step(train_step, batch_sharding)
    train_in_shardings = (replicated, indices_sharding)
  return step_lib.jit_steps(train_step, step_lib.make_eval_step(task, preprocess_fn),
                            replicated, batch_sharding, train_in_shardings)


def warn_if_xla_flags_missing(xla_flags: str) -> None:
  """``config.xla_flags`` reach XLA only through ``launch.apply_xla_flags``, before JAX starts
  its backend; a run built another way (e.g. in a notebook) would silently lack them."""
  if xla_flags and xla_flags not in os.environ.get("XLA_FLAGS", ""):
    logging.warning("config.xla_flags=%r are not in XLA_FLAGS, so XLA runs without them: "
                    "set them before JAX starts (launch.py does)", xla_flags)


def build(config: ml_collections.ConfigDict, workdir: str, training: bool = True) -> Experiment:
  """Validates the config, loads the data and restores the newest checkpoint, if any."""
  validation.validate(config, workdir)
  warn_if_xla_flags_missing(config.get("xla_flags", ""))
  use_compilation_cache(config.compilation_cache_dir)
  if training:
    write_config(config, workdir)
  mesh = sharding.make_mesh()
  replicated, batch_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  data = load_data(config, batch_sharding, workdir)
  num_steps = total_steps(config, data.train.steps_per_epoch)
  checkpointer = checkpoint.Checkpointer(
      os.path.join(os.path.abspath(workdir), "checkpoints"), config.keep_checkpoints)
  if not training and checkpointer.latest_step() is None:
    raise errors.UserError(f"no checkpoint in {checkpointer.directory} to evaluate: train "
                           f"first, or pass the --workdir of a trained run")
  check_input_spec(workdir, data.train.spec(), fresh=checkpointer.latest_step() is None)

  task = tasks_base.make_task(config)
  preprocess_fn = preprocess.parse(config.data.preprocess)
  optimizer = optim.make_optimizer(config.optimizer, num_steps)
  example = {k: v[:1] for k, v in data.train.local_batch(0).items()}
  replicas = replicas_lib.Replicas.from_config(config)
  if replicas is None:
    state = jax.device_put(init_state(task, optimizer, preprocess_fn, example, config.seed),
                           replicated)
  else:
    init = replicas_lib.make_init(make_init(task, optimizer, preprocess_fn), replicas.seeds)
    state = jit_init(init, out_shardings=replicated)(example)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore_latest(state)
    logging.info("Resumed from the checkpoint at step %d.", state_lib.step_of(state))

  guards = ("params",) if config.optimizer.skip_nonfinite else ("loss", "grad_norm")
  indices_sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(None, sharding.DATA_AXIS))
  train_step, eval_step = make_train_fn(config, task, optimizer, guards, replicated,
                                        batch_sharding, indices_sharding, num_steps, replicas)
  device_train = None
  if config.steps_per_call > 1 and training:
    device_train = sharding.to_global_array(data.train.arrays, replicated)
  writer = writers.create_writer(workdir)
  evaluator = Evaluator(task, preprocess_fn, eval_step, data, writer, workdir,
                        run_rngs(config.seed)["eval"], replicas, replicated)
  num_params = sum(np.size(p) for p in jax.tree.leaves(state.params))
  num_params //= 1 if replicas is None else len(replicas)  # per replica
  logging.info("%d parameters; %d steps (%d per epoch), from step %d.",
               num_params, num_steps, data.train.steps_per_epoch, state_lib.step_of(state))
  return Experiment(config, workdir, data, batch_sharding, num_steps, state, checkpointer,
                    train_step, writer, evaluator, device_train, indices_sharding, replicas)


def call_ends(start: int, end: int, steps_per_call: int) -> Iterator[int]:
  """The step after each train call from ``start`` to ``end``: at multiples of
  ``steps_per_call`` (and ``end``), so logging, evaluation and checkpoints fall on them.
  Lazy: ``end`` may be far away (benchmarks/throughput.py)."""
  while start < end:
    start = min((start // steps_per_call + 1) * steps_per_call, end)
    yield start


def train_calls(exp: Experiment, start: int, end: int):
  """Yields ``(step, inputs)`` per train call from step ``start`` to ``end``: the state
  reaches ``step`` after ``exp.train_step(state, *inputs)``. Inputs are one host batch
  per call, or the indices of ``steps_per_call`` steps into the device-resident split;
  either way the examples of step ``s`` are ``exp.data.train.indices(s)``."""
  if exp.replicas is not None:  # each replica's batch (its own data order) and learning rate
    train = replicas_lib.TrainBatches(exp.data.train, exp.replicas.seeds)
    learning_rates = jax.device_put(np.asarray(exp.replicas.learning_rates, np.float32),
                                    exp.evaluator.replicated)
    batches = pipeline.prefetch(
        sharding.to_global_array(train.local_batch(s), exp.indices_sharding)
        for s in range(start, end))
    yield from zip(range(start + 1, end + 1), ((b, learning_rates) for b in batches))
    return
  if exp.device_train is None:
    batches = pipeline.prefetch(
        sharding.to_global_array(exp.data.train.local_batch(s), exp.batch_sharding)
        for s in range(start, end))
    yield from zip(range(start + 1, end + 1), ((b,) for b in batches))
    return
  first = start
  for last in call_ends(start, end, exp.config.steps_per_call):
    indices = sharding.to_global_array(
        exp.data.train.local_step_indices(first, last), exp.indices_sharding)
    yield last, (exp.device_train, indices)
    first = last


class Profiler:
  """A jax.profiler trace of the steps ``config.profile_steps`` (``START:END``) in
  ``workdir/profile`` (TensorBoard's profile plugin or Perfetto read it)."""

  def __init__(self, spec: str, workdir: str):
    self.steps = validation.parse_profile_steps(spec) or None
    self.directory = os.path.join(workdir, "profile")
    self.active = False

  def __call__(self, step: int, state) -> None:
    """Called after the call that reached ``step``."""
    if self.steps is None:
      return
    start, end = self.steps
    if not self.active and start <= step < end:
      jax.block_until_ready(state)
      jax.profiler.start_trace(self.directory)
      self.active = True
    elif self.active and step >= end:
      self.stop(state)

  def stop(self, state) -> None:
    if self.active:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active, self.steps = False, None


def train(exp: Experiment, step_hook: Callable[[int], None] | None = None):
  """Runs the train step from the restored step to the last; returns the final state and
  the last validation metrics (None when there was nothing left to train)."""
  config, state, writer, checkpointer = exp.config, exp.state, exp.writer, exp.checkpointer
  start_step, num_steps = state_lib.step_of(state), exp.num_steps
  if start_step == 0:
    writer.write_hparams({k: v for k, v in config.to_dict().items() if not isinstance(v, dict)})
  # ReportProgress counting steps wants every step; calls of several steps report by time.
  every_steps = config.log_every_steps if config.steps_per_call == 1 else None
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer, every_steps=every_steps, every_secs=None
      if every_steps else 60.0)
  train_metrics, val_metrics = None, None
  window_start, window_step = time.perf_counter(), start_step
  profiler, run_ahead = Profiler(config.profile_steps, exp.workdir), dispatch.RunAhead()
  with preemption.SignalWatcher() as signals:
    for step, inputs in train_calls(exp, start_step, num_steps):
      state, metrics = exp.train_step(state, *inputs)
      profiler(step, state)
      train_metrics = dispatch.accumulate(train_metrics, metrics)
      run_ahead(metrics)
      report_progress(step)
      is_last, is_log_step = step == num_steps, step % config.log_every_steps == 0
      stop = signals.stop_requested(can_sync=is_log_step)
      if is_log_step or is_last or stop:
        scalars = checked_scalars(train_metrics, checkpointer, exp.replicas)
        elapsed = time.perf_counter() - window_start
        scalars["examples_per_sec"] = (step - window_step) * config.batch_size / elapsed
        writer.write_scalars(step, replicas_lib.expand_scalars(prefixed("train", scalars)))
        train_metrics, window_step = None, step
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        if train_metrics is not None:  # steps since the last log must be finite too
          checked_scalars(train_metrics, checkpointer, exp.replicas)
        checkpointer.save(state)
      if stop:
        raise errors.Preempted(signals.signal_name, step, checkpointer.directory)
      if step % config.eval_every_steps == 0 or is_last:
        with report_progress.timed("eval"):
          val_metrics = exp.evaluator(state, step)
      if window_step == step:  # the throughput window restarts after logging and eval
        window_start = time.perf_counter()
      if step_hook is not None:
        step_hook(step)
  profiler.stop(state)
  return state, val_metrics


def final_results(exp: Experiment, state, val_metrics: dict | None) -> dict[str, float]:
  """Validation and test metrics of ``state``, the gate, written to results.json."""
  step = state_lib.step_of(state)
  results = dict(val_metrics or exp.evaluator(state, step))
  test_metrics = exp.evaluator.metrics(state, "test")
  test_metrics.update(exp.evaluator.report(state, "test"))
  exp.writer.write_scalars(step, test_metrics)
  results.update(test_metrics)
  if exp.replicas is None:
    passed = gate.check(exp.config.gate, results)
  else:
    passed = replicas_lib.check_gate(exp.config.gate, results, exp.replicas)
  if passed is not None:
    results["gate_passed"] = float(passed)
  if jax.process_index() == 0:
    with open(os.path.join(exp.workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       step_hook: Callable[[int], None] | None = None) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming from its checkpoints) and returns the
  final validation and test metrics, plus ``gate_passed`` when the config sets a gate.

  ``step_hook(step)`` runs after every step (tests use it to interrupt a run).
  """
  exp = build(config, workdir)
  try:
    state, val_metrics = train(exp, step_hook)
    return final_results(exp, state, val_metrics)
  finally:
    exp.close()


def sample_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                      num_samples: int) -> dict[str, float]:
  """Draws ``num_samples`` images from the newest checkpoint's generative model (the
  task's ``sample``) without training; writes ``WORKDIR/samples/samples_STEP.{png,npy}``."""
  exp = build(config, workdir, training=False)
  try:
    task, state = exp.evaluator.task, exp.state
    if not hasattr(task, "sample"):
      raise errors.ConfigError(f"task.name={config.task.name!r} cannot sample; --mode=sample "
                               f"needs a generative task (vae)")
    if num_samples < 1:
      raise errors.ConfigError(f"--num_samples={num_samples} is not allowed; it must be positive")
    sample = jax.jit(task.sample, static_argnums=3)
    images = sample(state.params, state.model_state, jax.random.PRNGKey(config.seed), num_samples)
    images = np.asarray(images.addressable_data(0))  # replicated: every process holds all
    step = state_lib.step_of(state)
    if jax.process_index() == 0:
      path = os.path.join(workdir, "samples", f"samples_{step:08d}")
      images_lib.save_png(path + ".png", images_lib.make_grid(images, columns=8))
      np.save(path + ".npy", images)
      logging.info("Wrote %d samples of the checkpoint at step %d to %s.{png,npy}",
                   num_samples, step, path)
    return {"samples": float(num_samples), "step": float(step)}
  finally:
    exp.close()


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Validation and test metrics of the newest checkpoint in ``workdir``; no training."""
  exp = build(config, workdir, training=False)
  try:
    return final_results(exp, exp.state, None)
  finally:
    exp.close()
