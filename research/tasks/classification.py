"""Classification: p(y|x) from a model's logits, with a choice of loss and an L2 penalty.

Losses (``config.task.loss``):
  softmax        multinomial cross-entropy (logistic regression, neural classifiers)
  squared_hinge  one-vs-rest squared hinge, sum_k max(0, 1 - y_k f_k(x))^2 with
                 y_k = +-1: the loss of scikit-learn's LinearSVC
  hinge          Crammer-Singer multiclass hinge, max(0, 1 + max_{k != y} f_k - f_y)
``config.task.l2`` adds 0.5 * l2 * ||W||^2 over the weight matrices (not biases).
"""
import jax
import jax.numpy as jnp
import optax
from clu import metrics

from research import errors
from research.data import text
from research.models import base as models_base
from research.tasks import base


def squared_hinge_ovr(logits, labels):
  signs = 2.0 * jax.nn.one_hot(labels, logits.shape[-1]) - 1.0
  return jnp.sum(jnp.square(jax.nn.relu(1.0 - signs * logits)), axis=-1)


def crammer_singer_hinge(logits, labels):
  one_hot = jax.nn.one_hot(labels, logits.shape[-1])
  true_score = jnp.sum(logits * one_hot, axis=-1)
  best_other = jnp.max(jnp.where(one_hot > 0, -jnp.inf, logits), axis=-1)
  return jax.nn.relu(1.0 + best_other - true_score)


LOSSES = {
    "softmax": optax.softmax_cross_entropy_with_integer_labels,
    "squared_hinge": squared_hinge_ovr,
    "hinge": crammer_singer_hinge,
}


def l2_penalty(params) -> jax.Array:
  """0.5 * the sum of squares of every ``kernel`` (weight matrix) in ``params``."""
  kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
             if getattr(path[-1], "key", None) == "kernel"]
  return 0.5 * sum(jnp.sum(jnp.square(k)) for k in kernels)


def l2_regularized(mean_loss: jax.Array, params, l2: float) -> jax.Array:
  """``mean_loss + l2 * l2_penalty(params)``, with no penalty term at all when ``l2`` is 0:
  a zero penalty still costs the gradient a pass over every kernel (per microbatch)."""
  return mean_loss + l2 * l2_penalty(params) if l2 else mean_loss


class Task(base.BaseTask):
  """Predictions: ``logits``, ``probs`` (softmax of the scores, also for hinge losses: an
  SVM's are not calibrated probabilities) and ``features`` (the model's penultimate
  representation, research/models/base.py)."""
  metrics = {
      "loss": metrics.Average.from_output("loss"),
      "accuracy": metrics.Average.from_output("accuracy"),
  }
  capabilities = frozenset({base.CLASSIFIER})
  predictions = ("logits", "probs", "features")

  def __init__(self, config):
    super().__init__(config)
    self.loss = LOSSES[config.task.loss]

  @classmethod
  def validate_config(cls, config):
    errors.require(config.task.get("loss") in LOSSES, "task.loss", config.task.get("loss"),
                   f"one of {tuple(LOSSES)}")
    errors.require(config.task.get("l2", 0.0) >= 0, "task.l2", config.task.get("l2"),
                   "zero or positive")
    if not text.is_text(config.data):  # text datasets name their label features there
      errors.require("label" in config.data.features, "data.features",
                     tuple(config.data.features), "a list with label for a classifier")

  def apply(self, params, model_state, batch, rng, train, mutable=()):
    return base.apply_model(self.model, params, model_state, *self.model_inputs(batch), rng=rng,
                            train=train, matmul_precision=self.matmul_precision, mutable=mutable)

  def loss_fn(self, params, model_state, batch, rng, train):
    logits, model_state = self.apply(params, model_state, batch, rng, train)
    loss = self.loss(logits, batch["label"])
    accuracy = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    objective = l2_regularized(loss.mean(), params, self.config.task.get("l2", 0.0))
    return objective, ({"loss": loss, "accuracy": accuracy}, model_state)

  def logits(self, params, model_state, batch, rng):
    return self.apply(params, model_state, batch, rng, False)[0]

  def probs(self, params, model_state, batch, rng):
    return jax.nn.softmax(self.logits(params, model_state, batch, rng))

  def features(self, params, model_state, batch, rng):
    _, state = self.apply(params, model_state, batch, rng, False, mutable=(models_base.FEATURES[0],))
    return models_base.sown_features(state)
