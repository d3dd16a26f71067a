"""The shared train step: gradients flow, the loss falls, one batch is overfitted."""
import jax
import numpy as np
import pytest

from research.core import state as state_lib
from research.core import optim, step as step_lib
from research.data import pipeline, preprocess
from research.tasks import base as tasks_base
from tests.conftest import load_config


def build(config, batch_size: int, num_steps: int):
  """Task, jitted train step, initial state and one fixed training batch for ``config``."""
  preprocess_fn = preprocess.parse(config.data.preprocess)
  optimizer = optim.make_optimizer(config.optimizer, num_steps)
  arrays = pipeline.load_split(config.data, config.data.train_split)
  batch = pipeline.TrainBatches(arrays, batch_size, seed=0).local_batch(0)
  task = tasks_base.make_task(config, batch)
  state = state_lib.init_state(task, optimizer, preprocess_fn, batch, config.seed)
  return task, jax.jit(step_lib.make_train_step(task, optimizer, preprocess_fn)), state, batch


def run_steps(train_step, state, batch, num_steps):
  history = []
  for _ in range(num_steps):
    state, metrics = train_step(state, batch)
    history.append({k: float(v) for k, v in metrics.compute().items()})
  return state, history


@pytest.mark.parametrize("name", ["cnn", "cnn_strong", "vae", "mlp", "logreg", "svm", "kernel_svm",
                                  "rnn", "vit", "resnet"])
def test_gradients_reach_every_parameter(name, data_dir):
  config = load_config(name, data_dir=data_dir)
  task, _, state, batch = build(config, 32, 10)
  batch = preprocess.parse(config.data.preprocess)(batch, jax.random.PRNGKey(0))
  grads = jax.jit(jax.grad(
      lambda p: task.loss_fn(p, state.model_state, batch, jax.random.PRNGKey(1), True)[0]))(
          state.params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0), f"no gradient reaches {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize("name, final_loss", [
    ("cnn", 0.02), ("mlp", 0.02), ("logreg", 0.1), ("svm", 0.1), ("kernel_svm", 0.1), ("rnn", 0.05), ("vit", 0.05),
    ("resnet", 0.05)])
def test_classifier_overfits_one_batch(name, final_loss, data_dir):
  config = load_config(name, data_dir=data_dir, **{"optimizer.schedule": "constant",
                                                   "optimizer.learning_rate": 1e-2})
  _, train_step, state, batch = build(config, 32, 150)
  state, history = run_steps(train_step, state, batch, 150)
  assert history[-1]["loss"] < final_loss < history[0]["loss"]
  assert history[-1]["accuracy"] == 1.0
  assert int(state.step) == 150


def test_vae_loss_falls_on_one_batch(data_dir):
  config = load_config("vae", data_dir=data_dir, **{"optimizer.schedule": "constant"})
  _, train_step, state, batch = build(config, 64, 300)
  _, history = run_steps(train_step, state, batch, 300)
  first = np.mean([h["neg_elbo"] for h in history[:10]])
  last = np.mean([h["neg_elbo"] for h in history[-10:]])
  assert last < 0.8 * first
  # The ELBO terms add up, and the KL is non-negative.
  for h in history:
    assert h["kl"] >= 0
    np.testing.assert_allclose(h["neg_elbo"], h["recon_nll"] + h["kl"], rtol=1e-5)


def test_batch_norm_statistics_are_model_state(data_dir):
  config = load_config("cnn_strong", data_dir=data_dir)
  task, train_step, state, batch = build(config, 32, 10)
  assert set(state.model_state) == {"batch_stats"}
  before = jax.tree.map(np.asarray, state.model_state)
  new_state, _ = train_step(state, batch)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, new_state.model_state)
  assert all(jax.tree.leaves(changed))  # every running mean and variance moved
  # Evaluation reads the running statistics and leaves them as they are.
  processed = preprocess.parse(config.data.preprocess)(batch, jax.random.PRNGKey(0))
  _, (_, eval_state) = task.loss_fn(new_state.params, new_state.model_state, processed,
                                    jax.random.PRNGKey(0), False)
  jax.tree.map(np.testing.assert_array_equal, eval_state, new_state.model_state)
