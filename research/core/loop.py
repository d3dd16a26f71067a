"""The one training loop: every task and model runs through ``train_and_evaluate``.

    state, metrics = train_step(state, batch)      # jitted once, state donated
    periodically: log train metrics, evaluate on validation, write images, checkpoint
    at the end: evaluate on test, check the gate

The loop never syncs with the devices except when it logs, evaluates or saves.
"""
import dataclasses
import json
import os
import re
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import periodic_actions

from research.core import checkpoint, errors, optim, sharding, state as state_lib, step as step_lib, writers
from research.data import pipeline, preprocess
from research.evaluation import images as images_lib
from research.tasks import base as tasks_base


@dataclasses.dataclass
class Data:
  train: pipeline.TrainBatches
  val: list  # global eval batches, device-resident
  test: list


def load_data(config: ml_collections.ConfigDict, batch_sharding) -> Data:
  """Loads all three splits before anything compiles, so missing data fails fast."""
  sharding.local_batch_size(config.batch_size)
  sharding.local_batch_size(config.eval_batch_size)
  arrays = {name: pipeline.load_split(config.data, getattr(config.data, f"{name}_split"))
            for name in ("train", "val", "test")}

  def device_batches(split):
    return [sharding.to_global_array(b, batch_sharding)
            for b in pipeline.eval_batches(arrays[split], config.eval_batch_size)]

  return Data(train=pipeline.TrainBatches(arrays["train"], config.batch_size, config.seed),
              val=device_batches("val"), test=device_batches("test"))


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.total_steps > 0:
    return config.total_steps
  return max(1, int(round(config.num_epochs * steps_per_epoch)))


def parse_gate(gate: str):
  """``"test/accuracy>=0.99"`` -> (metric, op, threshold); ``""`` -> None."""
  if not gate:
    return None
  match = re.fullmatch(r"\s*([\w/]+)\s*(>=|<=)\s*([-+\deE.]+)\s*", gate)
  if not match:
    raise errors.ConfigError(f"gate must look like 'test/accuracy>=0.99' or 'test/neg_elbo<=100', not {gate!r}")
  return match[1], match[2], float(match[3])


def check_gate(gate: str, results: dict) -> bool | None:
  parsed = parse_gate(gate)
  if parsed is None:
    return None
  metric, op, threshold = parsed
  if metric not in results:
    raise errors.ConfigError(f"gate metric {metric!r} is not among the results {sorted(results)}")
  value = results[metric]
  return value >= threshold if op == ">=" else value <= threshold


def evaluate(eval_step, state, batches: list, rng: jax.Array) -> dict[str, float]:
  """Metrics over a whole split; the eval key depends only on the batch index."""
  total = None
  for i, batch in enumerate(batches):
    metrics = eval_step(state, batch, jax.random.fold_in(rng, i))
    total = metrics if total is None else total.merge(metrics)
  return {k: float(v) for k, v in total.compute().items()}


def run_rngs(seed: int) -> dict[str, jax.Array]:
  """The run's root keys: parameter init, training steps and evaluation."""
  return dict(zip(("init", "train", "eval"), jax.random.split(jax.random.PRNGKey(seed), 3)))


def init_state(task, optimizer, preprocess_fn, example: dict, seed: int) -> state_lib.TrainState:
  """A fresh TrainState: the task's variables initialised on ``example``'s shapes."""
  rngs = run_rngs(seed)

  @jax.jit
  def init(example):
    variables = task.init_variables(rngs["init"], preprocess_fn(example, rngs["init"]))
    params, model_state = state_lib.split_variables(variables)
    return state_lib.create_train_state(params, model_state, optimizer, rngs["train"])

  return init(example)


def prefixed(prefix: str, metrics: dict) -> dict:
  return {f"{prefix}/{k}": v for k, v in metrics.items()}


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       step_hook: Callable[[int], None] | None = None) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming from its checkpoints) and returns the
  final validation and test metrics, plus ``gate_passed`` when the config sets a gate.

  ``step_hook(step)`` runs after every step (tests use it to interrupt a run).
  """
  parse_gate(config.gate)
  os.makedirs(workdir, exist_ok=True)
  write_config(config, workdir)
  mesh = sharding.make_mesh()
  replicated, batch_sharding = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  data = load_data(config, batch_sharding)
  num_steps = total_steps(config, data.train.steps_per_epoch)

  task = tasks_base.make_task(config)
  preprocess_fn = preprocess.parse(config.data.preprocess)
  optimizer = optim.make_optimizer(config.optimizer, num_steps)
  eval_rng = run_rngs(config.seed)["eval"]
  example = {k: v[:1] for k, v in data.train.local_batch(0).items()}
  state = jax.device_put(init_state(task, optimizer, preprocess_fn, example, config.seed), replicated)
  checkpointer = checkpoint.Checkpointer(
      os.path.join(os.path.abspath(workdir), "checkpoints"), config.keep_checkpoints)
  if checkpointer.latest_step() is not None:
    state = checkpointer.restore_latest(state)
    logging.info("Resumed from the checkpoint at step %d.", int(state.step))
  start_step = int(state.step)

  train_step, eval_step = step_lib.jit_steps(
      step_lib.make_train_step(task, optimizer, preprocess_fn),
      step_lib.make_eval_step(task, preprocess_fn), replicated, batch_sharding)
  image_fn = jax.jit(task.images, out_shardings=replicated)
  writer = writers.create_writer(workdir)
  if start_step == 0:
    writer.write_hparams({k: v for k, v in config.to_dict().items() if not isinstance(v, dict)})
  num_params = sum(np.size(p) for p in jax.tree.leaves(state.params))
  logging.info("%d parameters; %d steps (%d per epoch), from step %d.",
               num_params, num_steps, data.train.steps_per_epoch, start_step)

  def write_images(state, step):
    image_batch = preprocess_fn(dict(data.val[0]), eval_rng)
    image_batch.pop("mask")
    summaries = {k: np.asarray(v) for k, v in
                 image_fn(state.params, state.model_state, image_batch, eval_rng).items()}
    if not summaries:
      return
    grids = {k: images_lib.make_grid(v, columns=8) for k, v in summaries.items()}
    writer.write_images(step, {k: g[None] for k, g in grids.items()})
    if jax.process_index() == 0:
      for name, grid in grids.items():
        images_lib.save_png(os.path.join(workdir, "images", f"{name}_{step:08d}.png"), grid)

  def run_eval(state, step):
    metrics = prefixed("val", evaluate(eval_step, state, data.val, eval_rng))
    writer.write_scalars(step, metrics)
    write_images(state, step)
    return metrics

  report_progress = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer, every_steps=config.log_every_steps)
  train_metrics, val_metrics = None, None
  window_start, window_step = time.perf_counter(), start_step
  batches = pipeline.prefetch(
      sharding.to_global_array(data.train.local_batch(s), batch_sharding)
      for s in range(start_step, num_steps))
  for step, batch in zip(range(start_step + 1, num_steps + 1), batches):
    state, metrics = train_step(state, batch)
    train_metrics = metrics if train_metrics is None else train_metrics.merge(metrics)
    report_progress(step)
    is_last = step == num_steps
    if step % config.log_every_steps == 0 or is_last:
      scalars = {k: float(v) for k, v in train_metrics.compute().items()}
      elapsed = time.perf_counter() - window_start
      scalars["examples_per_sec"] = (step - window_step) * config.batch_size / elapsed
      writer.write_scalars(step, prefixed("train", scalars))
      train_metrics, window_step = None, step
    if step % config.checkpoint_every_steps == 0 or is_last:
      checkpointer.save(state)
    if step % config.eval_every_steps == 0 or is_last:
      with report_progress.timed("eval"):
        val_metrics = run_eval(state, step)
    if window_step == step:  # the throughput window restarts after logging and eval
      window_start = time.perf_counter()
    if step_hook is not None:
      step_hook(step)

  results = val_metrics or run_eval(state, num_steps)  # None when resumed at the end
  test_metrics = prefixed("test", evaluate(eval_step, state, data.test, eval_rng))
  writer.write_scalars(num_steps, test_metrics)
  results.update(test_metrics)
  passed = check_gate(config.gate, results)
  if passed is not None:
    results["gate_passed"] = float(passed)
  checkpointer.close()
  writer.flush()
  writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results
