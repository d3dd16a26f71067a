"""Multi-label classification: K independent yes/no labels per example (e.g. the 28
emotions of GoEmotions), one sigmoid per logit.

The loss is the sigmoid cross-entropy summed over the labels. A label is predicted when
its probability exceeds 0.5. During training the device computes cheap summaries
(exact match, per-label accuracy, micro F1 from summed counts); the final report adds
scikit-learn's micro and macro precision, recall and F1 over the whole split.
"""
import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics

from research import errors
from research.tasks import base, classification

THRESHOLD = 0.5  # on the probability; logit > 0


@flax.struct.dataclass
class MicroF1(metrics.Metric):
  """2 TP / (2 TP + FP + FN) from counts summed over examples and labels; reads the
  per-example outputs ``true_positives`` and ``errors`` (FP + FN)."""
  true_positives: jax.Array
  errors: jax.Array

  @classmethod
  def from_model_output(cls, *, true_positives, errors, mask=None, **_):
    if mask is not None:
      true_positives, errors = true_positives * mask, errors * mask
    return cls(true_positives=true_positives.sum(), errors=errors.sum())

  def merge(self, other):
    return type(self)(self.true_positives + other.true_positives, self.errors + other.errors)

  def compute(self):
    return 2 * self.true_positives / jnp.maximum(2 * self.true_positives + self.errors, 1.0)


def sigmoid_loss(logits, labels):
  """Sigmoid cross-entropy summed over the K labels: (..., K) -> (...)."""
  return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)).sum(-1)


class Task(classification.Task):
  """``probs`` are per-label sigmoids; a label is predicted where it exceeds THRESHOLD."""
  capabilities = frozenset({base.MULTILABEL})
  metrics = {
      "loss": metrics.Average.from_output("loss"),
      "exact_match": metrics.Average.from_output("exact_match"),
      "label_accuracy": metrics.Average.from_output("label_accuracy"),
      "micro_f1": MicroF1,
  }

  def __init__(self, config):
    base.BaseTask.__init__(self, config)  # one loss only: no task.loss

  @classmethod
  def validate_config(cls, config):
    errors.require(config.task.get("l2", 0.0) >= 0, "task.l2", config.task.get("l2"),
                   "zero or positive")

  def loss_fn(self, params, model_state, batch, rng, train):
    logits, model_state = self.apply(params, model_state, batch, rng, train)
    labels = batch["label"].astype(jnp.float32)
    loss = sigmoid_loss(logits, labels)
    predicted = (logits > 0).astype(jnp.float32)
    outputs = {
        "loss": loss,
        "exact_match": jnp.all(predicted == labels, axis=-1).astype(jnp.float32),
        "label_accuracy": (predicted == labels).astype(jnp.float32).mean(-1),
        "true_positives": (predicted * labels).sum(-1),
        "errors": jnp.abs(predicted - labels).sum(-1),
    }
    objective = classification.l2_regularized(loss.mean(), params, self.config.task.get("l2", 0.0))
    return objective, (outputs, model_state)

  def probs(self, params, model_state, batch, rng):
    """Each label's probability, independently (a sigmoid per logit)."""
    return jax.nn.sigmoid(self.logits(params, model_state, batch, rng))
