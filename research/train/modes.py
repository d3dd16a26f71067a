"""The launcher's modes besides training, built on a restored run: ``eval`` (every
evaluation of the config on the checkpoint) and ``sample`` (images from a generative model)."""
import os

import jax
import ml_collections
import numpy as np
from absl import logging

from research import errors
from research.core import writers
from research.data import splits
from research.evaluation import images as images_lib
from research.tasks import base as tasks_base
from research.train import experiment, loop, restore as restore_lib, workdir as workdir_lib


def evaluate_checkpoint(config: ml_collections.ConfigDict | None, workdir: str) -> dict[str, float]:
  """Every evaluation of the newest checkpoint in ``workdir`` (those that run during training
  and the final ones); no training. Their scalars go to results.json and to a log of their
  own, ``WORKDIR/eval/`` (metrics.jsonl, TensorBoard), not to the training log."""
  run = restore_lib.restore(workdir, config=config)
  data = splits.RunData(run.config.data, workdir, run.config.eval_batch_size,
                        trained_spec=workdir_lib.read_input_spec(workdir),
                        num_classes=experiment.classifier_classes(run.config))
  evaluations = experiment.make_evaluations(run.config, run.task, workdir, data, run.mesh)
  for e in evaluations:
    e.final = e.final or bool(e.every_steps)
  eval_dir = os.path.join(workdir, "eval")
  if jax.process_index() == 0:
    os.makedirs(eval_dir, exist_ok=True)
  writer = writers.create_writer(eval_dir)
  try:
    return loop.final_results(run.config, workdir, evaluations, run.adaptor, run.state, writer)
  finally:
    writer.close()


def sample_checkpoint(config: ml_collections.ConfigDict | None, workdir: str,
                      num_samples: int) -> dict[str, float]:
  """Draws ``num_samples`` images from the newest checkpoint's generative model (the
  task's ``sample``) without training; writes ``WORKDIR/samples/samples_STEP_DRAW.{png,npy}``.
  Each call is a new draw (DRAW counts up, its key folds DRAW into the seed): earlier
  samples are kept, and draw d of a checkpoint is the same images on every machine."""
  if num_samples < 1:
    raise errors.ConfigError(f"--num_samples={num_samples} is not allowed; it must be positive")
  run = restore_lib.restore(workdir, config=config)
  if tasks_base.GENERATIVE not in run.task.capabilities:
    raise errors.ConfigError(f"task.name={run.config.task.name!r} cannot sample; --mode=sample "
                             f"needs a generative task (vae)")
  state = run.replica(0 if run.adaptor.count() > 1 else None)
  draw = next_draw(os.path.join(workdir, "samples"), run.step)
  sample = jax.jit(run.task.sample, static_argnums=3)
  rng = jax.random.fold_in(jax.random.PRNGKey(run.config.seed), draw)
  images = sample(state.params, state.model_state, rng, num_samples)
  images = np.asarray(images.addressable_data(0))  # replicated: every process holds all
  if jax.process_index() == 0:
    path = os.path.join(workdir, "samples", f"samples_{run.step:08d}_{draw:03d}")
    images_lib.save_png(path + ".png", images_lib.make_grid(images, columns=8))
    np.save(path + ".npy", images)
    logging.info("Wrote %d samples (draw %d) of the checkpoint at step %d to %s.{png,npy}",
                 num_samples, draw, run.step, path)
  return {"samples": float(num_samples), "step": float(run.step), "draw": float(draw)}


def next_draw(directory: str, step: int) -> int:
  """The first DRAW with no ``samples_STEP_DRAW.npy`` in ``directory``."""
  taken = set(os.listdir(directory)) if os.path.isdir(directory) else set()
  draw = 0
  while f"samples_{step:08d}_{draw:03d}.npy" in taken:
    draw += 1
  return draw
