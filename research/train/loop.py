"""The one training loop: every task and model runs through ``train_and_evaluate``.

    state, metrics = train_step(state, *inputs)    # jitted once, state donated
    periodically: log train metrics, run the due evaluations, checkpoint
    at the end: the final evaluations (e.g. on test), the gate, results.json, curves.png

Its records: ``metrics.jsonl`` holds one object per step (research/core/writers.py), flushed
to disk before every checkpoint; a resumed run first drops the records (and TensorBoard
events) after the step it resumes from, so every step appears once.

The loop never syncs with the devices except when it logs, evaluates or saves; it only
waits for the call two before the one it just queued (``dispatch.RunAhead``), so the
devices always have the next calls queued. It does not know which input path, how many
replicas or which evaluators the run has: the feed (research/data/feeds.py), the
replica adaptor (replicas.py) and the evaluations (research/evaluators) do.
"""
import contextlib
import math
import os
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from research import errors
from research.core import (dispatch, optim, preemption, profiling, state as state_lib,
                           step as step_lib, writers)
from research.evaluation import images as images_lib
from research.train import curves, experiment, workdir as workdir_lib

# The record key of the run's wall time: seconds of training and evaluation up to that step,
# over the processes it ran in (each resumed one adds its own to the time of its checkpoint).
WALL_TIME = "wall_time_sec"


class WallClock:
  """The run's wall time: this process's seconds since ``start``, plus ``before`` (the time
  the run had at the checkpoint it resumed from)."""

  def __init__(self):
    self.start, self.before = time.perf_counter(), 0.0

  def __call__(self) -> float:
    return self.before + time.perf_counter() - self.start


def prefixed(prefix: str, metrics: dict) -> dict:
  return {f"{prefix}/{k}": v for k, v in metrics.items()} if prefix else dict(metrics)


def checked_scalars(exp: experiment.Experiment, train_metrics) -> dict[str, np.ndarray]:
  """The window's train metrics (arrays over replicas, if any); raises
  errors.NonFiniteError when a guard fired."""
  scalars = exp.adaptor.compute(train_metrics)
  fired = {k[len(step_lib.GUARD_PREFIX):]: scalars.pop(k) for k in list(scalars)
           if k.startswith(step_lib.GUARD_PREFIX)}  # per replica: the first step of any
  fired = {name: int(steps[steps >= 0].min()) for name, steps in fired.items()
           if np.any(steps >= 0)}
  if fired:
    name, step = min(fired.items(), key=lambda item: item[1])
    last = exp.checkpointer.latest_step()
    kept = (f"the last good checkpoint (step {last}) is kept in {exp.checkpointer.directory}"
            if last is not None else "no checkpoint was written before it")
    raise errors.NonFiniteError(
        f"training diverged: {name} is not finite at step {step}; {kept}. Lower "
        f"optimizer.learning_rate, clip gradients (optimizer.grad_clip_norm) or skip such "
        f"updates (optimizer.skip_nonfinite=True)")
  return scalars


def run_evaluations(evaluations: list, adaptor, state, step: int, writer,
                    workdir: str) -> dict[str, dict[str, float]]:
  """Runs ``evaluations`` on each model of ``state`` (each replica on its own) and writes
  their scalars and images; returns each evaluation's prefixed scalars by name."""
  results = {e.name: {} for e in evaluations}
  for scope, model_state in adaptor.each(state):
    for e in evaluations:
      out = e.evaluator_for(scope).run(model_state, step, scope)
      results[e.name].update(prefixed(scope, prefixed(e.prefix, out.scalars)))
      write_images(writer, workdir, step, {"_".join(filter(None, [scope, k])): grid
                                           for k, grid in out.images.items()})
  scalars = {k: v for r in results.values() for k, v in r.items()}
  if scalars:
    writer.write_scalars(step, scalars)
  return results


def learning_rate_fn(config: ml_collections.ConfigDict, adaptor, num_steps: int):
  """``step -> learning rate`` of that step's update (per replica: an array), from the
  optimizer's optax schedule: the update of step N uses the schedule at N - 1 (at
  (N - 1) // K with ``accumulate_steps=K``: the update its gradients go to)."""
  k = config.optimizer.accumulate_steps
  rates = adaptor.learning_rates  # replicas: each its own; one run: None
  schedule = optim.make_schedule(config.optimizer, -(-num_steps // k),
                                 None if rates is None else np.asarray(rates, np.float32))
  at = jax.jit(lambda step: schedule((step - 1) // k))
  return lambda step: np.asarray(at(step))


def write_images(writer, workdir: str, step: int, grids: dict[str, np.ndarray]) -> None:
  """Image grids to TensorBoard and, on process 0, to ``WORKDIR/images/NAME_STEP.png``."""
  if not grids:
    return
  writer.write_images(step, {k: g[None] for k, g in grids.items()})
  if jax.process_index() == 0:
    for key, grid in grids.items():
      images_lib.save_png(os.path.join(workdir, "images", f"{key}_{step:08d}.png"), grid)


def train(exp: experiment.Experiment, step_hook: Callable[[int], None] | None = None,
          clock: WallClock | None = None):
  """Runs the train step from the restored step to the last; returns the final state and
  the latest results of the evaluations that ran at its step (by name). ``clock`` (the run's
  wall time) learns the time the run had at its checkpoint."""
  config, state, writer, checkpointer = exp.config, exp.state, exp.writer, exp.checkpointer
  start_step, num_steps = state_lib.step_of(state), exp.num_steps
  clock = clock or WallClock()
  # A killed run may have logged steps after its checkpoint: they are redone, so dropped.
  resumed_from = writer.resume(start_step)
  if start_step > 0 and resumed_from is not None:
    clock.before = resumed_from.get(WALL_TIME, 0.0)
  if start_step == 0:
    # the config flattened (optimizer.learning_rate, model.name, ...), less MACHINE_FIELDS
    writer.write_hparams(workdir_lib.flat_fields(config))
  learning_rate = learning_rate_fn(config, exp.adaptor, num_steps)
  # ReportProgress counting steps wants every step; calls of several steps report by time.
  # It writes steps_per_sec and uptime records; the console's lines are ``progress``'s.
  every_steps = config.log_every_steps if config.steps_per_call == 1 else None
  report_progress = writers.RateScalars(
      num_train_steps=num_steps, writer=writer, every_steps=every_steps, every_secs=None
      if every_steps else 60.0)
  progress = writers.Progress(num_steps, start_step, config.batch_size,
                              tuple(e.every_steps for e in exp.evaluations))
  train_metrics, latest = None, {}
  window_start, window_step = time.perf_counter(), start_step
  profiler, run_ahead = profiling.Profiler(config.profile_steps, exp.workdir), dispatch.RunAhead()
  with preemption.SignalWatcher() as signals, contextlib.closing(progress):
    for step, inputs in exp.feed.calls(start_step, num_steps):
      state, metrics = exp.train_step(state, *inputs)
      profiler(step, state)
      train_metrics = dispatch.accumulate(train_metrics, metrics)
      run_ahead(metrics)
      report_progress(step)
      progress.advance(step)
      is_last, is_log_step = step == num_steps, step % config.log_every_steps == 0
      stop = signals.stop_requested(can_sync=is_log_step)
      logs = is_log_step or is_last or stop
      if logs:
        scalars = checked_scalars(exp, train_metrics)
        elapsed = time.perf_counter() - window_start
        scalars["examples_per_sec"] = (step - window_step) * config.batch_size / elapsed
        record = exp.adaptor.expand(prefixed("train", {**scalars,
                                                       "learning_rate": learning_rate(step)}))
        writer.write_scalars(step, {**record, WALL_TIME: clock()})
        progress.log(step, scalars)
        train_metrics, window_step = None, step
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        if train_metrics is not None:  # steps since the last log must be finite too
          checked_scalars(exp, train_metrics)
        if not logs:  # a resumed run takes the wall time of its checkpoint's record
          writer.write_scalars(step, {WALL_TIME: clock()})
        writer.flush()  # every checkpointed step's records are on disk
        checkpointer.save(state)
      if stop:
        raise errors.Preempted(signals.signal_name, step, checkpointer.directory)
      due = [e for e in exp.evaluations if e.due(step, is_last)]
      if due:
        eval_start = time.perf_counter()
        ran = run_evaluations(due, exp.adaptor, state, step, writer, exp.workdir)
        progress.evaluated(step, ran, time.perf_counter() - eval_start)
        latest = {**{k: v for k, v in latest.items() if k not in ran}, **ran} if is_last else {}
      if window_step == step:  # the throughput window restarts after logging and eval
        window_start = time.perf_counter()
      if step_hook is not None:
        step_hook(step)
    # A signal after the last step's check stops the run before its final evaluation.
    if signals.stop_requested(can_sync=True):
      raise errors.Interrupted(signals.signal_name or "a signal to another process",
                               f"the final evaluation of step {state_lib.step_of(state)}")
  profiler.stop(state)
  return state, latest


def check_finite(results: dict, step: int, workdir: str) -> None:
  """Final metrics that are not finite mean a broken model (or a damaged checkpoint that read
  without error): an error, not results."""
  bad = sorted(k for k, v in results.items() if not math.isfinite(float(v)))
  if bad:
    raise errors.NonFiniteError(
        f"the final evaluation of step {step} is not finite: "
        f"{', '.join(f'{k}={results[k]}' for k in bad[:4])}; no results.json is written in "
        f"{workdir}; check the data and the run's metrics.jsonl, and retrain (e.g. with a "
        f"lower optimizer.learning_rate) in another --workdir")


def final_results(config: ml_collections.ConfigDict, workdir: str, evaluations: list, adaptor,
                  state, writer, done: dict | None = None, *, config_name: str | None = None,
                  wall_time_sec: float | None = None) -> dict:
  """The final evaluations of ``state`` (those in ``done``, which already ran at its step,
  are not rerun) and the gate, written to results.json with the run's fields
  (workdir.RUN_FIELDS: ``config``, ``gate``, ``wall_time_sec``; the config's name and the
  wall time are kept from results.json when not given, as by ``--mode=eval``). Returns the
  results without the run's fields: the metrics, ``step`` and ``gate_passed``."""
  done = done or {}
  pending = [e for e in evaluations if e.final and e.name not in done]
  ran = {**done, **run_evaluations(pending, adaptor, state, state_lib.step_of(state), writer,
                                   workdir)}
  results = {k: v for e in evaluations if e.name in ran for k, v in ran[e.name].items()}
  results["step"] = float(state_lib.step_of(state))
  check_finite(results, state_lib.step_of(state), workdir)
  passed = adaptor.check_gate(config.gate, results)
  results["gate_passed"] = True if passed is None else bool(passed)
  before = workdir_lib.read_results(workdir, run_fields=True) or {}
  run = {"config": config_name if config_name is not None else before.get("config"),
         "gate": config.gate or None,
         WALL_TIME: wall_time_sec if wall_time_sec is not None else before.get(WALL_TIME)}
  workdir_lib.write_json(workdir, workdir_lib.RESULTS_FILE, {**results, **run})
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       step_hook: Callable[[int], None] | None = None,
                       allow_config_changes: bool = False,
                       config_name: str | None = None) -> dict:
  """Trains ``config`` in ``workdir`` (resuming from its checkpoints) and returns the
  results of the final evaluations, the step and ``gate_passed`` (True without a gate);
  results.json also has the run's fields (``final_results``). A run that already finished
  with this config returns its results at once. A workdir whose run has another config is
  refused, unless ``allow_config_changes`` (research/train/experiment.py,
  ``check_config_changes``). ``config_name``: the config as the launcher was given it
  (``cnn:digits``), for results.json. At the end it plots ``WORKDIR/curves.png``.

  ``step_hook(step)`` runs after every step (tests use it to interrupt a run).
  """
  clock = WallClock()
  preemption.set_phase("start-up (data, restore, compilation)")
  prepared = experiment.setup(config, workdir, allow_config_changes)
  finished = prepared.finished_results()
  if finished is not None:
    prepared.close()
    logging.info("The run in %s finished at step %d; its results are in %s.", workdir,
                 prepared.num_steps, os.path.join(workdir, workdir_lib.RESULTS_FILE))
    return finished
  exp = experiment.build(config, workdir, prepared=prepared)
  try:
    state, latest = train(exp, step_hook, clock)
    preemption.set_phase(f"the final evaluation of step {state_lib.step_of(state)}")
    results = final_results(exp.config, exp.workdir, exp.evaluations, exp.adaptor, state,
                            exp.writer, latest, config_name=config_name, wall_time_sec=clock())
    exp.writer.flush()
    if jax.process_index() == 0:
      curves.write_curves(exp.workdir, writers.read_metrics(exp.workdir))
    return results
  finally:
    exp.close()
