"""One-class learning: a density model fitted to the normal data alone (the run's train
split, e.g. one class kept by ``data.train_labels``), whose negative log-likelihood is
the anomaly score of any example.

The model maps a batch to a per-example anomaly score (research/models/base.py:OneClass):
a negative log-likelihood in nats (``gaussian``), a reconstruction error (``autoencoder``),
a distance to a centre (``deep_svdd``) or a transformation classifier's loss
(``transformations``); the loss is its mean. Prediction ``score``: that score (higher:
more anomalous), read by the ``anomaly_report`` evaluator (ROC AUC of normal vs other
classes). A model with a centre (``CentredEmbedding``) gets it before the first step:
the mean embedding of the training split (``initialize``).
"""
import jax
import numpy as np
from clu import metrics

from research import errors
from research.models import base as models_base
from research.tasks import base

ANOMALY = "anomaly"  # capability: ``score(params, model_state, batch, rng)`` per example


class Task(base.BaseTask):
  metrics = {"loss": metrics.Average.from_output("loss")}
  capabilities = frozenset({ANOMALY})
  predictions = ("score",)

  @classmethod
  def validate_config(cls, config):
    labels = tuple(config.data.get("train_labels") or ())
    errors.require(len(labels) > 0 and all(isinstance(k, int) and k >= 0 for k in labels),
                   "data.train_labels", labels,
                   "the normal classes the one-class model trains on, e.g. (0,)")
    errors.require("label" in config.data.features, "data.features",
                   tuple(config.data.features), "a list with label (the normal classes)")

  def apply(self, params, model_state, batch, rng, train):
    return base.apply_model(self.model, params, model_state, *self.model_inputs(batch), rng=rng,
                            train=train, matmul_precision=self.matmul_precision)

  def loss_fn(self, params, model_state, batch, rng, train):
    nll, model_state = self.apply(params, model_state, batch, rng, train)
    return nll.mean(), ({"loss": nll}, model_state)

  def score(self, params, model_state, batch, rng):
    return self.apply(params, model_state, batch, rng, False)[0]

  @property
  def initializes(self) -> bool:
    return isinstance(self.model, models_base.CentredEmbedding)

  def initialize(self, state, batches):
    """The centre from the mean embedding of ``batches`` (the training split, as
    evaluation sees it), summed in float64 on the host."""
    @jax.jit
    def embed(params, model_state, batch):
      return base.apply_model(self.model, params, model_state, *self.model_inputs(batch),
                              rng=jax.random.PRNGKey(0), train=False,
                              method=self.model.embed)[0]

    total, count = 0.0, 0
    for batch in batches:
      embeddings = np.asarray(embed(state.params, state.model_state, batch), np.float64)
      total, count = total + embeddings.sum(axis=0), count + len(embeddings)
    mean = np.asarray(total / count, np.float32)
    return state.replace(model_state=self.model.set_centre(state.model_state, mean))
