"""The linear models against scikit-learn on the same data and L2 strength: full-batch
L-BFGS on the task's own objective must reach the same classifier. The kernel SVM
(random Fourier features) against LinearSVC on the same features and SVC's exact RBF
kernel."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC, LinearSVC

from research.core import state as state_lib
from research.core import optim
from research.data import pipeline, preprocess
from research.tasks import base as tasks_base
from tests.conftest import load_config

C = 1.0  # scikit-learn's inverse regularization strength


def digits_arrays(config):
  scale = preprocess.parse(config.data.preprocess)
  def load(split):
    arrays = pipeline.load_split(config.data, split)
    images = np.asarray(scale(arrays, jax.random.PRNGKey(0))["image"])
    return images, arrays["label"]
  return load("train"), load("test")


def fit_full_batch(config, images, labels, iterations=300):
  """Minimises the task's objective (mean loss + 0.5 * l2 * ||W||^2) with L-BFGS."""
  task = tasks_base.make_task(config)
  batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}
  state = state_lib.init_state(task, optim.make_optimizer(config.optimizer, 1),
                          lambda b, rng: b, batch, seed=0)
  params, model_state = state.params, state.model_state
  objective = lambda p: task.loss_fn(p, model_state, batch, jax.random.PRNGKey(0), False)[0]
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  @jax.jit
  def step(params, state):
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(params, updates), state

  state = solver.init(params)
  for _ in range(iterations):
    params, state = step(params, state)
  grad_norm = optax.global_norm(jax.grad(objective)(params))
  return task, params, model_state, float(grad_norm)


def predict(task, params, model_state, images) -> np.ndarray:
  logits = task.logits(params, model_state, {"image": jnp.asarray(images)}, jax.random.PRNGKey(0))
  return np.asarray(jnp.argmax(logits, -1))


@pytest.mark.parametrize("name, loss, oracle", [
    ("logreg", "softmax", LogisticRegression(C=C, max_iter=10_000, tol=1e-8)),
    ("svm", "squared_hinge", LinearSVC(C=C, loss="squared_hinge", max_iter=100_000, tol=1e-8)),
])
def test_matches_scikit_learn(name, loss, oracle, data_dir):
  config = load_config(name, data_dir=data_dir, **{"task.loss": loss})
  (train_x, train_y), (test_x, test_y) = digits_arrays(config)
  flat = lambda x: x.reshape(len(x), -1)
  config.task.l2 = 1.0 / (C * len(train_x))  # sklearn: C * sum(loss) + 0.5 * ||W||^2
  task, params, model_state, grad_norm = fit_full_batch(config, train_x, train_y)
  assert grad_norm < 1e-3  # converged

  ours = predict(task, params, model_state, test_x)
  theirs = oracle.fit(flat(train_x), train_y).predict(flat(test_x))
  ours_accuracy, their_accuracy = np.mean(ours == test_y), np.mean(theirs == test_y)
  assert abs(ours_accuracy - their_accuracy) <= 0.01, (ours_accuracy, their_accuracy)
  assert np.mean(ours == theirs) >= 0.97
  assert ours_accuracy > 0.9


def test_kernel_svm_matches_linear_svc_on_its_features_and_the_exact_kernel(data_dir):
  """LinearSVC on the model's own random Fourier features is the exact oracle of the
  fit; SVC with the exact RBF kernel is what those features approximate."""
  config = load_config("kernel_svm", data_dir=data_dir, **{"task.loss": "squared_hinge"})
  (train_x, train_y), (test_x, test_y) = digits_arrays(config)
  flat = lambda x: x.reshape(len(x), -1)
  config.task.l2 = 1.0 / (C * len(train_x))
  task, params, model_state, grad_norm = fit_full_batch(config, train_x, train_y, iterations=500)
  assert grad_norm < 1e-3

  rff = model_state["random_features"]["RandomFourierFeatures_0"]
  features = lambda x: np.sqrt(2.0 / config.model.num_features) * np.cos(
      flat(x) @ np.asarray(rff["projection"]) + np.asarray(rff["phase"]))
  ours = predict(task, params, model_state, test_x)
  on_features = LinearSVC(C=C, loss="squared_hinge", max_iter=100_000, tol=1e-8).fit(
      features(train_x), train_y).predict(features(test_x))
  exact = SVC(C=C, kernel="rbf", gamma=config.model.gamma).fit(flat(train_x), train_y).predict(
      flat(test_x))
  linear = LinearSVC(C=C, max_iter=100_000).fit(flat(train_x), train_y).predict(flat(test_x))
  accuracy = lambda predictions: np.mean(predictions == test_y)
  assert np.mean(ours == on_features) >= 0.97
  assert abs(accuracy(ours) - accuracy(on_features)) <= 0.01
  assert abs(accuracy(ours) - accuracy(exact)) <= 0.02, (accuracy(ours), accuracy(exact))
  assert accuracy(ours) > accuracy(linear)
